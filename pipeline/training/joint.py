"""Joint fine-tuning of the blind pipeline: MPN → EPN → IPN in one graph (``stage=joint``).

The three trained stages are loaded from their checkpoints into one
:class:`~pipeline.model.BlindPipeline` and trained together: the IPN's and the EPN's losses reach
the MPN through m̂ (the mask rule passes its gradient straight through), so the mask is tuned
for the repair it drives. Both discriminators keep training. The training step is the shared one
of :class:`~common.module.GANModule`; the losses are each stage's own, summed with
``loss_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from common.checkpoint import build, check_arguments, fit_state, read_model_file
from common.config import Positive, checked
from common.errors import CheckpointError, ConfigError
from common.metrics import edge_precision_recall, l1, mask_iou, mask_mae, psnr, ssim
from common.module import GANModule
from common.ops import hard_mask
from pipeline.model import STAGES, BlindPipeline
from pipeline.training.selection import HARM_BOUND, BlindScores


@checked
class JointModule(GANModule):
    """The blind pipeline (stages with their discriminators) fine-tuned together.

    ``stages``: each stage's constructor arguments (the configuration stored in its checkpoint),
    so a joint checkpoint rebuilds itself without the stage checkpoints; ``pipeline``: the
    :class:`~pipeline.model.BlindPipeline` settings. ``loss_weights`` scale the MPN loss
    (self-adaptive BCE + L1), the EPN generator loss (adversarial + feature matching) and the IPN
    generator loss (hinge + L1s). Learning rates are each stage's own times ``lr_scale`` (0.1:
    fine-tuning moves trained weights gently). ``freeze``: stages whose generator is not updated
    (kept in eval mode); gradients still pass through it to the stages before it, and the
    discriminators always train.

    Validation runs the blind pipeline as a user gets it on held-out photos, intact ones included
    (the stage config's ``clean_share``): ``val/selection`` (:class:`~pipeline.training.selection.BlindScores`:
    hole PSNR, minus a steep penalty when more than ``harm_bound`` of an intact photo is repainted)
    picks the checkpoint.
    """

    stage_name = "joint"

    def __init__(
        self,
        stages: Mapping[str, Mapping],
        pipeline: Mapping | None = None,
        loss_weights: Mapping[str, float] | None = None,
        lr_scale: Positive = 0.1,
        freeze: Sequence[str] = (),
        harm_bound: float = HARM_BOUND,
        grad_clip: float = 0.0,
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
        weights = {**dict.fromkeys(STAGES, 1.0), **(loss_weights or {})}
        stages = {name: dict(stages[name]) for name in STAGES}
        settings = check_arguments(BlindPipeline, dict(pipeline or {}), "pipeline settings")
        self.save_hyperparameters(
            {"stages": stages, "pipeline": settings, "loss_weights": weights, "lr_scale": lr_scale,
             "freeze": list(freeze), "harm_bound": harm_bound,
             "grad_clip": grad_clip, "max_nonfinite": max_nonfinite, "grid_rows": grid_rows}
        )  # fmt: skip
        modules = {name: build(cls, stages[name], f"joint: {name}", inference=False) for name, cls in STAGES.items()}
        self.pipeline = BlindPipeline(**modules, **settings)
        self.scores = BlindScores(harm_bound)
        for name in freeze:
            self.stage(name).generator.requires_grad_(False).eval()

    @classmethod
    def from_stage_checkpoints(cls, checkpoints: Mapping[str, str | None], **kwargs) -> JointModule:
        """Build from the three stage checkpoints (each checked to be of its stage, read with
        ``weights_only=True``) and load their weights, discriminators included."""
        loaded = {}
        for name in STAGES:
            if not checkpoints.get(name):
                raise CheckpointError(f"joint needs stage.{name}_checkpoint=path/to/{name}.ckpt")
            loaded[name] = read_model_file(checkpoints[name], name)
        module = cls(stages={n: m.config for n, m in loaded.items()}, **kwargs)
        for name, model in loaded.items():
            fit_state(module.stage(name), model.state, str(model.path))
        return module

    def stage(self, name: str):
        """The stage module ``name`` inside the pipeline."""
        return getattr(self.pipeline, name)

    def train(self, mode: bool = True) -> JointModule:
        super().train(mode)
        for name in self.hparams.freeze:
            self.stage(name).generator.eval()  # frozen: batch-norm statistics stay as trained
        return self

    def configure_optimizers(self):
        """Adam per stage as trained (its betas), learning rates × ``lr_scale``; each
        discriminator at its stage's D rate (``lr × d2g_lr``)."""
        scale, generator_groups, discriminator_groups = self.hparams.lr_scale, [], []
        for name in STAGES:
            stage = self.stage(name)
            lr, betas = stage.hparams.lr * scale, tuple(stage.hparams.betas)
            if name not in self.hparams.freeze:
                generator_groups.append({"params": list(stage.generator.parameters()), "lr": lr, "betas": betas})
            if getattr(stage, "discriminator", None) is not None:
                d_lr = lr * stage.hparams.d2g_lr
                discriminator_groups.append(
                    {"params": list(stage.discriminator.parameters()), "lr": d_lr, "betas": betas}
                )
        return [torch.optim.Adam(generator_groups), torch.optim.Adam(discriminator_groups)]

    def forward(self, corrupted: torch.Tensor, corrupted_edge: torch.Tensor) -> dict[str, torch.Tensor]:
        """The blind pipeline with gradients (see :meth:`BlindPipeline.forward`)."""
        return self.pipeline(corrupted, corrupted_edge)

    def generate(self, batch: dict) -> dict:
        return self(batch["corrupted"], batch["corrupted_edge"])

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        # The two discriminators share no parameters: one summed loss steps both.
        d_epn, _ = self.stage("epn").discriminator_loss(batch, outputs)
        d_ipn, _ = self.stage("ipn").discriminator_loss(batch, outputs)
        return d_epn + d_ipn, {"d_epn": d_epn, "d_ipn": d_ipn}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        weights, loss, parts = self.hparams.loss_weights, 0.0, {}
        for name in STAGES:
            stage_loss, stage_parts = self.stage(name).generator_loss(batch, outputs)
            loss = loss + weights[name] * stage_loss
            parts.update({f"{name}_loss": stage_loss, **{f"{name}_{k}": v for k, v in stage_parts.items()}})
        return loss, parts

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.scores = BlindScores(self.hparams.harm_bound)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        result = self.scores.gathered().result()  # every rank's images: the same choice on each
        for name in ("selection", "clean_flagged", "clean_psnr"):
            if result[name] == result[name]:  # not NaN
                self.log(f"val/{name}", result[name], prog_bar=name == "selection", sync_dist=True)

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        output, target, true_mask = outputs["output"], batch["image"], batch["mask"]
        self.scores.update(output, outputs["mask"], target, true_mask)
        precision, recall = edge_precision_recall(outputs["predicted_edges"], batch["edge"], mask=hard_mask(true_mask))
        return {
            "psnr": psnr(output, target),
            "ssim": ssim(output, target),
            "l1": l1(output, target),
            "psnr_hole": psnr(output, target, mask=true_mask),
            "iou": mask_iou(outputs["predicted_mask"], true_mask),
            "mask_mae": mask_mae(outputs["predicted_mask"], true_mask),
            "edge_precision_hole": precision,
            "edge_recall_hole": recall,
        }

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "true mask": batch["mask"],
            "predicted mask": outputs["mask"],
            "edges": outputs["edges"],
            "output": outputs["output"],
            "truth": batch["image"],
        }
