"""The MPN stage: learns the continuous mask m of a corrupted image (VCNet's mask prediction)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.losses import self_adaptive_bce
from common.metrics import mask_bce, mask_iou, mask_mae
from common.module import StageModule
from mpn.model import UNet


def generator_inputs(corrupted: torch.Tensor) -> torch.Tensor:
    """The U-Net's input: the corrupted image ``(B, 3, H, W)`` in [0, 1] as it is."""
    return corrupted


class MPNModule(StageModule):
    """U-Net mask predictor trained with VCNet's self-adaptive BCE plus L1 on the continuous m.

    ``generator`` holds the :class:`~mpn.model.UNet` arguments (its defaults: the published
    widths). Defaults follow VCNet: Adam lr 1e-4, betas (0.5, 0.9). Batches follow the data
    contract (``corrupted``, ``mask``); the MPN is the first stage, so it needs no feed.
    """

    stage_name = "mpn"

    def __init__(
        self,
        generator: dict | None = None,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.9),
        bce_weight: float = 1.0,
        l1_weight: float = 1.0,
        max_pos_weight: float = 100.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
    ):
        super().__init__(max_nonfinite=max_nonfinite, grid_rows=grid_rows)
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
        bce = self_adaptive_bce(outputs["mask_logits"], target, hp.max_pos_weight)
        l1 = F.l1_loss(torch.sigmoid(outputs["mask_logits"]), target)
        return hp.bce_weight * bce + hp.l1_weight * l1, {"bce_weighted": bce, "l1": l1}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        loss, _ = self.generator_loss(batch, outputs)
        pred, target = outputs["predicted_mask"], batch["mask"]
        return {
            "loss": loss,
            "bce": mask_bce(pred, target),
            "iou": mask_iou(pred, target),
            "mae": mask_mae(pred, target),
        }

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "true mask": batch["mask"],
            "predicted": outputs["predicted_mask"],
            "image": batch["image"],
        }

    def configure_optimizers(self):
        return torch.optim.Adam(self.generator_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
