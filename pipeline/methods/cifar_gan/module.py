"""The CIFAR-scale inpainting GAN as a stage: ``python -m pipeline.train stage=cifar_gan``."""

from __future__ import annotations

from typing import ClassVar

import torch

from common.config import Positive, checked
from common.losses import AdversarialLoss
from common.module import GANModule
from common.ops import compose, from_native, harden_hole, to_native
from ipn.module import fill_metrics
from pipeline.methods import register_fill_stage
from pipeline.methods.cifar_gan.model import SIZE, CifarGANGenerator, SharedTrunkDiscriminator


def hole_mse(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hole's pixels of ``mask`` ``(B, 1, H, W)`` (the Keras context
    encoder's MSE on the missing region); 0 where there is no hole."""
    weight = mask.expand_as(output)
    return ((output - target).square() * weight).sum() / weight.sum().clamp_min(1.0)


@register_fill_stage("cifar_gan")
@checked
class CifarGANModule(GANModule):
    """The encoder–decoder generator with dropout against the shared-trunk global + local
    discriminator (:mod:`pipeline.methods.cifar_gan.model`), at 32².

    Images and holes are area-resized to 32² (CIFAR-10 is already). The generator sees the image
    with its hole zeroed and the mask. Losses, the paper's "L2 for G and D views" with the Keras
    context encoder's weights: G minimises ``rec_weight`` (0.999) × the MSE in the hole +
    ``adv_weight`` (0.001) × the least-squares adversarial term (``gan_loss`` ``lsgan``) over
    both views; D the least-squares loss on real vs fake. ``half_batch``: as that code, D sees
    half the batch real and the generator's repair of the other half, G the whole batch. Adam
    2e-4, β (0.5, 0.999). Metrics: the inpainting stages' (PSNR, SSIM, L1) and ``val/mse``.

    Inference (``method=cifar_gan``, in the blind pipeline's IPN place): the image is repaired at
    32², the fill upsampled to its size and composited into the hole.
    """

    stage_name = "cifar_gan"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {
        "cifar_gan_generator": CifarGANGenerator,
        "shared_trunk_discriminator": SharedTrunkDiscriminator,
    }
    uses_edges = False  # fills (corrupted, mask) in the blind pipeline's IPN place (pipeline.methods.fill_stages)
    native_size = SIZE

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        gan_loss: str = "lsgan",
        lr: Positive = 2e-4,
        d2g_lr: Positive = 1.0,
        betas: tuple[float, float] = (0.5, 0.999),
        rec_weight: float = 0.999,
        adv_weight: float = 0.001,
        half_batch: bool = True,
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        self.save_hyperparameters(ignore=["feed"])
        self.adversarial = AdversarialLoss(gan_loss)
        self.generator = CifarGANGenerator(**(generator or {}))
        self.discriminator = None if discriminator is None else SharedTrunkDiscriminator(**discriminator)

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The corrupted image ``(B, 3, H, W)`` in [0, 1] and its mask ``(B, 1, H, W)`` (above 0.5 a
        whole hole, fainter damage blended: :func:`~common.ops.harden_hole`) ->
        ``refined`` (the network's image, repaired at 32² and resized back) and ``output``
        (composited), ``(B, 3, H, W)``."""
        mask = harden_hole(mask)
        small, small_mask = to_native(corrupted, SIZE, mask)
        refined = self.generator(torch.cat([small * (1 - small_mask), small_mask], dim=1))
        refined = from_native(refined, corrupted.shape[-2:])
        return {"refined": refined, "output": compose(corrupted, refined, mask)}

    def generate(self, batch: dict) -> dict:
        """The batch at 32²: ``corrupted``, ``mask``, ``truth`` and the repair (``refined``, ``output``)."""
        corrupted, mask = to_native(batch["corrupted"], SIZE, harden_hole(self.fed(batch)["mask"]))
        return {"corrupted": corrupted, "mask": mask, "truth": to_native(batch["image"], SIZE),
                **self(corrupted, mask)}  # fmt: skip

    def _halves(self, n: int) -> tuple[slice, slice]:
        """The batch rows D sees real and those it sees repaired."""
        if not self.hparams.half_batch or n < 2:
            return slice(None), slice(None)
        return slice(0, n // 2), slice(n // 2, n)

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real, fake = self._halves(outputs["truth"].shape[0])
        mask = outputs["mask"]
        real_logits = self.discriminator(outputs["truth"][real], mask[real])
        fake_logits = self.discriminator(outputs["output"][fake], mask[fake])
        return self.adversarial.discriminator(real_logits, fake_logits), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        hp = self.hparams
        reconstruction = hole_mse(outputs["refined"], outputs["truth"], outputs["mask"])
        adversarial = self.adversarial.generator(self.discriminator(outputs["output"], outputs["mask"]))
        loss = hp.rec_weight * reconstruction + hp.adv_weight * adversarial
        return loss, {"g_mse": reconstruction, "g_adv": adversarial}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        output, truth = outputs["output"], outputs["truth"]
        mse = (output - truth).square().flatten(1).mean(1).mean()
        return {**fill_metrics(output, truth, outputs["mask"]), "mse": mse}

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": outputs["corrupted"],
            "mask": outputs["mask"],
            "fill": outputs["refined"],
            "output": outputs["output"],
            "truth": outputs["truth"],
        }
