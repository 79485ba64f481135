"""VGG-19 features for perceptual and style losses (EdgeConnect's inpainting losses).

The weights are never downloaded: pass the path of a torchvision ``vgg19`` state dict (e.g.
``vgg19-dcbb9e9d.pth``), loaded with ``weights_only=True``.
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


class VGGFeatures(nn.Module):
    """Frozen VGG-19 ``features`` up to relu5_2; ``forward(x)`` with x ``(B, 3, H, W)`` in [0, 1]
    (ImageNet-normalised inside) returns ``{layer name: (B, C, h, w)}``."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from torchvision.models import vgg19

        path = Path(str(weights_path)).expanduser()
        state = load_weights_file(path, "VGG-19 weights")
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is not a torchvision vgg19 state dict")
        vgg = vgg19(weights=None)
        features_only = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        try:
            vgg.features.load_state_dict(features_only or state)
        except RuntimeError as err:
            raise CheckpointError(f"{path} is not a torchvision vgg19 state dict: {str(err).splitlines()[0]}") from None
        self.features = vgg.features[: RELU_INDEX["relu5_2"] + 1].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self._names = {index: name for name, index in RELU_INDEX.items()}

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
