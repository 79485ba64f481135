"""The DCGAN of latent-search inpainting as a stage: ``python -m pipeline.train stage=dcgan``."""

from __future__ import annotations

from typing import ClassVar

import torch

from common.blend import blend_fill
from common.config import Count, Positive, checked
from common.losses import AdversarialLoss
from common.module import GANModule
from common.ops import compose, from_native, harden_hole, to_native
from ipn.module import fill_metrics
from pipeline.methods import register_fill_stage
from pipeline.methods.dcgan.model import SIZE, DCGANDiscriminator, DCGANGenerator, init_dcgan, latent_search


@register_fill_stage("latent_search")
@checked
class DCGANModule(GANModule):
    """A DCGAN (:class:`~pipeline.methods.dcgan.model.DCGANGenerator` vs
    :class:`~pipeline.methods.dcgan.model.DCGANDiscriminator`) trained on the data's images resized
    to 64², and the latent-search inpainting it serves (:func:`~pipeline.methods.dcgan.model.latent_search`).

    Training: the DCGAN paper's, z uniform in [−1, 1]^100, BCE (``nsgan``), Adam 2e-4 with β1 0.5,
    weights N(0, 0.02). Validation fills each image's hole (the feed's mask) by a latent search
    of ``val_search_steps`` iterations and scores it as every inpainting stage is
    (:func:`~ipn.module.fill_metrics`, at 64²), so the checkpoint kept is the one that inpaints best.

    Inference (``forward``, in the blind pipeline's IPN place: :func:`pipeline.methods.fill_stages`,
    ``method=latent_search``): the image and its hole are resized to 64², the search runs for
    ``search_steps`` (Yeh et al.'s 1500) with the prior at ``prior_weight`` (their λ = 0.003) and the
    symmetry term at ``mirror_weight`` (0: off), and G(z*) is resized back and Poisson-blended into
    the hole (``blend``). The discriminator is kept in model files: the prior loss needs it.
    """

    stage_name = "dcgan"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {"dcgan_generator": DCGANGenerator, "dcgan_discriminator": DCGANDiscriminator}
    training_only = ("feed",)
    uses_edges = False  # fills (corrupted, mask) in the blind pipeline's IPN place
    native_size = SIZE

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        gan_loss: str = "nsgan",
        lr: Positive = 2e-4,
        d2g_lr: Positive = 1.0,
        betas: tuple[float, float] = (0.5, 0.999),
        search_steps: Count = 1500,
        val_search_steps: Count = 100,
        search_lr: Positive = 0.01,
        prior_weight: float = 0.003,
        mirror_weight: float = 0.0,
        window: Count = 7,
        blend: bool = True,
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        self.save_hyperparameters(ignore=["feed"])
        self.adversarial = AdversarialLoss(gan_loss)
        self.generator = DCGANGenerator(**(generator or {}))
        self.discriminator = None if discriminator is None else DCGANDiscriminator(**discriminator)
        init_dcgan(self)

    def search(self, corrupted: torch.Tensor, mask: torch.Tensor, steps: int, blend: bool) -> dict:
        """:func:`~pipeline.methods.dcgan.model.latent_search` at 64² with this stage's settings."""
        hp = self.hparams
        return latent_search(
            self.generator, self.discriminator, corrupted, mask, steps=steps, prior_weight=hp.prior_weight,
            lr=hp.search_lr, window=hp.window, mirror_weight=hp.mirror_weight, blend=blend,
        )  # fmt: skip

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fill the hole of ``corrupted`` ``(B, 3, H, W)`` in [0, 1] (``mask`` ``(B, 1, H, W)``, above
        0.5 a whole hole: :func:`~common.ops.harden_hole`) by latent search at 64²: ``refined``
        (G(z*) at the input's size) and ``output`` (blended into the hole and composited),
        ``(B, 3, H, W)`` in [0, 1]."""
        mask = harden_hole(mask)
        small, small_mask = to_native(corrupted, SIZE, mask)
        generated = self.search(small, small_mask, self.hparams.search_steps, blend=False)["generated"]
        generated = from_native(generated, corrupted.shape[-2:])
        fill = generated
        if self.hparams.blend:
            fill = blend_fill(generated, corrupted, mask)
        return {"refined": generated, "output": compose(corrupted, fill, mask)}

    def generate(self, batch: dict) -> dict:
        """Training: ``real`` (the batch's images at 64², in [−1, 1]) and ``fake`` (G of uniform z).
        Outside training also the latent-search fill of the batch's hole at 64²."""
        real = to_native(batch["image"], SIZE) * 2 - 1
        z = torch.rand(real.shape[0], self.generator.latent, device=real.device) * 2 - 1
        outputs = {"real": real, "fake": self.generator(z)}
        if not self.training:
            corrupted, mask = to_native(batch["corrupted"], SIZE, harden_hole(self.fed(batch)["mask"]))
            filled = self.search(corrupted, mask, self.hparams.val_search_steps, self.hparams.blend)
            outputs.update(corrupted=corrupted, mask=mask, truth=(real + 1) / 2, **filled)
        return outputs

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real, fake = self.discriminator(outputs["real"]), self.discriminator(outputs["fake"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        adversarial = self.adversarial.generator(self.discriminator(outputs["fake"]))
        return adversarial, {"g_adv": adversarial}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return fill_metrics(outputs["output"], outputs["truth"], outputs["mask"])

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "sample": (outputs["fake"] + 1) / 2,
            "corrupted": outputs["corrupted"],
            "mask": outputs["mask"],
            "G(z*)": outputs["generated"],
            "output": outputs["output"],
            "truth": outputs["truth"],
        }
