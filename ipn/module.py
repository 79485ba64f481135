"""The IPN stage: DeepFill v2's coarse-to-fine gated generator, guided by the mask and edges."""

from __future__ import annotations

from typing import ClassVar

import torch

from common.classical import FLOORS, classical_fill
from common.config import Positive, checked
from common.discriminators import build_discriminator, discriminate
from common.losses import AdversarialLoss, hole_normalised_l1
from common.metrics import l1, psnr, ssim
from common.module import GANModule
from common.ops import compose, harden_hole, merge_edges
from common.vgg import VGGFeatures, perceptual_loss, style_loss
from ipn.model import DeepFillGenerator, SNPatchDiscriminator

INPUT_CHANNELS = 6  # [RGB (3), ones (1), mask (1), edges (1)]
SEE_THROUGH_CHANNELS = 3  # + the corrupted RGB as it came, hole included

PREFILLS = (None, *FLOORS)
COMPOSITES = ("hard", "soft")


def generator_inputs(
    corrupted: torch.Tensor,
    mask: torch.Tensor,
    edges: torch.Tensor,
    prefilled: torch.Tensor | None = None,
    see_through: bool = False,
) -> torch.Tensor:
    """``[RGB in [-1, 1], ones, m, edges]`` ``(B, 6, H, W)`` from the corrupted image ``(B, 3, H, W)``
    in [0, 1], the continuous mask and the edge guide (both ``(B, 1, H, W)``). The RGB is DeepFill
    v2's masked image, the hole zero (mid-gray) and a soft m fading the pixel out, or, given a
    classical fill ``prefilled`` ``(B, 3, H, W)`` in [0, 1], that image. ``see_through`` appends the
    corrupted RGB as it came ``(B, 9, H, W)``: under a semi-transparent caption or a faint blotch the
    photo still shows, and only this input lets the generator use it."""
    rgb = (corrupted * 2 - 1) * (1 - mask) if prefilled is None else prefilled * 2 - 1
    parts = [rgb, torch.ones_like(mask), mask, edges]
    return torch.cat(parts + [corrupted * 2 - 1] if see_through else parts, dim=1)


