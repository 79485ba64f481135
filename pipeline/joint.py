"""Joint fine-tuning: MPN → EPN → IPN in one graph (``python -m pipeline.train stage=joint``).

The three trained stages are loaded from their checkpoints and trained together: the IPN's and
the EPN's losses reach the MPN through the continuous m̂ (it enters the EPN input, the IPN input
and the final composition), so the mask is tuned for the repair it drives. Both discriminators
keep training. The training step is the shared one of :class:`~common.module.GANModule`; the
losses are each stage's own, summed with ``loss_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from common.checkpoint import CheckpointError, load_checkpoint
from common.layers import hard_mask
from common.metrics import edge_precision_recall, l1, mask_iou, mask_mae, psnr, ssim
from common.module import ConfigError, GANModule
from epn.edges import merge_edges
from epn.module import EPNModule
from ipn.module import IPNModule
from mpn.module import MPNModule

STAGES = ("mpn", "epn", "ipn")


class JointModule(GANModule):
    """MPN, EPN and IPN (with both discriminators) fine-tuned together.

    ``stages``: each stage's constructor arguments (the ``hyper_parameters`` of its checkpoint),
    so a joint checkpoint rebuilds itself without the stage checkpoints. ``loss_weights``
    scale the MPN loss (self-adaptive BCE + L1), the EPN generator loss (adversarial + feature
    matching) and the IPN generator loss (hinge + L1s). Learning rates are each stage's own times
    ``lr_scale`` (0.1: fine-tuning moves trained weights gently). ``freeze``: stages whose
    generator is not updated (kept in eval mode); gradients still pass through it to the stages
    before it, and the discriminators always train.
    """

    stage_name = "joint"
    needs_edges = True

    def __init__(
        self,
        stages: Mapping[str, Mapping],
        loss_weights: Mapping[str, float] | None = None,
        lr_scale: float = 0.1,
        freeze: Sequence[str] = (),
        grad_clip: float = 0.0,
        mask_threshold: float = 0.5,
        edge_threshold: float = 0.5,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows)
        missing = [s for s in STAGES if s not in stages]
        if missing:
            raise CheckpointError(f"joint needs the configuration of every stage; missing {missing}")
        unknown = sorted(set(freeze) - set(STAGES))
        if unknown:
            raise ConfigError(f"freeze: unknown stage(s) {unknown}; choose from {list(STAGES)}")
        if set(freeze) == set(STAGES):
            raise ConfigError("freeze lists every stage: nothing would be trained")
        stages = {
            name: {**stages[name], "vgg_weights": None}
            if name == "ipn" and "vgg_weights" in stages[name]
            else dict(stages[name])
            for name in STAGES
        }
        self.save_hyperparameters(
            {
                "stages": stages,
                "loss_weights": {**dict.fromkeys(STAGES, 1.0), **(loss_weights or {})},
                "lr_scale": lr_scale,
                "freeze": list(freeze),
                "grad_clip": grad_clip,
                "mask_threshold": mask_threshold,
                "edge_threshold": edge_threshold,
                "max_nonfinite": max_nonfinite,
                "grid_rows": grid_rows,
            }
        )
        self.mpn = MPNModule(**stages["mpn"])
        self.epn = EPNModule(**stages["epn"])
        self.ipn = IPNModule(**stages["ipn"])
        for name in freeze:
            self._stage_generator(name).requires_grad_(False).eval()

    @classmethod
    def from_stage_checkpoints(cls, checkpoints: Mapping[str, str], **kwargs) -> JointModule:
        """Build from the three stage checkpoints (each checked to be of its stage, read with
        ``weights_only=True``) and load their weights."""
        loaded = {}
        for name in STAGES:
            if not checkpoints.get(name):
                raise CheckpointError(f"joint needs stage.{name}_checkpoint=path/to/{name}.ckpt")
            loaded[name] = load_checkpoint(checkpoints[name], name)
        module = cls(stages={n: c.get("hyper_parameters", {}) for n, c in loaded.items()}, **kwargs)
        for name, checkpoint in loaded.items():
            stage = getattr(module, name)
            state = {k: v for k, v in checkpoint["state_dict"].items() if not k.startswith("vgg.")}
            missing, unexpected = stage.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise CheckpointError(
                    f"{checkpoints[name]} does not fit its own configuration "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
                )
        return module

    def _stage_generator(self, name: str) -> torch.nn.Module:
        return {"mpn": self.mpn.net, "epn": self.epn.generator, "ipn": self.ipn.generator}[name]

    def train(self, mode: bool = True) -> JointModule:
        super().train(mode)
        for name in self.hparams.freeze:
            self._stage_generator(name).eval()  # frozen: batch-norm statistics stay as trained
        return self

    def configure_optimizers(self):
        """Adam per stage as trained (its betas), learning rates × ``lr_scale``; each
        discriminator at its stage's D rate (``lr × d2g_lr``)."""
        scale, generator_groups, discriminator_groups = self.hparams.lr_scale, [], []
        for name in STAGES:
            stage = getattr(self, name)
            lr, betas = stage.hparams.lr * scale, tuple(stage.hparams.betas)
            if name not in self.hparams.freeze:
                generator_groups.append(
                    {"params": list(self._stage_generator(name).parameters()), "lr": lr, "betas": betas}
                )
            if name != "mpn":
                discriminator_groups.append(
                    {"params": list(stage.discriminator.parameters()), "lr": lr * stage.hparams.d2g_lr, "betas": betas}
                )
        return [torch.optim.Adam(generator_groups), torch.optim.Adam(discriminator_groups)]

    def forward(self, corrupted: torch.Tensor, known_edges: torch.Tensor) -> dict[str, torch.Tensor]:
        """The blind pipeline with gradients: ``corrupted`` ``(B, 3, H, W)`` and its Canny edges
        ``(B, 1, H, W)`` -> mask logits and m̂, the EPN's edges, the merged edge map, and the IPN's
        ``coarse`` / ``refined`` / ``output`` ``(B, 3, H, W)``."""
        logits = self.mpn.net(corrupted)
        mask = torch.sigmoid(logits)
        edges = self.epn(corrupted, mask, known_edges)
        merged = merge_edges(edges, known_edges, mask, self.hparams.edge_threshold)
        return {
            "mask_logits": logits,
            "mask": mask,
            "edges": edges,
            "merged_edges": merged,
            **self.ipn(corrupted, mask, merged),
        }

    def generate(self, batch: dict) -> dict:
        return self(batch["corrupted"], batch["corrupted_edge"])

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        # The two discriminators share no parameters: one summed loss steps both.
        d_epn, _ = self.epn.discriminator_loss(batch, outputs)
        d_ipn, _ = self.ipn.discriminator_loss(batch, outputs)
        return d_epn + d_ipn, {"d_epn": d_epn, "d_ipn": d_ipn}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        w = self.hparams.loss_weights
        mpn_loss, _ = self.mpn.loss(outputs["mask_logits"], batch["mask"])
        epn_loss, epn_parts = self.epn.generator_loss(batch, outputs)
        ipn_loss, ipn_parts = self.ipn.generator_loss(batch, outputs)
        loss = w["mpn"] * mpn_loss + w["epn"] * epn_loss + w["ipn"] * ipn_loss
        parts = {
            "mpn_loss": mpn_loss,
            "epn_loss": epn_loss,
            "ipn_loss": ipn_loss,
            **{f"epn_{k}": v for k, v in epn_parts.items()},
            **{f"ipn_{k}": v for k, v in ipn_parts.items()},
        }
        return loss, parts

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        output, target, mask = outputs["output"], batch["image"], outputs["mask"]
        true_hole = hard_mask(batch["mask"], self.hparams.mask_threshold)
        precision, recall = edge_precision_recall(outputs["edges"], batch["edge"], mask=true_hole)
        self.log_dict(
            {
                "val/psnr": psnr(output, target),
                "val/ssim": ssim(output, target),
                "val/l1": l1(output, target),
                "val/psnr_hole": psnr(output, target, mask=batch["mask"]),
                "val/iou": mask_iou(mask, batch["mask"]),
                "val/mask_mae": mask_mae(mask, batch["mask"]),
                "val/edge_precision_hole": precision,
                "val/edge_recall_hole": recall,
            },
            prog_bar=True,
            batch_size=target.shape[0],
        )
        if batch_idx == 0:
            self.log_grid(
                "val/joint",
                {
                    "corrupted": batch["corrupted"],
                    "true mask": batch["mask"],
                    "predicted mask": mask,
                    "edges": outputs["merged_edges"],
                    "output": output,
                    "truth": target,
                },
            )
