"""Choosing what ships on what a user gets: the blind pipeline on validation photos, intact ones
included.

Blind repair's first duty is to leave undamaged pixels alone, so every choice made after training
is scored on the *blind* pipeline (predicted masks, EPN edges, the mask rule, the composite) over
held-out photos of which some are damaged and some intact:

- :class:`BlindScores` accumulates, per image, the hole PSNR and the IoU of the final hole on the
  damaged ones and the share flagged (final mask > 0.5, after dilation) and the PSNR of the output
  against the input on the intact ones, and the hole PSNR of masked mode (the damaged ones given
  the hole a user would draw, :meth:`~pipeline.model.BlindPipeline.masked_hole`); its ``selection``
  is the mean of the blind and the masked hole PSNR (both are what users get) minus a steep
  penalty for every point of flagged share above ``harm_bound``: a constraint, with the violators
  still ordered;
- :func:`calibrate_mask_rule` picks the blind mode's ``hole_threshold`` and ``soft_floor``: the best
  IoU on the damaged photos among the settings that flag at most ``harm_bound`` of the intact ones;
- :func:`mask_calibration` reports the MPN's calibration (mean predicted vs mean true m by bin).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence

import torch

from common.metrics import gather_objects, mask_iou, psnr
from common.ops import hard_mask

HARM_BOUND = 0.01  # the shipped model's target: at most 1 % of an intact photo is repainted
PSNR_CAP = 100.0  # an untouched intact photo has infinite PSNR; it is counted as this
PENALTY_DB = 1000.0  # dB of selection score lost per unit of flagged share above the bound
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
FLOORS = (0.0, 0.1, 0.3, 0.5)


def is_intact(true_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: which images of ``true_mask`` ``(B, 1, H, W)`` carry no damage at all."""
    return true_mask.flatten(1).amax(1) <= 0


