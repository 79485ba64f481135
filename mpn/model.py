"""The MPN's U-Net: corrupted image ``(B, 3, H, W)`` -> mask logits ``(B, 1, H, W)``.

VCNet's first stage predicts a continuous mask m̂ = sigmoid(logits) in [0, 1] (1 = destroyed) from
the corrupted image alone. The network is a plain U-Net: ``depth`` max-pool levels down, bilinear
upsampling back up (a 3×3 conv after the upsampling instead of a transposed conv, which avoids
checkerboard artefacts), skip connections by concatenation and a 1×1 head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import check_range, pad_to_multiple, scaled_width

NORMS = ("batch", "instance", "none")


def _norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class ConvNormReLU(nn.Sequential):
    """3×3 conv (bias only without a norm), norm, ReLU: ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``.

    In eval mode batch norm is a fixed per-channel affine map, so it is folded into the
    convolution's weight and bias on each call: one pass over the activations instead of two, the
    same result up to float rounding (the weights and the state dict are unchanged)."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=norm == "none"),
            _norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm, _ = self
        if self.training or not isinstance(norm, nn.BatchNorm2d) or norm.running_var is None:
            return super().forward(x)
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        bias = norm.bias - norm.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        return F.relu_(F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups))


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormReLU`: ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__(
            ConvNormReLU(in_channels, out_channels, norm),
            ConvNormReLU(out_channels, out_channels, norm),
        )


class Up(nn.Module):
    """Bilinear ×2, 3×3 conv to the skip's width, concatenation with the skip, :class:`DoubleConv`.

    ``x`` ``(B, C_in, H, W)`` and ``skip`` ``(B, C_out, 2H, 2W)`` -> ``(B, C_out, 2H, 2W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch") -> None:
        super().__init__()
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.reduce = ConvNormReLU(in_channels, out_channels, norm)
        self.fuse = DoubleConv(2 * out_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.reduce(self.upsample(x))
        return self.fuse(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """U-Net from a corrupted image ``(B, in_channels, H, W)`` to mask logits ``(B, 1, H, W)``.

    Level ``i`` (0 = full resolution, ``depth`` = bottleneck) has ``min(base_channels · 2**i,
    max_channels)`` channels. Any ``H, W >= 1`` works: the input is padded to a multiple of
    ``2**depth`` and the logits are cropped back. The padded size is also at least
    ``2 · 2**depth`` per side, so the bottleneck is at least 2×2: batch norm in train mode with a
    batch of one image, and instance norm always, need more than one value per channel.

    Args:
        in_channels: input channels (3 for RGB).
        base_channels: channels of the full-resolution level.
        depth: number of 2×2 max-pool downsamplings.
        norm: ``"batch"``, ``"instance"`` (affine) or ``"none"`` (then the convs have biases).
        max_channels: cap on the channels of the deeper levels.
        width_mult: multiplies ``base_channels`` and ``max_channels`` (1 = as given).
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        depth: int = 4,
        norm: str = "batch",
        max_channels: int = 512,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        check_range("in_channels", in_channels, 1, 64)
        self.depth = check_range("depth", depth, 0, 8)
        base = scaled_width(base_channels, width_mult, "base_channels")
        cap = scaled_width(max_channels, width_mult, "max_channels")
        widths = [min(base * 2**i, cap) for i in range(depth + 1)]
        self.widths = widths

        self.encoder = nn.ModuleList([DoubleConv(in_channels, widths[0], norm)])
        self.encoder.extend(DoubleConv(widths[i - 1], widths[i], norm) for i in range(1, depth + 1))
        self.pool = nn.MaxPool2d(2)
        # decoder[i] goes from level i + 1 up to level i; run deepest first.
        self.decoder = nn.ModuleList(Up(widths[i + 1], widths[i], norm) for i in range(depth))
        self.head = nn.Conv2d(widths[0], 1, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> mask logits ``(B, 1, H, W)``."""
        h, w = x.shape[-2:]
        x, (left, _, top, _) = pad_to_multiple(x, 2**self.depth, min_size=2 ** (self.depth + 1))

        skips = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up in reversed(self.decoder):
            x = up(x, skips.pop())

        return self.head(x)[..., top : top + h, left : left + w]
