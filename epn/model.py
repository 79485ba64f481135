"""The EPN's networks: EdgeConnect's edge generator and its 70×70 PatchGAN discriminator.

A faithful port of ``EdgeGenerator``, ``ResnetBlock`` and ``Discriminator`` from EdgeConnect
(Nazeri et al. 2019, ``knazeri/edge-connect`` ``src/networks.py``), with torch's parametrized
spectral norm (``torch.nn.utils.parametrizations.spectral_norm``) in place of the deprecated hook
version. The generator maps ``[masked gray, masked edges, mask]`` ``(B, 3, H, W)`` to an edge map
``(B, 1, H, W)`` in [0, 1]; the discriminator maps ``[edges, gray]`` ``(B, 2, H, W)`` to patch
logits plus the intermediate features used by the feature-matching loss.

Bias placement follows the reference exactly, which is not uniform: the generator's encoder and
decoder convolutions keep their bias even under spectral norm (``nn.Conv2d`` default), while the
residual blocks and every discriminator convolution use ``bias=not use_spectral_norm``. The pinned
parameter counts (10,761,089 and 2,762,752) depend on this.
"""

from __future__ import annotations

import torch
from torch import nn

from common.discriminators import register_discriminator
from common.layers import check_range, init_normal, pad_to_multiple, scaled_width, sn, sn_conv2d


