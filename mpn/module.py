"""The MPN stage: learns the continuous mask m of a corrupted image (VCNet's mask prediction)."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from common.config import Positive, checked
from common.losses import MASK_LOSSES, mask_bce_loss
from common.metrics import mask_bce, mask_iou, mask_mae
from common.module import StageModule
from mpn.model import UNet


def generator_inputs(corrupted: torch.Tensor) -> torch.Tensor:
    """The U-Net's input: the corrupted image ``(B, 3, H, W)`` in [0, 1] as it is."""
    return corrupted


@checked
class MPNModule(StageModule):
    """U-Net mask predictor trained with a BCE plus L1 on the continuous m (VCNet).

    ``generator`` holds the :class:`~mpn.model.UNet` arguments (its defaults: the published
    widths). Adam lr 1e-4, betas (0.5, 0.9) as VCNet. Batches follow the data contract
    (``corrupted``, ``mask``); the MPN is the first stage, so it needs no feed.

    ``mask_loss`` (:func:`common.losses.mask_bce_loss`): ``bce`` by default, not VCNet's
    self-adaptive weighting: m̂ is the blending alpha of the repair and the pipeline thresholds it
    to decide what is destroyed, so it must be calibrated (the plain BCE's optimum is m̂ = m; the
    self-adaptive weights of up to 100 on destroyed pixels move the optimum for m = 0.5 to about
    0.91 and teach that damage is everywhere). ``normalised`` is VCNet's bounded class balance,
    ``self_adaptive`` the published loss, for comparison.

    Validation (on damaged and, with the data's ``clean_share``, intact samples): ``iou`` on the
    damaged ones; ``clean_flagged``, the share of an intact photo called destroyed (m̂ > 0.5);
    ``detection``, the mean over all samples of the IoU (damaged) or of the share left untouched
    (intact): the selection metric, as it punishes painting over clean photos.
    """

    stage_name = "mpn"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {"unet": UNet}

    def __init__(
        self,
        generator: dict | None = None,
        lr: Positive = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        mask_loss: str = "bce",
        bce_weight: float = 1.0,
        l1_weight: float = 1.0,
        max_pos_weight: float = 100.0,
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows)
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"unknown mask_loss {mask_loss!r}; expected one of {MASK_LOSSES}")
        self.save_hyperparameters()
        self.generator = UNet(**(generator or {}))

    def forward(self, corrupted: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` -> ``mask_logits`` and the predicted mask m̂ = sigmoid(logits)
        ``predicted_mask``, both ``(B, 1, H, W)``."""
        logits = self.generator(generator_inputs(corrupted))
        return {"mask_logits": logits, "predicted_mask": torch.sigmoid(logits)}

    def generate(self, batch: dict) -> dict:
        return self(batch["corrupted"])

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        hp, target = self.hparams, batch["mask"]
        bce = mask_bce_loss(outputs["mask_logits"], target, hp.mask_loss, hp.max_pos_weight)
        l1 = F.l1_loss(torch.sigmoid(outputs["mask_logits"]), target)
        return hp.bce_weight * bce + hp.l1_weight * l1, {"bce_loss": bce, "l1": l1}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        loss, _ = self.generator_loss(batch, outputs)
        return {"loss": loss, **detection_metrics(outputs["predicted_mask"], batch["mask"])}

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "true mask": batch["mask"],
            "predicted": outputs["predicted_mask"],
            "image": batch["image"],
        }

    def configure_optimizers(self):
        return torch.optim.Adam(self.generator_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))


def detection_metrics(predicted: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """How well a predicted mask ``(B, 1, H, W)`` finds the damage of ``target`` ``(B, 1, H, W)``
    and leaves intact photos (an all-zero target) alone: ``iou``, ``bce``, ``mae`` over the damaged
    images, ``clean_flagged`` (share of an intact image above ``threshold``) over the intact ones
    (NaN where a batch has none of a kind: left out of the epoch mean), and ``detection``, the mean
    over all images of the IoU or, for an intact one, of the share left untouched."""
    intact = target.flatten(1).amax(1) <= 0
    flagged = (predicted > threshold).flatten(1).float().mean(1)
    iou = mask_iou(predicted, target, threshold, reduction="none")
    nan = torch.tensor(float("nan"), device=predicted.device)
    damaged = ~intact
    return {
        "iou": iou[damaged].mean() if damaged.any() else nan,
        "bce": mask_bce(predicted[damaged], target[damaged]) if damaged.any() else nan,
        "mae": mask_mae(predicted, target),
        "clean_flagged": flagged[intact].mean() if intact.any() else nan,
        "detection": torch.where(intact, 1 - flagged, iou).mean(),
    }
