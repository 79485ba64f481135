"""The IPN's networks: DeepFill v2's two-stage gated generator and its SN-PatchGAN discriminator.

A faithful port of ``build_inpaint_net`` and ``build_sn_patch_gan_discriminator`` from DeepFill v2
(Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019;
``JiahuiYu/generative_inpainting`` branch ``v2``, ``inpaint_model.py``), checked against the PyTorch
port ``nipponjo/deepfillv2-pytorch``. Submodule names follow the reference's variable names
(``conv1`` … ``conv17``, ``xconv*``, ``pmconv*``, ``allconv*``).

Channel widths: the reference asks ``gen_conv`` for ``c`` channels and gets a convolution with
``c`` outputs split into ``c/2`` features and ``c/2`` gates, i.e. a :class:`GatedConv2d` with
``out_channels = c/2``. The widths below are the gated outputs, so the reference's
``gen_conv(x, cnum)`` appears here as ``GatedConv2d(·, cnum // 2)``.

Two details that the parameter counts pin (4,052,478 for the reference's 5-channel input):

- the refinement stage sees the 3-channel pasted image only: in the reference the line
  ``xnow = concat([x, ones, mask])`` is commented out and ``xnow = x`` used instead;
- the last layer of each stage (``gen_conv(x, 3, activation=None)``) is a plain 3×3 convolution with
  3 outputs, no gate, followed by tanh.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from common.discriminators import register_discriminator
from common.layers import check_range, pad_to_multiple, scaled_width, sn
from common.ops import compose, hard_mask
from ipn.layers import ContextualAttention, GatedConv2d, GatedUpConv2d


def _dilated_bottleneck(prefix: str, first_index: int, channels: int) -> list[tuple[str, nn.Module]]:
    """Four 3×3 gated convs dilated 2, 4, 8, 16 (``{prefix}{i}_atrous``), width unchanged."""
    return [
        (f"{prefix}{first_index + i}_atrous", GatedConv2d(channels, channels, 3, dilation=2 ** (i + 1)))
        for i in range(4)
    ]


def _to_rgb(name: str, in_channels: int) -> list[tuple[str, nn.Module]]:
    """The ungated 3×3 conv to 3 channels and tanh that end both stages."""
    return [(name, nn.Conv2d(in_channels, 3, 3, padding=1)), ("tanh", nn.Tanh())]


class CoarseNetwork(nn.Sequential):
    """Stage 1: ``(B, in_channels, H, W)`` -> coarse image ``(B, 3, H, W)`` in [-1, 1], ``H, W``
    multiples of 4.

    5×5 conv, two stride-2 gated convs down to 1/4 resolution, six plain and four dilated gated
    convs there, two nearest ×2 gated up-convs back, a narrow gated conv and the RGB head.
    """

    def __init__(self, in_channels: int, cnum: int) -> None:
        layers = [
            ("conv1", GatedConv2d(in_channels, cnum // 2, 5)),
            ("conv2_downsample", GatedConv2d(cnum // 2, cnum, 3, stride=2)),
            ("conv3", GatedConv2d(cnum, cnum, 3)),
            ("conv4_downsample", GatedConv2d(cnum, 2 * cnum, 3, stride=2)),
            ("conv5", GatedConv2d(2 * cnum, 2 * cnum, 3)),
            ("conv6", GatedConv2d(2 * cnum, 2 * cnum, 3)),
            *_dilated_bottleneck("conv", 7, 2 * cnum),
            ("conv11", GatedConv2d(2 * cnum, 2 * cnum, 3)),
            ("conv12", GatedConv2d(2 * cnum, 2 * cnum, 3)),
            ("conv13_upsample", GatedUpConv2d(2 * cnum, cnum)),
            ("conv14", GatedConv2d(cnum, cnum, 3)),
            ("conv15_upsample", GatedUpConv2d(cnum, cnum // 2)),
            ("conv16", GatedConv2d(cnum // 2, cnum // 4, 3)),
            *_to_rgb("conv17", cnum // 4),
        ]
        super().__init__(OrderedDict(layers))


class RefineNetwork(nn.Module):
    """Stage 2: pasted image ``(B, 3, H, W)`` and hard hole mask ``(B, 1, H, W)`` (1 = hole) ->
    refined image ``(B, 3, H, W)`` in [-1, 1], ``H, W`` multiples of 8 (1/4 resolution, then the
    attention's ×``rate`` matching).

    Two encoders to 1/4 resolution run side by side: a dilated-conv branch that hallucinates, and a
    branch that ends in contextual attention, copying features from the known region into the hole.
    Their outputs are concatenated and decoded as in stage 1.
    """

    def __init__(self, cnum: int, attention: dict | None = None) -> None:
        super().__init__()
        self.conv_branch = nn.Sequential(
            OrderedDict(
                [
                    ("xconv1", GatedConv2d(3, cnum // 2, 5)),
                    ("xconv2_downsample", GatedConv2d(cnum // 2, cnum // 2, 3, stride=2)),
                    ("xconv3", GatedConv2d(cnum // 2, cnum, 3)),
                    ("xconv4_downsample", GatedConv2d(cnum, cnum, 3, stride=2)),
                    ("xconv5", GatedConv2d(cnum, 2 * cnum, 3)),
                    ("xconv6", GatedConv2d(2 * cnum, 2 * cnum, 3)),
                    *_dilated_bottleneck("xconv", 7, 2 * cnum),
                ]
            )
        )
        self.attention_encoder = nn.Sequential(
            OrderedDict(
                [
                    ("pmconv1", GatedConv2d(3, cnum // 2, 5)),
                    ("pmconv2_downsample", GatedConv2d(cnum // 2, cnum // 2, 3, stride=2)),
                    ("pmconv3", GatedConv2d(cnum // 2, cnum, 3)),
                    ("pmconv4_downsample", GatedConv2d(cnum, 2 * cnum, 3, stride=2)),
                    ("pmconv5", GatedConv2d(2 * cnum, 2 * cnum, 3)),
                    # ReLU, not ELU, as in the reference: the features that attention compares are >= 0.
                    ("pmconv6", GatedConv2d(2 * cnum, 2 * cnum, 3, activation="relu")),
                ]
            )
        )
        self.contextual_attention = ContextualAttention(**(attention or {}))
        self.attention_decoder = nn.Sequential(
            OrderedDict(
                [
                    ("pmconv9", GatedConv2d(2 * cnum, 2 * cnum, 3)),
                    ("pmconv10", GatedConv2d(2 * cnum, 2 * cnum, 3)),
                ]
            )
        )
        self.decoder = nn.Sequential(
            OrderedDict(
                [
                    ("allconv11", GatedConv2d(4 * cnum, 2 * cnum, 3)),
                    ("allconv12", GatedConv2d(2 * cnum, 2 * cnum, 3)),
                    ("allconv13_upsample", GatedUpConv2d(2 * cnum, cnum)),
                    ("allconv14", GatedConv2d(cnum, cnum, 3)),
                    ("allconv15_upsample", GatedUpConv2d(cnum, cnum // 2)),
                    ("allconv16", GatedConv2d(cnum // 2, cnum // 4, 3)),
                    *_to_rgb("allconv17", cnum // 4),
                ]
            )
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hallucinated = self.conv_branch(x)
        features = self.attention_encoder(x)
        attended, _ = self.contextual_attention(features, features, mask)
        attended = self.attention_decoder(attended)
        return self.decoder(torch.cat([hallucinated, attended], dim=1))


class DeepFillGenerator(nn.Module):
    """DeepFill v2's coarse-to-fine gated generator.

    ``forward(x, mask)``: ``x`` ``(B, in_channels, H, W)`` whose first 3 channels are the masked image
    in [-1, 1], and ``mask`` ``(B, 1, H, W)`` in [0, 1] (1 = hole) -> ``(coarse, refined)``, both
    ``(B, 3, H, W)`` in [-1, 1]. The caller builds ``x``: DeepFill v2 uses
    ``[masked RGB (3), ones (1), mask (1)]`` (``in_channels=5``); blindfill's IPN adds the edge map,
    ``[masked RGB (3), ones (1), mask (1), edges (1)]`` (``in_channels=6``).

    The mask may be continuous (the MPN's m̂). It is used three ways:

    - as an input channel, as the caller put it into ``x``;
    - as the blend weight of the paste between the stages, ``coarse·m + x_rgb·(1 − m)``;
    - thresholded, ``m > 0.5``, as the hole of contextual attention (which patches may not be
      copied from), which needs a yes/no answer per patch.

    Any ``H, W >= 1``: inputs are padded (:func:`~common.layers.pad_to_multiple`) to a multiple of
    ``4·rate`` (8) and the outputs cropped back. Each sample's mask applies to that sample only.
    Attention matches 3×3 patches on the ``H/8 × W/8`` grid; where the hole touches every patch (a
    hole large for a small image) it has no source and its branch contributes zeros, as in the
    reference.

    Args:
        in_channels: channels of ``x``.
        cnum: the reference's base width (48), at least 4. Gated layers output ``cnum // 2`` to
            ``2·cnum`` channels, the last one ``cnum // 4`` (any ``cnum``, so widths can be scaled).
        attention: keyword arguments of :class:`~ipn.layers.ContextualAttention` (defaults: the
            reference's ``ksize=3, stride=1, rate=2``, fused scores, softmax scale 10).
        width_mult: multiplies ``cnum``.
        residual: both stages predict a correction of a given ``base`` image instead of the image
            itself (their RGB heads start at zero, so an untrained generator returns ``base`` in
            the hole): ``coarse = base + Δ₁``, ``refined = paste(coarse) + Δ₂``, clamped to
            [-1, 1]. The parameters are the same.
    """

    def __init__(
        self,
        in_channels: int = 5,
        cnum: int = 48,
        attention: dict | None = None,
        width_mult: float = 1.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        check_range("in_channels", in_channels, 3, 64)  # the image comes first
        cnum = scaled_width(cnum, width_mult, "cnum", widest=4)
        if cnum < 4:
            raise ValueError(f"cnum × width_mult must be >= 4, got {cnum}")
        self.in_channels = in_channels
        self.coarse = CoarseNetwork(in_channels, cnum)
        self.refine = RefineNetwork(cnum, attention)
        # Two stride-2 convs, then attention matches at 1/rate of that: 8 at the default rate 2.
        self.size_multiple = 4 * self.refine.contextual_attention.rate
        self.residual = residual
        self._init_weights()

    def _init_weights(self) -> None:
        # The gated layers initialise themselves so that activations keep their scale through all
        # 17 layers of a stage (GatedConv2d.reset_parameters; the reference's TensorFlow defaults
        # shrink them to ~1e-7). The RGB heads keep tf.layers.conv2d's defaults, or start at zero
        # in a residual generator, so that step 0 returns the base image.
        if self.residual:
            self.zero_correction()
        else:
            for head in (self.coarse.conv17, self.refine.decoder.allconv17):
                nn.init.xavier_uniform_(head.weight)
                nn.init.zeros_(head.bias)

    @torch.no_grad()
    def zero_correction(self) -> None:
        """Zero the RGB heads of a residual generator: it then returns its ``base`` image exactly
        (the classical floor it corrects), as at step 0."""
        if not self.residual:
            raise ValueError("only a residual generator has a correction to switch off")
        for head in (self.coarse.conv17, self.refine.decoder.allconv17):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, base: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, in_channels, H, W)``, ``mask`` ``(B, 1, H, W)`` (and, for a ``residual``
        generator, the ``base`` image ``(B, 3, H, W)`` in [-1, 1] it corrects) -> ``(coarse,
        refined)``, each ``(B, 3, H, W)`` in [-1, 1]."""
        if self.residual != (base is not None):
            raise ValueError("a residual generator needs the base image it corrects, and only it takes one")
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if mask.shape != (x.shape[0], 1, *x.shape[2:]):
            raise ValueError(f"mask must be {(x.shape[0], 1, *x.shape[2:])}, got {tuple(mask.shape)}")
        h, w = x.shape[-2:]
        parts = [x, mask.to(x.dtype)] + ([base.to(x.dtype)] if self.residual else [])
        padded, (left, _, top, _) = pad_to_multiple(torch.cat(parts, dim=1), self.size_multiple)
        x, mask = padded[:, : self.in_channels], padded[:, self.in_channels : self.in_channels + 1]

        coarse = self.coarse(x)
        if self.residual:
            coarse = (padded[:, self.in_channels + 1 :] + coarse).clamp(-1, 1)
        pasted = compose(x[:, :3], coarse, mask)
        refined = self.refine(pasted, hard_mask(mask))
        if self.residual:
            refined = (pasted + refined).clamp(-1, 1)
        return coarse[..., top : top + h, left : left + w], refined[..., top : top + h, left : left + w]


def _sn_conv5x5_stride2(in_channels: int, out_channels: int) -> nn.Module:
    conv = nn.Conv2d(in_channels, out_channels, 5, stride=2, padding=2)
    # Initialised before spectral norm is attached, so its power-iteration vectors match the weight.
    nn.init.xavier_uniform_(conv.weight)
    nn.init.zeros_(conv.bias)
    return sn(conv)


@register_discriminator("sn_patch")
class SNPatchDiscriminator(nn.Module):
    """DeepFill v2's SN-PatchGAN: ``(B, in_channels, H, W)`` -> scores ``(B, 4·cnum, H', W')``,
    ``H' = ⌈H / 64⌉``, ``W' = ⌈W / 64⌉``.

    Six 5×5 stride-2 spectral-norm convolutions (``cnum, 2cnum, 4cnum, 4cnum, 4cnum, 4cnum``), each
    followed by LeakyReLU(0.2), the last one included. Every element of the output is a score (the
    reference flattens it; the hinge loss averages over all of them). The input is ``[RGB, mask]``
    in DeepFill v2 (4 channels).

    The convolutions keep their bias under spectral norm, as the reference (``tf.layers.conv2d``
    with a spectrally normalised kernel; the port's ``spectral_norm(nn.Conv2d(...))``): 5,946,816
    parameters at the defaults, 1,216 of them biases.
    """

    def __init__(self, in_channels: int = 4, cnum: int = 64, width_mult: float = 1.0) -> None:
        super().__init__()
        check_range("in_channels", in_channels, 1, 64)
        cnum = scaled_width(cnum, width_mult, "cnum", widest=4)
        widths = [cnum, 2 * cnum, 4 * cnum, 4 * cnum, 4 * cnum, 4 * cnum]
        layers = []
        for i, (c_in, c_out) in enumerate(zip([in_channels, *widths], widths), start=1):
            layers += [(f"conv{i}", _sn_conv5x5_stride2(c_in, c_out)), (f"lrelu{i}", nn.LeakyReLU(0.2))]
        self.layers = nn.Sequential(OrderedDict(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