def _hole_psnr(output: torch.Tensor, image: torch.Tensor, true_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` PSNR of ``output`` against ``image`` in the true hole (``m > 0.5``), capped."""
    return psnr(output, image, mask=hard_mask(true_mask), reduction="none").clamp(max=PSNR_CAP)


class BlindScores:
    """Running per-image scores of the blind pipeline (see the module docstring).

    ``update(output, mask, image, true_mask)``: the pipeline's ``output`` ``(B, 3, H, W)`` and the
    ``mask`` it composited with ``(B, 1, H, W)``, the truth ``image`` and the true mask.
    """

    def __init__(self, harm_bound: float = HARM_BOUND):
        self.harm_bound = harm_bound
        self.values: dict[str, list[float]] = {
            "hole_psnr": [],
            "iou": [],
            "clean_flagged": [],
            "clean_psnr": [],
            "masked_hole_psnr": [],
        }

    @torch.no_grad()
    def update(self, output: torch.Tensor, mask: torch.Tensor, image: torch.Tensor, true_mask: torch.Tensor) -> None:
        output, mask, image, true_mask = (t.detach().float().cpu() for t in (output, mask, image, true_mask))
        intact = is_intact(true_mask)
        flagged = (mask > 0.5).flatten(1).float().mean(1)
        whole = psnr(output, image, reduction="none").clamp(max=PSNR_CAP)
        hole = _hole_psnr(output, image, true_mask)
        iou = mask_iou(mask, true_mask, reduction="none")
        for i in range(output.shape[0]):
            if intact[i]:
                self.values["clean_flagged"].append(flagged[i].item())
                self.values["clean_psnr"].append(whole[i].item())
            elif math.isfinite(hole[i].item()):
                self.values["hole_psnr"].append(hole[i].item())
                self.values["iou"].append(iou[i].item())

    @torch.no_grad()
    def update_masked(self, output: torch.Tensor, image: torch.Tensor, true_mask: torch.Tensor) -> None:
        """The masked-mode ``output`` ``(B, 3, H, W)`` of the same images (intact ones ignored)."""
        output, image, true_mask = (t.detach().float().cpu() for t in (output, image, true_mask))
        hole = _hole_psnr(output, image, true_mask)
        for i in torch.nonzero(~is_intact(true_mask)).flatten().tolist():
            if math.isfinite(hole[i].item()):
                self.values["masked_hole_psnr"].append(hole[i].item())

    def gathered(self) -> BlindScores:
        """These scores together with those of every other process of a distributed run."""
        merged = BlindScores(self.harm_bound)
        for values in gather_objects(self.values):
            for name, scores in values.items():
                merged.values[name].extend(scores)
        return merged

    def result(self) -> dict[str, float]:
        """Means of every score (NaN where no image had it) and the ``selection`` score."""
        means = {k: sum(v) / len(v) if v else float("nan") for k, v in self.values.items()}
        flagged = means["clean_flagged"] if self.values["clean_flagged"] else 0.0
        fill = (
            (means["hole_psnr"] + means["masked_hole_psnr"]) / 2
            if self.values["masked_hole_psnr"]
            else means["hole_psnr"]
        )
        means["selection"] = fill - PENALTY_DB * max(0.0, flagged - self.harm_bound)
        means["images"] = sum(len(v) for k, v in self.values.items() if k in ("hole_psnr", "clean_psnr"))
        return means


@torch.no_grad()
def score_pipeline(inpainter, batches: Iterable[dict], harm_bound: float = HARM_BOUND) -> dict[str, float]:
    """:class:`BlindScores` of a :class:`~pipeline.inference.inpainter.BlindInpainter` on ``batches`` (dicts
    with ``image``, ``corrupted``, ``mask``): in blind mode, and in masked mode given the hole a
    user would draw around the true damage."""
    scores = BlindScores(harm_bound)
    for batch in batches:
        result = inpainter.inpaint(batch["corrupted"], mode="blind")
        scores.update(result["output"], result["mask"], batch["image"], batch["mask"])
        given = inpainter.pipeline.masked_hole(batch["mask"].to(inpainter.device))
        masked = inpainter.inpaint(batch["corrupted"], given, "masked")
        scores.update_masked(masked["output"], batch["image"], batch["mask"])
    return scores.result()


@torch.no_grad()
def calibrate_mask_rule(
    pipeline,
    batches: Iterable[dict],
    harm_bound: float = HARM_BOUND,
    thresholds: Sequence[float] = THRESHOLDS,
    floors: Sequence[float] = FLOORS,
) -> tuple[dict[str, float], list[dict]]:
    """The blind mask rule's ``hole_threshold`` and ``soft_floor`` for ``pipeline`` (a
    :class:`~pipeline.model.BlindPipeline`): among the pairs of ``thresholds`` and ``floors`` (a
    floor at most its threshold; the threshold itself as a floor keeps no soft values), those whose
    final mask flags (> 0.5) at most ``harm_bound`` of the intact images of ``batches``, the one
    with the best mean IoU on the damaged ones (ties: the more cautious); if none is within the
    bound, the one flagging least. Returns ``{"hole_threshold", "soft_floor"}`` and the table of
    every pair (with ``clean_flagged`` and ``iou``). The pipeline is left unchanged."""
    predicted, truth = [], []
    device = next(pipeline.parameters(), torch.empty(0)).device
    for batch in batches:
        corrupted = batch["corrupted"].to(device)
        predicted.append(pipeline.masks(corrupted)["predicted_mask"].float().cpu())
        truth.append(batch["mask"].float())
    predicted, truth = torch.cat(predicted), torch.cat(truth)
    intact = is_intact(truth)
    original = pipeline.hole_threshold, pipeline.soft_floor
    table = []
    try:
        for t in thresholds:
            for f in sorted({*(f for f in floors if f <= t), t}):
                pipeline.hole_threshold, pipeline.soft_floor = t, f
                mask = pipeline.mask_rule(predicted, "blind")
                flagged = (mask[intact] > 0.5).flatten(1).float().mean(1)
                iou = mask_iou(mask[~intact], truth[~intact], reduction="none")
                table.append(
                    {
                        "hole_threshold": t,
                        "soft_floor": f,
                        "clean_flagged": flagged.mean().item() if intact.any() else 0.0,
                        "iou": iou.mean().item() if (~intact).any() else float("nan"),
                    }
                )
    finally:
        pipeline.hole_threshold, pipeline.soft_floor = original
    within = [row for row in table if row["clean_flagged"] <= harm_bound]
    if within:
        best = max(within, key=lambda row: (row["iou"], row["hole_threshold"], row["soft_floor"]))
    else:
        best = min(table, key=lambda row: (row["clean_flagged"], -row["iou"]))
    return {"hole_threshold": best["hole_threshold"], "soft_floor": best["soft_floor"]}, table


def floor_pipeline(pipeline):
    """A copy of ``pipeline`` (a :class:`~pipeline.model.BlindPipeline`) whose IPN returns its
    classical floor (its ``prefill`` fill, the correction's heads zeroed): what the learned fill
    must beat, run the same way."""
    if not pipeline.ipn.hparams.get("prefill"):
        raise ValueError("the IPN starts from no classical fill (prefill=null): it has no floor to fall back to")
    floor = copy.deepcopy(pipeline)
    floor.ipn.generator.zero_correction()
    return floor


def mask_calibration(predicted: torch.Tensor, target: torch.Tensor, bins: int = 10) -> list[dict]:
    """Calibration of a predicted mask ``(B, 1, H, W)`` against the true continuous mask: for each
    of ``bins`` equal bins of the prediction, its pixel count, mean prediction and mean truth (a
    calibrated MPN has the two means equal)."""
    predicted, target = predicted.flatten().float(), target.flatten().float()
    index = (predicted * bins).long().clamp(0, bins - 1)
    rows = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        rows.append(
            {
                "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
                "pixels": count,
                "mean_predicted": predicted[inside].mean().item() if count else float("nan"),
                "mean_true": target[inside].mean().item() if count else float("nan"),
            }
        )
    return rows
