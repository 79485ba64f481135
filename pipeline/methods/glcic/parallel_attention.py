"""The "first approach" of the user's paper "Image Inpainting using Deep Learning Models": a
completion network with a dilated-convolution branch and a contextual-attention branch in
parallel, trained against GLCIC's global + local discriminators with one layer fewer each (5 global
layers at 128², 4 local on a 56² patch: :class:`pipeline.methods.glcic.model.GlobalLocalDiscriminator`).

The paper gives the layer sequence — 6 convolutions (5×5 first, 3×3 rest), then in parallel 4
dilated 3×3 convolutions and a contextual-attention branch followed by two 3×3 convolutions, the two
embeddings concatenated before the decoder's 2 convolutions 3×3, 4×4 ↑2 deconvolution, 3×3
convolution, 4×4 ↑2 deconvolution and two 3×3 convolutions — but not the widths, strides, rates or
norms. Those follow GLCIC's completion network, which has exactly this sequence without the
attention branch (:data:`pipeline.methods.glcic.model.COMPLETION_LAYOUT`: widths 64–256, stride-2 2nd and 4th
convolutions, rates 2/4/8/16, batch norm + ReLU, sigmoid out), and the attention is DeepFill v1's
(Yu et al. 2018, the paper's "contextual attention": 3×3 patches, matched at half resolution,
scores fused; :class:`ipn.layers.ContextualAttention`). The concatenation doubles the first
decoder convolution's input (512 → 256), as DeepFill v1's refinement network does. Count, pinned
in the tests: 7,843,139 at full width (GLCIC's 6,072,131 + the attention branch's two convolutions
+ the wider fusion convolution).
"""

from __future__ import annotations

import torch
from torch import nn

from common.layers import pad_to_multiple, scaled_width
from ipn.layers import ContextualAttention
from pipeline.methods.glcic.model import COMPLETION_LAYOUT, ConvBNReLU

ENCODER, DILATED, FUSION, DECODER = (
    COMPLETION_LAYOUT[:6],
    COMPLETION_LAYOUT[6:10],
    COMPLETION_LAYOUT[10:12],
    COMPLETION_LAYOUT[12:],
)


def _stack(layout, in_channels: int, width_mult: float) -> tuple[nn.Sequential, int]:
    """The :class:`ConvBNReLU` layers of ``layout`` from ``in_channels``, and their output width."""
    layers, channels = [], in_channels
    for kind, out, kernel, stride, dilation in layout:
        out = scaled_width(out, width_mult)
        layers.append(ConvBNReLU(kind, channels, out, kernel, stride, dilation))
        channels = out
    return nn.Sequential(*layers), channels


class ParallelAttentionNet(nn.Module):
    """``(B, in_channels, H, W)`` — the image with its hole filled by a constant colour, and the
    mask (1 = hole) as the last channel — -> ``(B, 3, H, W)`` in [0, 1] (sigmoid). The encoder's
    ``(B, 256, H/4, W/4)`` features go through the dilated branch and, in parallel, through
    contextual attention (the hole's features rebuilt from the known region's patches) and two
    convolutions; both ``(B, 256, H/4, W/4)`` embeddings are concatenated and decoded. Any ``H, W``:
    padded to a multiple of 4 and cropped back.

    Args:
        in_channels: the input's channels, the mask last (4: RGB + mask).
        width_mult: channel-width multiplier (1.0: the published widths).
        attention: :class:`~ipn.layers.ContextualAttention`'s arguments.
    """

    multiple = 4

    def __init__(self, in_channels: int = 4, width_mult: float = 1.0, attention: dict | None = None):
        super().__init__()
        self.encoder, channels = _stack(ENCODER, in_channels, width_mult)
        self.dilated, _ = _stack(DILATED, channels, width_mult)
        self.attention = ContextualAttention(**(attention or {}))
        self.attention_convs, _ = _stack(FUSION, channels, width_mult)
        self.fusion, channels = _stack(FUSION, 2 * channels, width_mult)
        self.decoder, channels = _stack(DECODER, channels, width_mult)
        self.head = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded, (left, _, top, _) = pad_to_multiple(x, self.multiple)
        features = self.encoder(padded)
        attended, _ = self.attention(features, features, padded[:, -1:])
        fused = torch.cat([self.dilated(features), self.attention_convs(attended)], dim=1)
        y = torch.sigmoid(self.head(self.decoder(self.fusion(fused))))
        return y[..., top : top + h, left : left + w]
