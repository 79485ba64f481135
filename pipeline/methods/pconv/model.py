"""Partial convolutions and the partial-convolution U-Net (Liu et al., "Image Inpainting for
Irregular Holes Using Partial Convolutions", ECCV 2018).

The layer follows NVIDIA's reference (``NVIDIA/partialconv``, ``PartialConv2d``): with a mask ``M``
(1 = valid) the output at each window is ``W·(X⊙M)·ratio + b`` where ``ratio = |window| / Σ M``
over the window (all input channels), and 0 where the window holds no valid value; the mask
becomes 1 wherever the window held any valid value. The U-Net's layout (layers, widths, where
batch norm and biases are) is that of the common public PyTorch port
(``naoto0804/pytorch-inpainting-with-partial-conv``, ``net.py``), whose trainable parameter
counts the tests pin: 25,779,796 at 7 levels (256² inputs), 32,859,732 at 8 (512²). That port
divides by ``Σ M`` alone; NVIDIA's ``ratio`` scales by the window size as well, which the paper's
equation states, so we follow NVIDIA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import check_range, pad_to_multiple, scaled_width


class PartialConv2d(nn.Module):
    """A convolution that sees only the valid pixels and renormalises by how many it saw.

    ``forward(x, mask)``: ``x`` ``(B, C_in, H, W)`` and ``mask`` ``(B, 1, H, W)`` (the same for
    every channel) or ``(B, C_in, H, W)`` (one per channel: NVIDIA's ``multi_channel``), 1 = valid
    -> ``(out, updated)``: ``out`` ``(B, C_out, H', W')`` and ``updated`` ``(B, 1, H', W')``, 1
    where the window held any valid value (the same for every output channel). Windows with
    none output 0, bias included.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias)
        self.window = in_channels * kernel_size * kernel_size  # values under one window, all channels

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mask.shape[1] not in (1, x.shape[1]) or mask.shape[-2:] != x.shape[-2:]:
            raise ValueError(
                f"mask must be (B, 1 or {x.shape[1]}, H, W) like x {tuple(x.shape)}, got {tuple(mask.shape)}"
            )
        conv = self.conv
        with torch.no_grad():
            ones = mask.new_ones(1, mask.shape[1], *conv.kernel_size)
            valid = F.conv2d(mask, ones, None, conv.stride, conv.padding, conv.dilation)
            valid = valid * (x.shape[1] / mask.shape[1])  # a one-channel mask stands for every channel
            updated = valid.clamp(0, 1)
            ratio = self.window / (valid + 1e-8) * updated
        out = F.conv2d(x * mask, conv.weight, None, conv.stride, conv.padding, conv.dilation)
        out = out * ratio
        if conv.bias is not None:
            out = out + conv.bias.view(1, -1, 1, 1) * updated
        return out, updated


