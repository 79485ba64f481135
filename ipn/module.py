"""The IPN stage: DeepFill v2's coarse-to-fine gated generator, guided by the mask and edges."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import scale_widths
from common.metrics import l1, psnr, ssim
from common.module import GANModule
from common.vgg import VGGFeatures, perceptual_loss, style_loss
from epn.edges import merge_edges
from ipn.model import DeepFillGenerator, SNPatchDiscriminator


def generator_input(corrupted: torch.Tensor, mask: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """``[masked RGB in [-1, 1], ones, m, edges]`` ``(B, 6, H, W)`` from the corrupted image
    ``(B, 3, H, W)`` in [0, 1], the continuous mask and the edge map (both ``(B, 1, H, W)``).
    As DeepFill v2, the hole is zero (mid-gray) in [-1, 1]; a soft m fades the pixel out."""
    masked = (corrupted * 2 - 1) * (1 - mask)
    return torch.cat([masked, torch.ones_like(mask), mask, edges], dim=1)


def compose(corrupted: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(1 − m)·corrupted + m·generated``: known pixels kept, soft masks blend."""
    return (1 - mask) * corrupted + mask * generated


class IPNModule(GANModule):
    """DeepFill v2 generator (with the edge map as a sixth input channel) against an SN-PatchGAN
    on [RGB, mask].

    Losses as DeepFill v2: hinge adversarial + L1(coarse) + L1(refined), 1 : 1 : 1; Adam lr 1e-4,
    betas (0.5, 0.999), the same learning rate for D. With ``vgg_weights`` (a path; nothing is
    downloaded) EdgeConnect's perceptual (0.1) and style (250) losses are added.
    Masks come from the batch or a frozen MPN (``mask_source``); edges are the ground truth's
    Canny (``edge``) or a frozen EPN's prediction inside the hole (``edge_source=epn``), both
    handed in by :mod:`pipeline.train`.
    """

    stage_name = "ipn"
    needs_edges = True

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        width_mult: float = 1.0,
        gan_loss: str = "hinge",
        lr: float = 1e-4,
        d2g_lr: float = 1.0,
        betas: tuple[float, float] = (0.5, 0.999),
        adv_weight: float = 1.0,
        l1_coarse_weight: float = 1.0,
        l1_refine_weight: float = 1.0,
        vgg_weights: str | None = None,
        perceptual_weight: float = 0.1,
        style_weight: float = 250.0,
        grad_clip: float = 0.0,
        mask_threshold: float = 0.5,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        mask_predictor: nn.Module | None = None,
        edge_predictor: nn.Module | None = None,
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
        self.save_hyperparameters(ignore=["mask_predictor", "edge_predictor"])
        generator = {"in_channels": 6, **(generator or {})}  # [masked RGB, ones, mask, edges]
        self.generator = DeepFillGenerator(**scale_widths(generator, width_mult, cnum=48))
        self.discriminator = SNPatchDiscriminator(**scale_widths(discriminator, width_mult, cnum=64))
        self.vgg = VGGFeatures(vgg_weights) if vgg_weights else None
        self.attach_frozen("mask_predictor", mask_predictor)
        self.attach_frozen("edge_predictor", edge_predictor)

    @torch.no_grad()
    def edges_for(self, batch: dict, mask: torch.Tensor) -> torch.Tensor:
        """Edges the generator is guided by ``(B, 1, H, W)``: the truth's, or a frozen EPN's
        prediction in the hole merged with the known-region edges outside it (EdgeConnect)."""
        epn = self.frozen("edge_predictor")
        if epn is None:
            return batch["edge"]
        known = batch["corrupted_edge"]
        return merge_edges(epn(batch["corrupted"], mask, known), known, mask, self.hparams.mask_threshold)

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor, edges: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fill the hole: ``coarse`` and ``refined`` generator outputs and the composed ``output``,
        all ``(B, 3, H, W)`` in [0, 1]."""
        coarse, refined = self.generator(generator_input(corrupted, mask, edges), mask)
        coarse, refined = (coarse + 1) / 2, (refined + 1) / 2
        return {"coarse": coarse, "refined": refined, "output": compose(corrupted, refined, mask)}

    def generate(self, batch: dict) -> dict:
        mask = self.predicted_mask(batch)
        edges = self.edges_for(batch, mask)
        return {**self(batch["corrupted"], mask, edges), "mask": mask, "edges": edges}

    def _discriminate(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([image * 2 - 1, mask], dim=1))

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real = self._discriminate(batch["image"], outputs["mask"])
        fake = self._discriminate(outputs["output"], outputs["mask"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        hp, target = self.hparams, batch["image"]
        adversarial = self.adversarial.generator(self._discriminate(outputs["output"], outputs["mask"]))
        # DeepFill v2 takes L1 on [-1, 1] images: twice the [0, 1] value. Halving it would halve
        # reconstruction against the adversarial term (measured: the hole then drifts to one colour).
        l1_coarse = 2 * F.l1_loss(outputs["coarse"], target)
        l1_refine = 2 * F.l1_loss(outputs["refined"], target)
        loss = hp.adv_weight * adversarial + hp.l1_coarse_weight * l1_coarse + hp.l1_refine_weight * l1_refine
        parts = {"g_adv": adversarial, "l1_coarse": l1_coarse, "l1_refine": l1_refine}
        if self.vgg is not None:
            fake, real = self.vgg(outputs["output"]), self.vgg(target)
            parts["perceptual"], parts["style"] = perceptual_loss(fake, real), style_loss(fake, real)
            loss = loss + hp.perceptual_weight * parts["perceptual"] + hp.style_weight * parts["style"]
        return loss, parts

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        output, target, mask = outputs["output"], batch["image"], outputs["mask"]
        self.log_dict(
            {
                "val/psnr": psnr(output, target),
                "val/ssim": ssim(output, target),
                "val/l1": l1(output, target),
                "val/psnr_hole": psnr(output, target, mask=mask),
                "val/l1_hole": l1(output, target, mask=mask),
            },
            prog_bar=True,
            batch_size=target.shape[0],
        )
        if batch_idx == 0:
            self.log_grid(
                "val/ipn",
                {
                    "corrupted": batch["corrupted"],
                    "mask": mask,
                    "edges": outputs["edges"],
                    "coarse": outputs["coarse"],
                    "output": output,
                    "truth": target,
                },
            )
