"""VGG features for perceptual and style losses: VGG-19 ReLU layers (EdgeConnect's inpainting
losses) and VGG-16 pool1–pool3 (the partial-convolution loss).

The weights are never downloaded: pass the path of a torchvision ``vgg19`` / ``vgg16`` state dict
(e.g. ``vgg19-dcbb9e9d.pth``, ``vgg16-397923af.pth``), loaded with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import load_weights_file
from common.errors import CheckpointError

# Index of each ReLU in torchvision's vgg19().features.
RELU_INDEX = {
    "relu1_1": 1,
    "relu1_2": 3,
    "relu2_1": 6,
    "relu2_2": 8,
    "relu3_1": 11,
    "relu3_2": 13,
    "relu3_3": 15,
    "relu3_4": 17,
    "relu4_1": 20,
    "relu4_2": 22,
    "relu4_3": 24,
    "relu4_4": 26,
    "relu5_1": 29,
    "relu5_2": 31,
}
PERCEPTUAL_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYERS = ("relu2_2", "relu3_4", "relu4_4", "relu5_2")


# Index of each max-pool in torchvision's vgg16().features.
VGG16_POOL_INDEX = {"pool1": 4, "pool2": 9, "pool3": 16}


def load_vgg_features(weights_path: str | Path, name: str) -> nn.Sequential:
    """The ``features`` of torchvision's ``vgg19`` or ``vgg16`` (``name``) with the weights of the
    state dict at ``weights_path`` (a whole model's, or its ``features`` alone)."""
    from torchvision import models

    path = Path(str(weights_path)).expanduser()
    label = name.replace("vgg", "VGG-")
    state = load_weights_file(path, f"{label} weights")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a torchvision {name} state dict")
    features = getattr(models, name)(weights=None).features
    features_only = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    try:
        features.load_state_dict(features_only or state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} is not a torchvision {name} state dict: {str(err).splitlines()[0]}") from None
    return features


class _FrozenVGG(nn.Module):
    """Frozen VGG layers ``features[: last + 1]``; ``forward(x)`` with x ``(B, 3, H, W)`` in [0, 1]
    (ImageNet-normalised inside) returns ``{name: (B, C, h, w)}`` at the indices of ``taps``."""

    def __init__(self, features: nn.Sequential, taps: dict[str, int]):
        super().__init__()
        self.features = features[: max(taps.values()) + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self._names = {index: name for name, index in taps.items()}

    def train(self, mode: bool = True):  # always frozen, whatever the parent does
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._names:
                out[self._names[index]] = x
        return out


class VGGFeatures(_FrozenVGG):
    """Frozen VGG-19 ``features`` up to relu5_2: ``{relu1_1 … relu5_2: (B, C, h, w)}`` of ``x``
    ``(B, 3, H, W)`` in [0, 1] (EdgeConnect's perceptual and style layers)."""

    def __init__(self, weights_path: str | Path):
        super().__init__(load_vgg_features(weights_path, "vgg19"), RELU_INDEX)


class VGG16Pools(_FrozenVGG):
    """Frozen VGG-16 ``features`` up to pool3: ``{pool1, pool2, pool3: (B, C, h, w)}`` of ``x``
    ``(B, 3, H, W)`` in [0, 1] (the partial-convolution loss's layers, Liu et al. 2018)."""

    def __init__(self, weights_path: str | Path):
        super().__init__(load_vgg_features(weights_path, "vgg16"), VGG16_POOL_INDEX)


def perceptual_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
    """EdgeConnect's perceptual loss: Σ L1 over relu1_1 … relu5_1 (weights 1)."""
    return sum(F.l1_loss(fake[k], real[k].detach()) for k in PERCEPTUAL_LAYERS)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C, C)`` Gram matrix normalised by C·H·W."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


def style_loss(fake: dict[str, torch.Tensor], real: dict[str, torch.Tensor]) -> torch.Tensor:
    """EdgeConnect's style loss: Σ L1 between Gram matrices of relu2_2, relu3_4, relu4_4, relu5_2."""
    return sum(F.l1_loss(gram_matrix(fake[k]), gram_matrix(real[k].detach())) for k in STYLE_LAYERS)
