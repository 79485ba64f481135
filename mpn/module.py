"""The MPN stage: learns the continuous mask m of a corrupted image (VCNet's mask prediction)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from common.layers import scale_widths
from common.losses import self_adaptive_bce
from common.metrics import mask_bce, mask_iou, mask_mae
from common.module import StageModule
from mpn.model import UNet


class MPNModule(StageModule):
    """U-Net mask predictor trained with VCNet's self-adaptive BCE plus L1 on the continuous m.

    ``model`` holds the :class:`~mpn.model.UNet` arguments; ``width_mult`` scales its channel
    widths (tests and ``trainer=smoke`` run the same code tiny). Defaults follow VCNet: Adam
    lr 1e-4, betas (0.5, 0.9). Batches follow the data contract (``corrupted``, ``mask``).
    """

    stage_name = "mpn"

    def __init__(
        self,
        model: dict | None = None,
        width_mult: float = 1.0,
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
        self.net = UNet(**scale_widths(model, width_mult, base_channels=64, max_channels=512))

    def forward(self, corrupted: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> predicted mask m̂ ``(B, 1, H, W)`` in [0, 1]."""
        return self.net.predict_mask(corrupted)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
        bce = self_adaptive_bce(logits, target, self.hparams.max_pos_weight)
        l1 = F.l1_loss(torch.sigmoid(logits), target)
        return self.hparams.bce_weight * bce + self.hparams.l1_weight * l1, {"bce_weighted": bce, "l1": l1}

    def training_step(self, batch: dict, batch_idx: int):
        loss, parts = self.loss(self.net(batch["corrupted"]), batch["mask"])
        if not self.check_finite(loss):
            return None  # Lightning skips backward and the optimizer step
        size = batch["mask"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        logits = self.net(batch["corrupted"])
        loss, _ = self.loss(logits, batch["mask"])
        pred = torch.sigmoid(logits)
        size = batch["mask"].shape[0]
        self.log_dict(
            {
                "val/loss": loss,
                "val/bce": mask_bce(pred, batch["mask"]),
                "val/iou": mask_iou(pred, batch["mask"]),
                "val/mae": mask_mae(pred, batch["mask"]),
            },
            prog_bar=True,
            batch_size=size,
        )
        if batch_idx == 0:
            self.log_grid(
                "val/mpn",
                {
                    "corrupted": batch["corrupted"],
                    "true mask": batch["mask"],
                    "predicted": pred,
                    "image": batch["image"],
                },
            )

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