class ResnetBlock(nn.Module):
    """Dilated residual block: ``(B, C, H, W)`` -> ``(B, C, H, W)``, ``H, W >= dilation + 1``.

    Reflect-pad, 3×3 conv (dilated), instance norm, ReLU, reflect-pad, 3×3 conv, instance norm;
    the block's output is added to its input with no ReLU after the addition.
    """

    def __init__(self, channels: int, dilation: int = 1, use_spectral_norm: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            sn_conv2d(channels, channels, 3, dilation=dilation, use_sn=use_spectral_norm),
            nn.InstanceNorm2d(channels, track_running_stats=False),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            sn_conv2d(channels, channels, 3, use_sn=use_spectral_norm),
            nn.InstanceNorm2d(channels, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _down(in_channels: int, out_channels: int, use_spectral_norm: bool) -> list[nn.Module]:
    """4×4 stride-2 conv (biased, see the module docstring), instance norm, ReLU: halves H, W."""
    return [
        sn(nn.Conv2d(in_channels, out_channels, 4, stride=2, padding=1), use_spectral_norm),
        nn.InstanceNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(inplace=True),
    ]


def _up(in_channels: int, out_channels: int, use_spectral_norm: bool) -> list[nn.Module]:
    """4×4 stride-2 transposed conv (biased), instance norm, ReLU: doubles H, W."""
    return [
        sn(nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1), use_spectral_norm),
        nn.InstanceNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(inplace=True),
    ]


class EdgeGenerator(nn.Module):
    """EdgeConnect's edge generator: ``(B, in_channels, H, W)`` -> edge map ``(B, 1, H, W)`` in [0, 1].

    Encoder (7×7 conv, two 4×4 stride-2 convs: widths b, 2b, 4b), ``residual_blocks`` dilated
    :class:`ResnetBlock` at 1/4 resolution, decoder (two 4×4 stride-2 transposed convs, 7×7 conv to
    one channel, sigmoid). Every convolution but the last is spectrally normalised when
    ``use_spectral_norm``; instance norms have no affine parameters and no running statistics.

    Any ``H, W >= 1`` works. The network itself needs sides that are multiples of 4 (two stride-2
    levels) and at least 12 (the residual blocks' reflection pad of 2 needs at least 3 pixels at
    1/4 resolution); other inputs are padded up to that (reflect, or replicate when the input is
    too small to reflect) and the output is cropped back. Inputs that already qualify are not
    padded, so the computation is exactly the reference's.

    Args:
        in_channels: input channels (3 in EdgeConnect: masked gray, masked edges, mask).
        base_channels: width ``b`` of the full-resolution level (64 in the paper).
        residual_blocks: number of residual blocks (8 in the paper).
        use_spectral_norm: spectral norm on every conv but the last.
        init_std: standard deviation of the N(0, std) weight initialisation.
        width_mult: multiplies ``base_channels``.
    """

    multiple = 4
    min_size = 12

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 64,
        residual_blocks: int = 8,
        use_spectral_norm: bool = True,
        init_std: float = 0.02,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        check_range("in_channels", in_channels, 1, 64)
        check_range("residual_blocks", residual_blocks, 0, 64)
        b = scaled_width(base_channels, width_mult, "base_channels", widest=4)
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3),
            sn(nn.Conv2d(in_channels, b, 7), use_spectral_norm),
            nn.InstanceNorm2d(b, track_running_stats=False),
            nn.ReLU(inplace=True),
            *_down(b, 2 * b, use_spectral_norm),
            *_down(2 * b, 4 * b, use_spectral_norm),
        )
        self.middle = nn.Sequential(
            *(ResnetBlock(4 * b, dilation=2, use_spectral_norm=use_spectral_norm) for _ in range(residual_blocks))
        )
        self.decoder = nn.Sequential(
            *_up(4 * b, 2 * b, use_spectral_norm),
            *_up(2 * b, b, use_spectral_norm),
            nn.ReflectionPad2d(3),
            nn.Conv2d(b, 1, 7),
        )
        init_normal(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W)`` -> edge probabilities ``(B, 1, H, W)`` in [0, 1]."""
        h, w = x.shape[-2:]
        x, (left, _, top, _) = pad_to_multiple(x, self.multiple, min_size=self.min_size)
        x = self.decoder(self.middle(self.encoder(x)))
        return torch.sigmoid(x)[..., top : top + h, left : left + w]


def _conv_lrelu(in_channels: int, out_channels: int, stride: int, use_spectral_norm: bool) -> nn.Sequential:
    """4×4 conv (padding 1, no bias under spectral norm), LeakyReLU(0.2)."""
    return nn.Sequential(
        sn_conv2d(in_channels, out_channels, 4, stride=stride, padding=1, use_sn=use_spectral_norm),
        nn.LeakyReLU(0.2, inplace=True),
    )


@register_discriminator("patch")
class PatchDiscriminator(nn.Module):
    """EdgeConnect's 70×70 PatchGAN: ``(B, in_channels, H, W)`` -> patch scores ``(B, 1, H', W')``.

    Three 4×4 stride-2 convs and two 4×4 stride-1 convs (widths b, 2b, 4b, 8b, 1), LeakyReLU(0.2)
    between them, no normalisation layers besides spectral norm. Each output cell sees a 70×70
    input patch; a 256×256 input gives 30×30 cells (``H' = H // 8 - 2`` for ``H`` divisible by 8).

    ``forward`` returns ``(outputs, features)``: ``outputs`` are the raw logits of ``conv5``
    (blindfill's GAN losses take logits) or their sigmoid when ``use_sigmoid``; ``features`` are
    ``[conv1, conv2, conv3, conv4, conv5]``, the first four after LeakyReLU and ``conv5`` raw, as
    the reference returns them for the feature-matching loss.

    Args:
        in_channels: input channels (2 for the edge model: edges and gray image).
        base_channels: width ``b`` of the first conv (64 in the paper).
        use_sigmoid: apply a sigmoid to ``outputs`` (the features are unaffected).
        use_spectral_norm: spectral norm (and no bias) on all five convs.
        init_std: standard deviation of the N(0, std) weight initialisation.
        width_mult: multiplies ``base_channels``.
    """

    def __init__(
        self,
        in_channels: int = 2,
        base_channels: int = 64,
        use_sigmoid: bool = False,
        use_spectral_norm: bool = True,
        init_std: float = 0.02,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        check_range("in_channels", in_channels, 1, 64)
        b = scaled_width(base_channels, width_mult, "base_channels", widest=8)
        self.use_sigmoid = use_sigmoid
        self.conv1 = _conv_lrelu(in_channels, b, 2, use_spectral_norm)
        self.conv2 = _conv_lrelu(b, 2 * b, 2, use_spectral_norm)
        self.conv3 = _conv_lrelu(2 * b, 4 * b, 2, use_spectral_norm)
        self.conv4 = _conv_lrelu(4 * b, 8 * b, 1, use_spectral_norm)
        self.conv5 = nn.Sequential(sn_conv2d(8 * b, 1, 4, stride=1, padding=1, use_sn=use_spectral_norm))
        init_normal(self, init_std)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, in_channels, H, W)`` -> ``(outputs (B, 1, H', W'), [conv1, ..., conv5])``."""
        conv1 = self.conv1(x)
        conv2 = self.conv2(conv1)
        conv3 = self.conv3(conv2)
        conv4 = self.conv4(conv3)
        conv5 = self.conv5(conv4)
        outputs = torch.sigmoid(conv5) if self.use_sigmoid else conv5
        return outputs, [conv1, conv2, conv3, conv4, conv5]


def receptive_field(module: nn.Module) -> int:
    """Side of the input patch one output cell sees, for a plain feed-forward stack of ``Conv2d``.

    The convolutions are taken in registration order (``module.modules()``), which is the order of
    application for :class:`PatchDiscriminator`; padding does not change the field's size. Square
    kernels, strides and dilations only. Modules with transposed convolutions are refused (their
    field is not a single patch size); residual branches are not understood, so the result is only
    meaningful for chains such as the PatchGAN (70).
    """
    field, jump = 1, 1
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            raise TypeError("receptive_field handles Conv2d chains only, found a ConvTranspose2d")
        if isinstance(m, nn.Conv2d):
            (k, k_w), (s, s_w), (d, d_w) = m.kernel_size, m.stride, m.dilation
            if (k, s, d) != (k_w, s_w, d_w):
                raise ValueError("receptive_field needs square kernels, strides and dilations")
            field += d * (k - 1) * jump
            jump *= s
    return field
