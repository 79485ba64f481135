"""The GAN of the user's paper "Image Inpainting Using Generative Adversarial Networks", at CIFAR-10
scale (32²): an encoder–decoder generator with dropout, and a discriminator whose shared first
layers split into a global path (the whole image, real or fake) and a local path ending in fully
connected layers over local patches.

The paper gives that shape, not the layers. They follow the best-known public CIFAR-10
inpainting GAN, the Keras context encoder of eriklindernoren/Keras-GAN
(``context_encoder/context_encoder.py``): encoder widths 32, 64, 128, 512 with LeakyReLU 0.2
then batch norm (Keras momentum 0.8 = PyTorch 0.2), dropout 0.5 at the bottleneck, a ReLU + batch
norm decoder; its discriminator (3×3 convolutions 64 s2, 128 s2, 256, LeakyReLU + batch norm,
flatten, one output) is our trunk + global path. Where the paper differs from that code we follow
the paper: 2×2 max pooling after each encoder convolution (the code strides), four 4×4 stride-2
deconvolutions back to the whole image (the code upsamples to the missing 8×8 patch only), and
the image and the mask as input (any hole, not a fixed square). The local path applies the same
256-channel convolution and then two fully connected layers to every position of the trunk's 8×8
grid (1×1 convolutions: one real/fake score per local patch) and keeps the mean score of the
patches that overlap the hole. Counts, pinned in the tests: generator 1,898,947, discriminator
716,802 at 32².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import pad_to_multiple, scaled_width

SIZE = 32  # CIFAR-10's side
ENCODER_WIDTHS = (32, 64, 128, 512)
DECODER_WIDTHS = (128, 64, 32)
BN_MOMENTUM = 0.2  # Keras' momentum 0.8 (Keras weighs the running average, PyTorch the new batch)


def _conv_lrelu_bn(in_channels: int, out_channels: int, stride: int = 1, norm: bool = True) -> list[nn.Module]:
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride, padding=1), nn.LeakyReLU(0.2, inplace=True)]
    return layers + [nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM)] if norm else layers


class CifarGANGenerator(nn.Module):
    """``(B, in_channels, H, W)`` (the image with its hole zeroed, and the mask) -> ``(B, 3, H, W)``
    in [0, 1]. Encoder: four 3×3 convolutions (32, 64, 128, 512), each with LeakyReLU 0.2 and batch
    norm (the last without) and 2×2 max pooling, dropout 0.5 at the ``H/16`` bottleneck; decoder:
    4×4 stride-2 deconvolutions (128, 64, 32 with ReLU and batch norm, then 3), sigmoid. Any
    ``H, W``: padded to a multiple of 16 and cropped back."""

    multiple = 16

    def __init__(self, in_channels: int = 4, width_mult: float = 1.0, dropout: float = 0.5):
        super().__init__()
        layers, channels = [], in_channels
        for i, width in enumerate(ENCODER_WIDTHS):
            width = scaled_width(width, width_mult)
            layers += [*_conv_lrelu_bn(channels, width, norm=i < len(ENCODER_WIDTHS) - 1), nn.MaxPool2d(2)]
            channels = width
        layers.append(nn.Dropout(dropout))
        for width in DECODER_WIDTHS:
            width = scaled_width(width, width_mult)
            layers += [nn.ConvTranspose2d(channels, width, 4, 2, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.BatchNorm2d(width, momentum=BN_MOMENTUM))
            channels = width
        layers.append(nn.ConvTranspose2d(channels, 3, 4, 2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        padded, (left, _, top, _) = pad_to_multiple(x, self.multiple)
        return torch.sigmoid(self.layers(padded))[..., top : top + h, left : left + w]


class SharedTrunkDiscriminator(nn.Module):
    """``forward(x, mask)``: ``x`` ``(B, in_channels, image_size, image_size)``, ``mask`` ``(B, 1, H,
    W)`` (1 = hole) -> ``(B, 2)`` logits, the global view's and the local view's. Trunk: 3×3
    convolutions 64 and 128 at stride 2 (LeakyReLU 0.2, batch norm) to a ``size/4`` grid. Global:
    a 3×3 convolution to 256, flattened, one fully connected output. Local: its own 3×3 convolution
    to 256, then fully connected layers 256 → 128 → 1 at each grid position (a score per local
    patch); the mean over the patches that overlap the hole (all of them when there is none)."""

    takes_mask = True

    def __init__(self, in_channels: int = 3, image_size: int = SIZE, width_mult: float = 1.0):
        super().__init__()
        c64, c128, c256 = (scaled_width(c, width_mult) for c in (64, 128, 256))
        self.image_size = image_size
        self.trunk = nn.Sequential(*_conv_lrelu_bn(in_channels, c64, 2), *_conv_lrelu_bn(c64, c128, 2))
        side = ((image_size + 1) // 2 + 1) // 2  # after two stride-2 convolutions
        self.global_path = nn.Sequential(*_conv_lrelu_bn(c128, c256), nn.Flatten(), nn.Linear(c256 * side * side, 1))
        self.local_path = nn.Sequential(
            *_conv_lrelu_bn(c128, c256),
            nn.Conv2d(c256, scaled_width(128, width_mult), 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(scaled_width(128, width_mult), 1, 1),
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"the discriminator is built for {self.image_size}² images, got {tuple(x.shape[-2:])}")
        features = self.trunk(x)
        patches = self.local_path(features)  # (B, 1, size/4, size/4)
        hole = (F.adaptive_max_pool2d(mask.to(patches.dtype), patches.shape[-2:]) > 0.5).to(patches.dtype)
        hole = torch.where(hole.flatten(1).any(1)[:, None, None, None], hole, torch.ones_like(hole))
        local = (patches * hole).flatten(1).sum(1) / hole.flatten(1).sum(1)
        return torch.stack([self.global_path(features)[:, 0], local], dim=1)
