"""Globally and Locally Consistent Image Completion (Iizuka, Simo-Serra and Ishikawa, SIGGRAPH 2017):
the completion network and the global + local context discriminator.

Layouts are the paper's (its Tables 1–3). Where the paper is silent we follow the best-known
public PyTorch implementation, ``otenim/GLCIC-PyTorch`` (``models.py``): every convolution has a
bias and is followed by batch norm (the last layer of the completion network excepted), and each
discriminator's fully connected 1024-vector has a ReLU. That implementation applies ReLU before
batch norm; the paper's Table 1 says batch norm then ReLU, which we do (the parameter counts are
the same). Counts, pinned in the tests and equal to that implementation's: completion network
6,072,131 (any input size), discriminator 45,063,681 at 256² with a 128² local patch (its
``places2`` layout, the paper's).

The discriminator (:class:`GlobalLocalDiscriminator`) is also the ``global_local`` choice of the
other inpainting stages' discriminators (``common.discriminators``).
"""

from __future__ import annotations

import torch
from torch import nn

from common.discriminators import register_discriminator
from common.layers import check_range, pad_to_multiple, scaled_width

# (kind, out channels, kernel, stride, dilation) of the completion network, the paper's Table 1.
COMPLETION_LAYOUT = (
    ("conv", 64, 5, 1, 1),
    ("conv", 128, 3, 2, 1),
    ("conv", 128, 3, 1, 1),
    ("conv", 256, 3, 2, 1),
    ("conv", 256, 3, 1, 1),
    ("conv", 256, 3, 1, 1),
    ("conv", 256, 3, 1, 2),
    ("conv", 256, 3, 1, 4),
    ("conv", 256, 3, 1, 8),
    ("conv", 256, 3, 1, 16),
    ("conv", 256, 3, 1, 1),
    ("conv", 256, 3, 1, 1),
    ("deconv", 128, 4, 2, 1),
    ("conv", 128, 3, 1, 1),
    ("deconv", 64, 4, 2, 1),
    ("conv", 32, 3, 1, 1),
)
DISCRIMINATOR_WIDTHS = (64, 128, 256, 512, 512, 512, 512)  # 5×5 stride-2 convolutions, in order
FEATURES = 1024  # each discriminator's fully connected output


