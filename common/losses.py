"""Losses shared by the stages: adversarial (nsgan, lsgan, hinge), feature matching, the mask
losses of the MPN (plain BCE, VCNet's self-adaptive and normalised BCE) and the hole-normalised L1."""

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


MASK_LOSSES = ("bce", "normalised", "self_adaptive")


def mask_bce_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce", max_weight: float = 100.0):
    """The MPN's BCE on logits ``(B, 1, H, W)`` against the continuous target m ``(B, 1, H, W)``.

    - ``bce``: unweighted; its minimiser is sigmoid(logit) = m, so m̂ is calibrated and can be used
      as the blending alpha and thresholded at a meaningful level;
    - ``normalised``: :func:`normalised_bce` (VCNet's class balance, bounded);
    - ``self_adaptive``: :func:`self_adaptive_bce` (positives up to ``max_weight``; inflates m̂).
    """
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "normalised":
        return normalised_bce(logits, target)
    if kind == "self_adaptive":
        return self_adaptive_bce(logits, target, max_weight)
    raise ValueError(f"unknown mask loss {kind!r}; expected one of {MASK_LOSSES}")


def normalised_bce(logits: torch.Tensor, target: torch.Tensor, floor: float = 0.1) -> torch.Tensor:
    """VCNet's normalised class balance: per image, the destroyed term is weighted by the known
    share and the known term by the destroyed share (both at least ``floor``, so an intact image,
    with no destroyed share, still teaches "no damage"), weights normalised to sum to 1.

    logits, target ``(B, 1, H, W)``; target continuous in [0, 1] (1 = destroyed).
    """
    dims = tuple(range(1, target.dim()))
    hole = target.mean(dims, keepdim=True)
    w_pos, w_neg = (1 - hole).clamp_min(floor), hole.clamp_min(floor)
    total = w_pos + w_neg
    loss = -(w_pos / total * target * F.logsigmoid(logits) + w_neg / total * (1 - target) * F.logsigmoid(-logits))
    return 2 * loss.mean()


def hole_normalised_l1(
    output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 inside the hole and outside it, each divided by its own area (EdgeConnect divides the
    L1 by the mask's mean): ``(hole, valid)`` 0-d tensors. ``output``, ``target`` ``(B, C, H, W)``;
    ``mask`` ``(B, 1, H, W)``, soft values weighting both sides. A whole-image mean would let a
    25 % hole carry a quarter of the weight the adversarial term puts on it."""
    error = (output - target).abs().mean(1, keepdim=True)
    hole = (error * mask).sum() / mask.sum().clamp_min(1.0)
    valid = (error * (1 - mask)).sum() / (1 - mask).sum().clamp_min(1.0)
    return hole, valid


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
