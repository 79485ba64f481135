"""Losses shared by the stages: adversarial (nsgan, lsgan, hinge), feature matching, and the
self-adaptive BCE of VCNet's mask prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("nsgan", "lsgan", "hinge")


class AdversarialLoss(nn.Module):
    """GAN losses on raw discriminator outputs (logits, any shape; every element is scored).

    - ``nsgan``: non-saturating BCE (EdgeConnect's default);
    - ``lsgan``: least squares on the outputs, targets 1 / 0;
    - ``hinge``: D: ``mean(relu(1 - real)) + mean(relu(1 + fake))``, G: ``-mean(fake)`` (DeepFill v2).

    ``discriminator(real, fake)`` returns ``(real_term + fake_term) / 2`` as EdgeConnect and
    DeepFill v2 do; ``generator(fake)`` is the loss the generator minimises.
    """

    def __init__(self, kind: str = "nsgan"):
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ValueError(f"unknown GAN loss {kind!r}; expected one of {GAN_LOSSES}")
        self.kind = kind

    def _term(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        if self.kind == "nsgan":
            target = torch.ones_like(logits) if real else torch.zeros_like(logits)
            return F.binary_cross_entropy_with_logits(logits, target)
        if self.kind == "lsgan":
            return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))
        return F.relu(1.0 - logits).mean() if real else F.relu(1.0 + logits).mean()

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self._term(real, True) + self._term(fake, False))

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        if self.kind == "hinge":
            return -fake.mean()
        return self._term(fake, True)


def feature_matching_loss(real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]) -> torch.Tensor:
    """EdgeConnect's feature matching: sum over discriminator layers of the L1 distance between
    the features of the real (detached) and the generated input."""
    if len(real_features) != len(fake_features):
        raise ValueError("real and fake feature lists differ in length")
    return sum(F.l1_loss(fake, real.detach()) for real, fake in zip(real_features, fake_features))


def self_adaptive_bce(logits: torch.Tensor, target: torch.Tensor, max_weight: float = 100.0) -> torch.Tensor:
    """VCNet's mask loss: BCE whose positive (destroyed) term is weighted per image by the ratio
    of known to destroyed area, so small holes weigh as much as large ones.

    logits ``(B, 1, H, W)``; target ``(B, 1, H, W)`` continuous in [0, 1] (1 = destroyed).
    The weight is clamped to ``[1 / max_weight, max_weight]``: an image with (almost) no hole
    must not blow up.
    """
    dims = tuple(range(1, target.dim()))
    destroyed = target.sum(dims, keepdim=True)
    known = (1 - target).sum(dims, keepdim=True)
    weight = (known / destroyed.clamp_min(1e-6)).clamp(1.0 / max_weight, max_weight)
    loss = -(weight * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    return loss.mean()
