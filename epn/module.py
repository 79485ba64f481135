"""The EPN stage: EdgeConnect's edge model, trained blind (on corrupted images and their masks)."""

from __future__ import annotations

from typing import ClassVar

import torch

from common.config import Positive, checked
from common.discriminators import build_discriminator, discriminate
from common.losses import AdversarialLoss, feature_matching_loss
from common.metrics import edge_precision_recall
from common.module import GANModule
from common.ops import edge_hole, hard_mask, to_gray
from epn.model import EdgeGenerator, PatchDiscriminator


def generator_inputs(corrupted: torch.Tensor, mask: torch.Tensor, corrupted_edge: torch.Tensor) -> torch.Tensor:
    """EdgeConnect's edge-model input ``[gray·(1−m)+m, corrupted_edge·(1−edge_hole(m)), m]``
    ``(B, 3, H, W)`` from the corrupted image ``(B, 3, H, W)``, its mask and its Canny edges
    (``(B, 1, H, W)``).

    The gray image is blended with the continuous mask (EdgeConnect pastes white into the hole; a
    soft m blends); edges found on the corrupted image are kept only where the pixel is known and
    clear of the hole's outline (:func:`common.ops.edge_hole`).
    """
    gray = to_gray(corrupted)
    return torch.cat([gray * (1 - mask) + mask, corrupted_edge * (1 - edge_hole(mask)), mask], dim=1)


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    return 2 * precision * recall / (precision + recall).clamp_min(1e-8)


@checked
class EPNModule(GANModule):
    """Edge generator (G1 of EdgeConnect) against a 70×70 PatchGAN on [gray, edges] (or another of
    :data:`common.discriminators.DISCRIMINATORS`: ``stage/discriminator=sn_patch|global_local``; feature
    matching then compares their activations, :func:`~common.discriminators.discriminate`).

    Batches need ``image``, ``corrupted``, ``edge`` (Canny of the truth, D's real edges) and
    ``corrupted_edge`` (Canny of the corrupted image); the mask the EPN works with comes from the
    feed (the truth's, or a frozen MPN's, through the pipeline's mask rule).

    Losses and optimiser as EdgeConnect: ``adv_weight``·adversarial (nsgan) +
    ``fm_weight`` (10)·feature matching; Adam lr 1e-4, betas (0, 0.9), D lr × 0.1.
    ``edge_threshold`` (EdgeConnect's EDGE_THRESHOLD, 0.5) binarises the predicted edge map for
    precision and recall.
    """

    stage_name = "epn"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {"edge_generator": EdgeGenerator, "patch_discriminator": PatchDiscriminator}

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        gan_loss: str = "nsgan",
        lr: Positive = 1e-4,
        d2g_lr: Positive = 0.1,
        betas: tuple[float, float] = (0.0, 0.9),
        adv_weight: float = 1.0,
        fm_weight: float = 10.0,
        grad_clip: float = 0.0,
        edge_threshold: float = 0.5,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        self.save_hyperparameters(ignore=["feed"])
        self.adversarial = AdversarialLoss(gan_loss)
        self.generator = EdgeGenerator(**(generator or {}))
        self.discriminator = build_discriminator(discriminator, in_channels=2, default="patch")

    def forward(
        self, corrupted: torch.Tensor, mask: torch.Tensor, corrupted_edge: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``predicted_edges`` ``(B, 1, H, W)`` in [0, 1] from the corrupted image ``(B, 3, H, W)``,
        its mask and the Canny edges of the corrupted image (both ``(B, 1, H, W)``)."""
        return {"predicted_edges": self.generator(generator_inputs(corrupted, mask, corrupted_edge))}

    def generate(self, batch: dict) -> dict:
        mask = self.fed(batch)["mask"]
        return {**self(batch["corrupted"], mask, batch["corrupted_edge"]), "mask": mask}

    def _discriminate(self, batch: dict, outputs: dict, edges: torch.Tensor):
        """Logits and features for ``edges`` over the true image's gray."""
        x = torch.cat([to_gray(batch["image"]), edges], dim=1)
        return discriminate(self.discriminator, x, outputs["mask"].detach(), features=True)

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real, _ = self._discriminate(batch, outputs, batch["edge"])
        fake, _ = self._discriminate(batch, outputs, outputs["predicted_edges"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        fake, fake_features = self._discriminate(batch, outputs, outputs["predicted_edges"])
        with torch.no_grad():
            _, real_features = self._discriminate(batch, outputs, batch["edge"])
        adversarial = self.adversarial.generator(fake)
        matching = feature_matching_loss(real_features, fake_features)
        loss = self.hparams.adv_weight * adversarial + self.hparams.fm_weight * matching
        return loss, {"g_adv": adversarial, "g_fm": matching}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        edges, hole, t = outputs["predicted_edges"], hard_mask(outputs["mask"]), self.hparams.edge_threshold
        precision, recall = edge_precision_recall(edges, batch["edge"], threshold=t)
        precision_hole, recall_hole = edge_precision_recall(edges, batch["edge"], threshold=t, mask=hole)
        return {
            "precision": precision,
            "recall": recall,
            "precision_hole": precision_hole,
            "recall_hole": recall_hole,
            "f1_hole": _f1(precision_hole, recall_hole),
        }

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "mask": outputs["mask"],
            "input edges": batch["corrupted_edge"] * (1 - edge_hole(outputs["mask"])),
            "predicted": outputs["predicted_edges"],
            "truth": batch["edge"],
        }
