"""Metrics shared by the stages: image quality (PSNR, SSIM, L1), masks (IoU, BCE, MAE), edges.

Images are ``(B, C, H, W)`` in [0, 1]; masks ``(B, 1, H, W)`` in [0, 1] with 1 = destroyed. Each
metric is computed per image and averaged over the batch into a 0-d tensor; ``reduction="none"``
returns the per-image values ``(B,)`` instead (except for the edge metrics, pooled over the batch
as EdgeConnect pools them). Inputs are computed in at least float32, so half-precision outputs of
an autocast model are measured exactly.
"""

from __future__ import annotations

from typing import Literal

import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

Reduction = Literal["mean", "none"]

_BCE_EPS = 1e-6


def _as_float(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(torch.promote_types(t.dtype, torch.float32)) for t in tensors)


def _reduce(per_image: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "none":
        return per_image
    if reduction == "mean":
        return per_image.nanmean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``values`` ``(B, C, H, W)`` weighted by ``mask`` ``(B, 1 or C, H, W)``.

    sum(values · m) / sum(m over C channels): the hole's pixels × channels. NaN for an empty mask.
    """
    mask = mask.expand_as(values)
    return (values * mask).flatten(1).sum(1) / mask.flatten(1).sum(1)


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    data_range: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """PSNR in dB of ``pred`` vs ``target`` ``(B, C, H, W)``, per image, then the batch mean.

    With ``mask`` ``(B, 1, H, W)`` only the hole counts: the MSE is over the masked pixels ×
    channels (weighted by a soft mask). An image with an empty hole gives NaN and is left out of
    the mean; a perfect image gives ``inf``.
    """
    pred, target = _as_float(pred, target)
    if mask is None:
        per_image = peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))
    else:
        mse = _masked_mean((pred - target) ** 2, _as_float(mask)[0])
        per_image = 10 * torch.log10(data_range**2 / mse)
    return _reduce(per_image, reduction)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    data_range: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """SSIM of ``pred`` vs ``target`` ``(B, C, H, W)`` (Gaussian window 11, sigma 1.5), per image,
    then the batch mean. Sides must be at least 11 pixels.

    With ``mask`` ``(B, 1, H, W)`` the SSIM map is averaged over the hole only (weighted by a soft
    mask); an image with an empty hole gives NaN and is left out of the mean.
    """
    pred, target = _as_float(pred, target)
    per_image, full = structural_similarity_index_measure(
        pred,
        target,
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=data_range,
        reduction="none",
        return_full_image=True,
    )
    if mask is not None:
        per_image = _masked_mean(full, _as_float(mask)[0])
    return _reduce(per_image, reduction)


def l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Mean absolute error of ``pred`` vs ``target`` ``(B, C, H, W)``, per image, then the batch mean.

    With ``mask`` ``(B, 1, H, W)``: sum(|pred − target| · m) / (sum(m) · C) per image, i.e. the
    mean inside the hole. An image with an empty hole gives NaN and is left out of the mean.
    """
    pred, target = _as_float(pred, target)
    diff = (pred - target).abs()
    per_image = diff.flatten(1).mean(1) if mask is None else _masked_mean(diff, _as_float(mask)[0])
    return _reduce(per_image, reduction)


def mask_mae(pred: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Mean absolute error of a predicted mask vs the true one, both ``(B, 1, H, W)``."""
    return l1(pred, target, reduction=reduction)


def mask_bce(pred_prob: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Binary cross-entropy of mask probabilities ``pred_prob`` vs a (continuous) ``target``,
    both ``(B, 1, H, W)`` in [0, 1]; per-image mean, then the batch mean.

    Probabilities are clamped to [1e-6, 1 − 1e-6] so a confident wrong pixel costs ~13.8, not inf.
    Written out rather than ``F.binary_cross_entropy``, which autocast refuses.
    """
    pred_prob, target = _as_float(pred_prob, target)
    p = pred_prob.clamp(_BCE_EPS, 1 - _BCE_EPS)
    bce = -(target * p.log() + (1 - target) * (1 - p).log())
    return _reduce(bce.flatten(1).mean(1), reduction)


def mask_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """IoU of ``pred > threshold`` vs ``target > threshold`` ``(B, 1, H, W)``, per image, then the
    batch mean. An image where both are empty has IoU 1 (nothing to find, nothing found)."""
    pred, target = (pred > threshold).flatten(1), (target > threshold).flatten(1)
    intersection = (pred & target).sum(1)
    union = (pred | target).sum(1)
    per_image = torch.where(union > 0, intersection / union.clamp_min(1), 1.0)
    return _reduce(per_image.float(), reduction)


def edge_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image edge counts of predicted vs true edges ``(B, 1, H, W)``, both binarised at
    ``threshold``: ``(true positives, predicted edges, true edges)``, each ``(B,)``; where ``mask``
    is given only pixels with ``mask > 0`` count. Sums of these over any set of images give that
    set's pooled precision and recall (:func:`edge_precision_recall`)."""
    pred, target = pred > threshold, target > threshold
    if mask is not None:
        inside = (mask > 0).expand_as(pred)
        pred, target = pred & inside, target & inside
    return (pred & target).flatten(1).sum(1), pred.flatten(1).sum(1), target.flatten(1).sum(1)


def edge_precision_recall(
    pred: torch.Tensor,
    target: torch.Tensor,
    threshold: float = 0.5,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall of predicted edges vs true edges ``(B, 1, H, W)``, EdgeConnect's
    ``EdgeAccuracy``: both are binarised at ``threshold`` and counted over the whole batch.

    precision = TP / #predicted edges, recall = TP / #true edges; where ``mask`` is given only
    pixels with ``mask > 0`` count. With no predicted and no true edges both are 1; with only one
    of the two empty, both are 0. Returns two 0-d tensors.
    """
    return pooled_precision_recall(*(c.sum() for c in edge_counts(pred, target, threshold, mask)))


def pooled_precision_recall(
    true_positive: torch.Tensor, selected: torch.Tensor, relevant: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision TP / selected and recall TP / relevant from pooled counts (0-d tensors, e.g. sums
    of :func:`edge_counts`): both 1 when nothing was selected and nothing is relevant, both 0 when
    only one of the two is empty."""
    nothing_at_all = (selected == 0) & (relevant == 0)
    # torch.where rather than EdgeConnect's `if`: no host sync on a GPU.
    precision = torch.where(nothing_at_all, 1.0, true_positive / selected.clamp_min(1))
    recall = torch.where(nothing_at_all, 1.0, true_positive / relevant.clamp_min(1))
    return precision, recall


# -- over a validation epoch, over every process of a distributed run ----------------------------


def gather_objects(obj) -> list:
    """``obj`` of every process of a distributed run (rank order), or ``[obj]`` in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


class EpochMeans:
    """Sample-weighted means of named values over an epoch and over every process
    (torchmetrics ``MeanMetric``: its states are summed over the ranks when computed).

    ``update(values, weight)`` adds one batch's values (0-d tensors; a NaN, "not measurable on this
    batch", is left out); ``compute()`` returns the means measured anywhere, the same on every rank
    (a name no batch on any rank measured is left out) and starts a new epoch. Ranks may have seen
    different numbers of batches, none at all included: the names are agreed on first.
    """

    def __init__(self):
        from torchmetrics.aggregation import MeanMetric

        self._new = lambda: MeanMetric(nan_strategy="ignore")
        self.means: dict = {}

    def update(self, values: dict[str, torch.Tensor], weight: int) -> None:
        for name, value in values.items():
            value = torch.as_tensor(value).detach().float()
            if name not in self.means:
                self.means[name] = self._new().to(value.device)
            self.means[name].update(value, weight)

    def compute(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        names = sorted({name for names in gather_objects(sorted(self.means)) for name in names})
        result = {}
        for name in names:  # the same order on every rank: each compute() is a collective
            metric = self.means.setdefault(name, self._new().to(device))
            if metric.update_count == 0:
                metric.update(torch.tensor(float("nan"), device=metric.device), 0)  # an empty share of the sum
            value = metric.compute()
            if not torch.isnan(value):
                result[name] = value
        self.means = {}
        return result