def fill_metrics(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """How well a repair ``output`` ``(B, 3, H, W)`` matches ``target``: PSNR, SSIM and L1 over the
    image, PSNR and L1 in the hole of ``mask`` ``(B, 1, H, W)`` (the validation scores of every
    inpainting stage)."""
    return {
        "psnr": psnr(output, target),
        "ssim": ssim(output, target),
        "l1": l1(output, target),
        "psnr_hole": psnr(output, target, mask=mask),
        "l1_hole": l1(output, target, mask=mask),
    }


@checked
class IPNModule(GANModule):
    """DeepFill v2 generator (with the edge map as a sixth input channel) against an SN-PatchGAN
    on [RGB, mask] (or another of :data:`common.discriminators.DISCRIMINATORS`:
    ``stage/discriminator=global_local`` is GLCIC's).

    The edge guide is EdgeConnect's: ``predicted_edges`` inside the hole and the Canny edges of the
    corrupted image (``corrupted_edge``) outside it (:func:`common.ops.merge_edges`). In training the
    feed supplies the mask and the predicted edges (the truth's Canny standing in for the EPN, or a
    frozen EPN), so the IPN learns on the guide inference gives it.

    Losses: hinge adversarial (DeepFill v2's SN-PatchGAN) at ``adv_weight`` 0.1, the weight of
    mmagic's DeepFill v2 reproduction and of EdgeConnect's inpainting model (DeepFill v2's own 1
    drives a small or briefly trained generator to flat one-colour fills), after ``adv_warmup``
    reconstruction-only iterations; a hole-normalised L1 (:func:`common.losses.hole_normalised_l1`,
    EdgeConnect's L1 / mean(mask)) on the coarse output and on the refined one, the refined's hole
    term taken on the composite ``output``: where m is soft the composite still holds
    ``(1 − m)·m·(fill − truth)`` of the damage, so the IPN learns to undo it. Adam lr 1e-4, betas
    (0.5, 0.999), D at the same rate (``d2g_lr``). With ``vgg_weights`` (a path; nothing is
    downloaded) EdgeConnect's perceptual (0.1) and style (250) losses are added.

    ``prefill="pull_push"`` starts the hole from a classical fill (:func:`common.ops.pull_push_fill`)
    and the generator predicts a correction of it from zero-initialised heads (DeepFillGenerator's
    ``residual``), so step 0 is the classical fill; None is DeepFill v2's mid-gray hole.
    """

    stage_name = "ipn"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {
        "deepfill_generator": DeepFillGenerator,
        "sn_patch_discriminator": SNPatchDiscriminator,
    }
    training_only = ("discriminator", "feed", "vgg_weights")

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        gan_loss: str = "hinge",
        lr: Positive = 1e-4,
        d2g_lr: Positive = 1.0,
        betas: tuple[float, float] = (0.5, 0.999),
        adv_weight: float = 0.1,
        adv_warmup: int = 0,
        l1_coarse_weight: float = 1.0,
        l1_refine_weight: float = 1.0,
        l1_valid_weight: float = 1.0,
        vgg_weights: str | None = None,
        perceptual_weight: float = 0.1,
        style_weight: float = 250.0,
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        prefill: str | None = "telea_pull_push",
        see_through: bool = True,
        composite: str = "hard",
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        if prefill not in PREFILLS:
            raise ValueError(f"unknown prefill {prefill!r}; expected one of {PREFILLS}")
        if composite not in COMPOSITES:
            raise ValueError(f"unknown composite {composite!r}; expected one of {COMPOSITES}")
        self.save_hyperparameters(ignore=["feed"])
        self.adversarial = AdversarialLoss(gan_loss)
        channels = INPUT_CHANNELS + SEE_THROUGH_CHANNELS * see_through
        generator = {**(generator or {}), "in_channels": channels, "residual": prefill is not None}
        self.generator = DeepFillGenerator(**generator)
        self.discriminator = build_discriminator(discriminator, in_channels=4, default="sn_patch")
        # A frozen loss network, attached (not a submodule): checkpoints do not carry its weights.
        self.attach_frozen("vgg", VGGFeatures(vgg_weights) if vgg_weights else None)

    def forward(
        self, corrupted: torch.Tensor, mask: torch.Tensor, predicted_edges: torch.Tensor, corrupted_edge: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Fill the hole of ``corrupted`` ``(B, 3, H, W)`` given its ``mask``, the edges predicted
        for the hole and the Canny edges of the corrupted image (each ``(B, 1, H, W)``): the
        ``edges`` guide used ``(B, 1, H, W)``, and the ``coarse`` and ``refined`` generator outputs,
        the composed ``output`` and, with a ``prefill``, the classical ``floor`` it corrects, composed
        the same way ``(B, 3, H, W)``, all in [0, 1]."""
        hp = self.hparams
        edges = merge_edges(predicted_edges, corrupted_edge, mask)
        if hp.prefill is None:
            inputs = generator_inputs(corrupted, mask, edges, see_through=hp.see_through)
            coarse, refined = self.generator(inputs, mask)
            floor = None
        else:
            floor = self.floor(corrupted, mask)
            inputs = generator_inputs(corrupted, mask, edges, floor, hp.see_through)
            coarse, refined = self.generator(inputs, mask, base=floor * 2 - 1)
        coarse, refined = (coarse + 1) / 2, (refined + 1) / 2
        blend = self.blend_mask(mask)
        outputs = {"edges": edges, "coarse": coarse, "refined": refined, "output": compose(corrupted, refined, blend)}
        return outputs if floor is None else {**outputs, "floor": compose(corrupted, floor, blend)}

    def floor(self, corrupted: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The classical fill the generator corrects (``prefill``; Telea where there is none, the
        floor it is then measured against): ``(B, 3, H, W)``, the hole ``m > 0.5`` filled, the
        rest ``corrupted``."""
        return classical_fill(corrupted, mask, self.hparams.prefill or "telea")

    def blend_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The weight of the fill in the composite ``(1 − w)·corrupted + w·refined``: ``hard``, a
        pixel more than half destroyed is wholly replaced (:func:`common.ops.harden_hole`), so
        nothing of a caption's colour is blended back; ``soft``, ``w = m``."""
        return harden_hole(mask) if self.hparams.composite == "hard" else mask

    def generate(self, batch: dict) -> dict:
        fed = self.fed(batch)
        outputs = self(batch["corrupted"], fed["mask"], fed["predicted_edges"], batch["corrupted_edge"])
        return {**outputs, "mask": fed["mask"]}

    def _discriminate(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # D is told where the hole is, but the mask it is told cannot be moved to please it: in
        # joint training m̂ carries gradients to the MPN, which would learn to fool D, not to find damage.
        mask = mask.detach()
        return discriminate(self.discriminator, torch.cat([image * 2 - 1, mask], dim=1), mask)

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real = self._discriminate(batch["image"], outputs["mask"])
        fake = self._discriminate(outputs["output"], outputs["mask"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        hp, target, mask = self.hparams, batch["image"], outputs["mask"]
        adversarial = self.adversarial.generator(self._discriminate(outputs["output"], mask))
        mask = self.blend_mask(mask)  # the L1 terms weigh what the composite replaces
        # DeepFill v2 takes L1 on [-1, 1] images: twice the [0, 1] value.
        coarse_hole, coarse_valid = hole_normalised_l1(outputs["coarse"], target, mask)
        refine_hole, _ = hole_normalised_l1(outputs["output"], target, mask)
        _, refine_valid = hole_normalised_l1(outputs["refined"], target, mask)
        l1_coarse = 2 * (coarse_hole + hp.l1_valid_weight * coarse_valid)
        l1_refine = 2 * (refine_hole + hp.l1_valid_weight * refine_valid)
        adv_weight = self.adversarial_weight()
        loss = adv_weight * adversarial + hp.l1_coarse_weight * l1_coarse + hp.l1_refine_weight * l1_refine
        parts = {"g_adv": adversarial, "l1_coarse": l1_coarse, "l1_refine": l1_refine, "l1_hole": refine_hole}
        vgg = self.frozen("vgg")
        if vgg is not None:
            fake, real = vgg(outputs["output"]), vgg(target)
            parts["perceptual"], parts["style"] = perceptual_loss(fake, real), style_loss(fake, real)
            loss = loss + hp.perceptual_weight * parts["perceptual"] + hp.style_weight * parts["style"]
        return loss, parts

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        """The fill's scores and, as ``floor_*``, those of the classical fill it must beat on the
        same hole (:meth:`floor`, composited the same way)."""
        image, mask = batch["image"], outputs["mask"]
        floor = outputs.get("floor")
        if floor is None:
            floor = compose(batch["corrupted"], self.floor(batch["corrupted"], mask), self.blend_mask(mask))
        scores = fill_metrics(outputs["output"], image, mask)
        return {**scores, **{f"floor_{k}": v for k, v in fill_metrics(floor, image, mask).items()}}

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "mask": outputs["mask"],
            "edges": outputs["edges"],
            "coarse": outputs["coarse"],
            "output": outputs["output"],
            "truth": batch["image"],
        }
