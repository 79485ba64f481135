"""The EPN stage: EdgeConnect's edge model, trained blind (on corrupted images and their masks)."""

from __future__ import annotations

import torch
from torch import nn

from common.layers import hard_mask, scale_widths
from common.losses import feature_matching_loss
from common.metrics import edge_precision_recall
from common.module import GANModule
from epn.edges import epn_inputs, to_gray
from epn.model import EdgeGenerator, PatchDiscriminator


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    return 2 * precision * recall / (precision + recall).clamp_min(1e-8)


class EPNModule(GANModule):
    """Edge generator (G1 of EdgeConnect) against a 70×70 PatchGAN on [gray, edges].

    Batches need ``image``, ``corrupted``, ``mask``, ``edge`` (Canny of the truth) and
    ``corrupted_edge`` (Canny of the corrupted image). The mask comes from the batch
    (``mask_source=truth``, the default) or from a frozen MPN handed in as ``mask_predictor``
    by :mod:`pipeline.train` (``mask_source=mpn``), so the EPN learns on the masks it will see.
    The predictor is not part of this module's state: EPN checkpoints hold EPN weights only.

    Losses and optimiser as EdgeConnect: ``adv_weight``·adversarial (nsgan) +
    ``fm_weight`` (10)·feature matching; Adam lr 1e-4, betas (0, 0.9), D lr × 0.1.
    """

    stage_name = "epn"
    needs_edges = True

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        width_mult: float = 1.0,
        gan_loss: str = "nsgan",
        lr: float = 1e-4,
        d2g_lr: float = 0.1,
        betas: tuple[float, float] = (0.0, 0.9),
        adv_weight: float = 1.0,
        fm_weight: float = 10.0,
        grad_clip: float = 0.0,
        mask_threshold: float = 0.5,
        edge_threshold: float = 0.5,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        mask_predictor: nn.Module | None = None,
    ):
        super().__init__(
            gan_loss=gan_loss,
            lr=lr,
            d2g_lr=d2g_lr,
            betas=betas,
            grad_clip=grad_clip,
            max_nonfinite=max_nonfinite,
            grid_rows=grid_rows,
        )
        self.save_hyperparameters(ignore=["mask_predictor"])
        self.generator = EdgeGenerator(**scale_widths(generator, width_mult, base_channels=64))
        self.discriminator = PatchDiscriminator(**scale_widths(discriminator, width_mult, base_channels=64))
        self.attach_frozen("mask_predictor", mask_predictor)

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor, known_edges: torch.Tensor) -> torch.Tensor:
        """Edge map ``(B, 1, H, W)`` in [0, 1] from the corrupted image ``(B, 3, H, W)``, its mask
        and the Canny edges of the corrupted image (both ``(B, 1, H, W)``)."""
        return self.generator(epn_inputs(to_gray(corrupted), known_edges, mask, self.hparams.mask_threshold))

    def generate(self, batch: dict) -> dict:
        mask = self.predicted_mask(batch)
        return {"edges": self(batch["corrupted"], mask, batch["corrupted_edge"]), "mask": mask}

    def _discriminate(self, batch: dict, edges: torch.Tensor):
        return self.discriminator(torch.cat([to_gray(batch["image"]), edges], dim=1))

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real, _ = self._discriminate(batch, batch["edge"])
        fake, _ = self._discriminate(batch, outputs["edges"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        fake, fake_features = self._discriminate(batch, outputs["edges"])
        with torch.no_grad():
            _, real_features = self._discriminate(batch, batch["edge"])
        adversarial = self.adversarial.generator(fake)
        matching = feature_matching_loss(real_features, fake_features)
        loss = self.hparams.adv_weight * adversarial + self.hparams.fm_weight * matching
        return loss, {"g_adv": adversarial, "g_fm": matching}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        edges, hole = outputs["edges"], hard_mask(outputs["mask"], self.hparams.mask_threshold)
        t = self.hparams.edge_threshold
        precision, recall = edge_precision_recall(edges, batch["edge"], threshold=t)
        precision_hole, recall_hole = edge_precision_recall(edges, batch["edge"], threshold=t, mask=hole)
        self.log_dict(
            {
                "val/precision": precision,
                "val/recall": recall,
                "val/precision_hole": precision_hole,
                "val/recall_hole": recall_hole,
                "val/f1_hole": _f1(precision_hole, recall_hole),
            },
            prog_bar=True,
            batch_size=edges.shape[0],
        )
        if batch_idx == 0:
            self.log_grid(
                "val/epn",
                {
                    "corrupted": batch["corrupted"],
                    "mask": outputs["mask"],
                    "input edges": batch["corrupted_edge"] * (1 - hole),
                    "predicted": edges,
                    "truth": batch["edge"],
                },
            )