class ConvBNReLU(nn.Sequential):
    """Convolution (or a 4×4 stride-2 transposed one, ``deconv``) with bias, batch norm, ReLU;
    "same" padding, so only the stride changes the size."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, kernel: int, stride: int, dilation: int = 1):
        if kind == "deconv":
            conv = nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, padding=(kernel - stride) // 2)
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=dilation * (kernel - 1) // 2,
                             dilation=dilation)  # fmt: skip
        super().__init__(conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class GLCICCompletionNet(nn.Module):
    """GLCIC's completion network: ``(B, in_channels, H, W)`` (the image with its hole filled by a
    constant colour, and the mask) -> ``(B, 3, H, W)`` in [0, 1] (sigmoid). Two stride-2
    convolutions down, four dilated convolutions (rates 2, 4, 8, 16) widen the receptive
    field, two transposed convolutions up. Any ``H, W``: padded to a multiple of 4 and cropped back."""

    multiple = 4

    def __init__(self, in_channels: int = 4, width_mult: float = 1.0):
        super().__init__()
        layers, channels = [], in_channels
        for kind, out, kernel, stride, dilation in COMPLETION_LAYOUT:
            out = scaled_width(out, width_mult)
            layers.append(ConvBNReLU(kind, channels, out, kernel, stride, dilation))
            channels = out
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded, (left, _, top, _) = pad_to_multiple(x, self.multiple)
        y = torch.sigmoid(self.head(self.body(padded)))
        return y[..., top : top + h, left : left + w]


def _strided_side(side: int, layers: int) -> int:
    """The side after ``layers`` 5×5 stride-2 convolutions with padding 2: ⌈side / 2⌉ each."""
    for _ in range(layers):
        side = (side + 1) // 2
    return side


class ContextEncoder(nn.Sequential):
    """One of GLCIC's discriminator paths: ``layers`` 5×5 stride-2 convolutions (64, 128, 256, 512,
    512, ...) with batch norm and ReLU, flattened, a fully connected layer to 1024 and ReLU:
    ``(B, C, size, size)`` -> ``(B, 1024)``. The fully connected layer fixes the input size."""

    def __init__(self, in_channels: int, size: int, layers: int, width_mult: float = 1.0):
        check_range("discriminator layers", layers, 1, len(DISCRIMINATOR_WIDTHS))
        convs, channels = [], in_channels
        for out in DISCRIMINATOR_WIDTHS[:layers]:
            out = scaled_width(out, width_mult)
            convs.append(ConvBNReLU("conv", channels, out, 5, 2))
            channels = out
        features = scaled_width(FEATURES, width_mult)
        side = _strided_side(size, layers)
        super().__init__(*convs, nn.Flatten(), nn.Linear(channels * side * side, features), nn.ReLU(inplace=True))
        self.size, self.side = size, side  # input side, and the side its last convolution ends at


def hole_windows(mask: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """Per image of ``mask`` ``(B, 1, H, W)`` (1 = hole), the ``(top, left)`` of the ``size`` ×
    ``size`` window centred on the bounding box of its hole (m > 0.5), moved inside the image;
    the image's centre when it has no hole. ``size`` must fit the image."""
    h, w = mask.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"the local discriminator's {size}² patch does not fit a {h}×{w} image")
    hole = mask[:, 0] > 0.5
    rows, cols = hole.any(dim=2), hole.any(dim=1)  # (B, H), (B, W)
    windows = []
    for r, c in zip(rows.cpu(), cols.cpu()):
        if r.any():
            ys, xs = r.nonzero()[:, 0], c.nonzero()[:, 0]
            cy, cx = (int(ys[0]) + int(ys[-1]) + 1) // 2, (int(xs[0]) + int(xs[-1]) + 1) // 2
        else:
            cy, cx = h // 2, w // 2
        windows.append((min(max(cy - size // 2, 0), h - size), min(max(cx - size // 2, 0), w - size)))
    return windows


def crop_windows(x: torch.Tensor, windows: list[tuple[int, int]], size: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, size, size)``: each image's window at ``(top, left)``."""
    return torch.stack([image[:, top : top + size, left : left + size] for image, (top, left) in zip(x, windows)])


@register_discriminator("global_local")
class GlobalLocalDiscriminator(nn.Module):
    """GLCIC's context discriminator: a global path on the whole ``image_size``² image and a local
    path on the ``local_size``² patch centred on the hole, their 1024-vectors concatenated and one
    fully connected layer to a real/fake logit (``local_size`` None: half the image's side, the
    paper's 128 at 256): ``forward(x, mask)`` with ``x`` ``(B, in_channels,
    image_size, image_size)`` and ``mask`` ``(B, 1, H, W)`` (where the hole is) -> ``(B, 1)``
    logits (the paper's sigmoid is in the loss).

    Paper: 6 global layers at 256², 5 local at 128². The parallel CNN + attention network of the
    user's "Image Inpainting using Deep Learning Models" uses one layer fewer each: 5 at 128², 4 on a
    56² patch."""

    takes_mask = True  # the stages hand it the mask to find the hole by

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 256,
        local_size: int | None = None,
        global_layers: int = 6,
        local_layers: int = 5,
        width_mult: float = 1.0,
    ):
        super().__init__()
        local_size = image_size // 2 if local_size is None else local_size
        if not 1 <= local_size <= image_size:
            raise ValueError(f"local_size must be in 1..image_size={image_size}, got {local_size}")
        self.image_size, self.local_size = image_size, local_size
        self.global_path = ContextEncoder(in_channels, image_size, global_layers, width_mult)
        self.local_path = ContextEncoder(in_channels, local_size, local_layers, width_mult)
        self.classifier = nn.Linear(2 * scaled_width(FEATURES, width_mult), 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"the global discriminator is built for {self.image_size}² images (image_size), got "
                f"{tuple(x.shape[-2:])}: set its image_size to the training size"
            )
        if self.training and x.shape[0] == 1 and min(self.global_path.side, self.local_path.side) == 1:
            raise ValueError(
                "GLCIC's discriminator ends at 1×1 for this size, and batch norm in training needs more than one "
                "value per channel: train with a batch of 2 or more, or fewer layers (global_layers, local_layers)"
            )
        local = crop_windows(x, hole_windows(mask, self.local_size), self.local_size)
        return self.classifier(torch.cat([self.global_path(x), self.local_path(local)], dim=1))