class PartialConvBlock(nn.Module):
    """:class:`PartialConv2d` (no bias unless asked), batch norm (optional), activation:
    ``(x, mask)`` -> ``(y, updated mask)``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        norm: bool = True,
        activation: str | None = "relu",
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.conv = PartialConv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=bias)
        self.norm = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.activation = {
            "relu": nn.ReLU(inplace=True),
            "leaky": nn.LeakyReLU(0.2, inplace=True),
            None: nn.Identity(),
        }[activation]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, mask = self.conv(x, mask)
        return self.activation(self.norm(x)), mask


class PConvUNet(nn.Module):
    """The partial-convolution U-Net: image ``(B, in_channels, H, W)`` and mask (1 = valid,
    ``(B, 1 or in_channels, H, W)``) -> ``(B, in_channels, H, W)``, the network's fill everywhere
    (the caller composites it into the hole).

    Encoder: ``levels`` stride-2 partial convolutions, 7×7/64, 5×5/128, 5×5/256, then 3×3/512
    for the rest, ReLU, batch norm on all but the first. Decoder: per level, nearest ×2 of the
    features and of the mask, concatenated with the encoder level's features and mask, a 3×3
    partial convolution, batch norm, LeakyReLU(0.2); the last one goes back to ``in_channels``
    with a bias and neither norm nor activation, its skip being the input image and mask.
    Inputs are padded to a multiple of ``2**levels``, at least twice that (a 2×2 bottleneck: 256² at 7
    levels, 512² at 8, are not padded), and the output cropped back.

    Args:
        in_channels: image channels (3).
        levels: encoder depth: 7 at 256² inputs, 8 at 512² (the paper's).
        width_mult: multiplies every width (64 ... 512).
        upsampling: ``nearest`` (the paper's) or ``bilinear`` for the features; masks always nearest.
        freeze_encoder_bn: the paper's second phase: the encoder's batch norms stay in eval mode
            (their running statistics and affine parameters are frozen in use; see ``train``).
    """

    def __init__(
        self,
        in_channels: int = 3,
        levels: int = 7,
        width_mult: float = 1.0,
        upsampling: str = "nearest",
        freeze_encoder_bn: bool = False,
    ) -> None:
        super().__init__()
        check_range("levels", levels, 4, 10)
        if upsampling not in ("nearest", "bilinear"):
            raise ValueError(f"upsampling must be nearest or bilinear, got {upsampling!r}")
        widths = [scaled_width(w, width_mult, "width") for w in (64, 128, 256, *[512] * (levels - 3))]
        kernels = [7, 5, 5, *[3] * (levels - 3)]
        self.levels, self.upsampling, self.freeze_encoder_bn = levels, upsampling, freeze_encoder_bn
        self.encoder = nn.ModuleList(
            PartialConvBlock(c_in, c_out, k, 2, norm=i > 0)
            for i, (c_in, c_out, k) in enumerate(zip([in_channels, *widths[:-1]], widths, kernels, strict=True))
        )
        # decoder[i] goes from level i + 1 up to level i (level 0 = the input); run deepest first.
        skips = [in_channels, *widths[:-1]]
        self.decoder = nn.ModuleList(
            PartialConvBlock(widths[i] + skips[i], skips[i], 3, 1, activation="leaky")
            if i > 0
            else PartialConvBlock(widths[0] + in_channels, in_channels, 3, 1, norm=False, activation=None, bias=True)
            for i in range(levels)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> PConvUNet:
        super().train(mode)
        if mode and self.freeze_encoder_bn:
            for m in self.encoder.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``image`` ``(B, C, H, W)``, ``mask`` ``(B, 1 or C, H, W)`` (1 = valid) -> ``(B, C, H, W)``."""
        h, w = image.shape[-2:]
        multiple = 2**self.levels
        # at least 2·2**levels: a 2×2 bottleneck, so batch norm sees more than one value per channel
        padded, (left, _, top, _) = pad_to_multiple(
            torch.cat([image, mask.to(image.dtype)], 1), multiple, min_size=2 * multiple
        )
        x, m = padded[:, : image.shape[1]], padded[:, image.shape[1] :]
        features, masks = [x], [m]
        for block in self.encoder:
            x, m = block(x, m)
            features.append(x)
            masks.append(m)
        features.pop(), masks.pop()
        for block in reversed(self.decoder):
            x = F.interpolate(x, scale_factor=2, mode=self.upsampling)
            m = F.interpolate(m, scale_factor=2, mode="nearest")
            skip, skip_mask = features.pop(), masks.pop()
            mask_in = torch.cat([m.expand(-1, x.shape[1], -1, -1), skip_mask.expand(-1, skip.shape[1], -1, -1)], 1)
            x, m = block(torch.cat([x, skip], 1), mask_in)
        return x[..., top : top + h, left : left + w]


PCONV_LOSS_WEIGHTS = {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1}


def pconv_loss(
    output: torch.Tensor,
    target: torch.Tensor,
    hole: torch.Tensor,
    features: nn.Module | None = None,
    weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Liu et al.'s loss: ``valid + 6·hole + 0.05·perceptual + 120·(style_out + style_comp) + 0.1·tv``
    -> ``(total, terms)``.

    ``output`` and ``target`` ``(B, 3, H, W)`` in [0, 1], ``hole`` ``(B, 1, H, W)`` (1 = hole, the data
    contract; the network's mask is ``1 − hole``). The L1 terms are means over all elements (the
    paper's 1/N). ``features`` (:class:`~common.vgg.VGG16Pools`, pool1–pool3) adds the perceptual
    term on the output and on the composite, and the style terms (Gram matrices normalised by
    C·H·W); without it they are left out. ``tv`` is taken on the composite over the hole dilated by
    one pixel, as the paper (the public port takes it over the whole image)."""
    from common.vgg import gram_matrix

    weights = {**PCONV_LOSS_WEIGHTS, **(weights or {})}
    valid = 1 - hole
    composite = hole * output + valid * target
    terms = {
        "valid": F.l1_loss(valid * output, valid * target),
        "hole": F.l1_loss(hole * output, hole * target),
    }
    region = F.max_pool2d(hole, 3, stride=1, padding=1)
    across = region[..., :, 1:] * region[..., :, :-1] * (composite[..., :, 1:] - composite[..., :, :-1]).abs()
    down = region[..., 1:, :] * region[..., :-1, :] * (composite[..., 1:, :] - composite[..., :-1, :]).abs()
    terms["tv"] = (across.sum() + down.sum()) / composite.numel()
    if features is not None:
        maps = features(torch.cat([output, composite, target]))
        out, comp, real = ({k: v.chunk(3)[i] for k, v in maps.items()} for i in range(3))
        terms["perceptual"] = sum(F.l1_loss(out[k], real[k]) + F.l1_loss(comp[k], real[k]) for k in maps)
        grams = {k: gram_matrix(real[k]) for k in maps}
        terms["style_out"] = sum(F.l1_loss(gram_matrix(out[k]), grams[k]) for k in maps)
        terms["style_comp"] = sum(F.l1_loss(gram_matrix(comp[k]), grams[k]) for k in maps)
    total = weights["valid"] * terms["valid"] + weights["hole"] * terms["hole"] + weights["tv"] * terms["tv"]
    if features is not None:
        total = total + weights["perceptual"] * terms["perceptual"]
        total = total + weights["style"] * (terms["style_out"] + terms["style_comp"])
    return total, terms
