"""GLCIC as an inpainting stage: ``python -m pipeline.train stage=glcic``; its completion network is
a choice (``stage/generator=glcic|parallel_attention``), as its discriminator is."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from common.blend import blend_fill
from common.config import NonNegativeInt, Positive, checked
from common.discriminators import build_discriminator, discriminate
from common.losses import AdversarialLoss
from common.module import GANModule
from common.ops import compose, harden_hole
from ipn.module import fill_metrics
from pipeline.methods import register_fill_stage
from pipeline.methods.glcic.model import GLCICCompletionNet, GlobalLocalDiscriminator
from pipeline.methods.glcic.parallel_attention import ParallelAttentionNet

PHASES = ("completion", "discriminator", "joint")
BLENDS = (None, "poisson")
# The completion networks, chosen by name (stage/generator=<name>): GLCIC's, and the parallel CNN +
# contextual-attention network of "Image Inpainting using Deep Learning Models" (its first approach).
COMPLETION_NETS = {"glcic": GLCICCompletionNet, "parallel_attention": ParallelAttentionNet}


def build_completion_net(config: dict | None) -> torch.nn.Module:
    """The completion network ``config`` describes: its constructor's arguments and ``name`` (one of
    :data:`COMPLETION_NETS`; GLCIC's when absent), taking the image and the mask (4 channels)."""
    config = dict(config or {})
    name = config.pop("name", None) or "glcic"
    if name not in COMPLETION_NETS:
        raise ValueError(f"unknown completion network {name!r}; expected one of {sorted(COMPLETION_NETS)}")
    return COMPLETION_NETS[name](**config)


@register_fill_stage("glcic", "parallel_attention")
@checked
class GLCICModule(GANModule):
    """Iizuka et al.'s completion network (:class:`~pipeline.methods.glcic.model.GLCICCompletionNet`; or another of
    :data:`COMPLETION_NETS`: ``stage/generator=parallel_attention``) against their global + local
    discriminator (or another: ``stage/discriminator=sn_patch``).

    The hole (from the feed: the true mask, or a trained MPN's m̂ for blind repair) is filled with
    ``mean_pixel``, the training set's mean colour, and the network sees ``[filled RGB, m]``. Loss:
    the masked MSE ``mean((M ⊙ (C(x, M) − x))²)`` (over every element, as otenim/GLCIC-PyTorch's
    ``completion_network_loss``) plus ``adv_weight`` (the paper's α = 0.0004) times the
    discriminator's BCE (``gan_loss`` ``nsgan``). The paper's three phases, counted in iterations
    (batches) and kept in checkpoints: the completion network alone on the MSE for
    ``completion_steps`` (90k), the discriminator alone for ``discriminator_steps`` (10k), then both.
    Optimiser: Adadelta (the paper's) at ``lr`` 1 (PyTorch's default), D at ``d2g_lr`` × that.

    ``blend="poisson"`` (the paper's post-processing; None: off) blends the fill into the hole with
    Poisson blending (:func:`common.blend.poisson_blend`) outside training: in validation and
    inference, not in the losses. The paper runs fast marching first to give ``seamlessClone`` a
    boundary; our solver takes the known pixels around the hole directly, so that step is not needed.
    """

    stage_name = "glcic"
    # the networks' config schemas by name (conf/schemas.py)
    generator_choices: ClassVar[dict[str, type]] = COMPLETION_NETS  # stage/generator=<name>
    networks: ClassVar[dict[str, type]] = {
        "glcic_completion": GLCICCompletionNet,
        "parallel_attention": ParallelAttentionNet,
        "global_local_discriminator": GlobalLocalDiscriminator,
    }
    training_only = ("discriminator", "feed")
    uses_edges = False  # fills (corrupted, mask) in the blind pipeline's IPN place (pipeline.methods.fill_stages)

    def __init__(
        self,
        generator: dict | None = None,
        discriminator: dict | None = None,
        gan_loss: str = "nsgan",
        lr: Positive = 1.0,
        d2g_lr: Positive = 1.0,
        adv_weight: float = 4e-4,
        completion_steps: NonNegativeInt = 90_000,
        discriminator_steps: NonNegativeInt = 10_000,
        mean_pixel: tuple[float, float, float] = (0.485, 0.456, 0.406),
        blend: str | None = "poisson",
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        if len(mean_pixel) != 3 or not all(0 <= v <= 1 for v in mean_pixel):
            raise ValueError(f"mean_pixel must be three values in [0, 1], got {mean_pixel}")
        if blend not in BLENDS:
            raise ValueError(f"unknown blend {blend!r}; expected one of {BLENDS}")
        self.save_hyperparameters(ignore=["feed"])
        self.adversarial = AdversarialLoss(gan_loss)
        self.generator = build_completion_net(generator)
        self.discriminator = build_discriminator(discriminator, in_channels=3, default="global_local")
        self.register_buffer("mean_pixel", torch.tensor(mean_pixel).view(1, 3, 1, 1), persistent=False)
        self.iterations = 0  # training iterations done (the phase clock; saved in checkpoints)

    @property
    def system(self) -> str:
        """Which system this stage is: its completion network's name (:data:`COMPLETION_NETS`)."""
        return (self.hparams.generator or {}).get("name") or "glcic"

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The corrupted image ``(B, 3, H, W)`` in [0, 1] and its mask ``(B, 1, H, W)`` (above 0.5 a
        whole hole, fainter damage blended: :func:`~common.ops.harden_hole`) ->
        ``refined`` (the network's image) and ``output`` (composited; blended outside training),
        ``(B, 3, H, W)`` in [0, 1]."""
        mask = harden_hole(mask)
        filled = corrupted * (1 - mask) + self.mean_pixel.to(corrupted) * mask
        refined = self.generator(torch.cat([filled, mask], dim=1))
        fill = refined
        if self.hparams.blend == "poisson" and not self.training:
            fill = blend_fill(refined, corrupted, mask)
        return {"refined": refined, "output": compose(corrupted, fill, mask)}

    def generate(self, batch: dict) -> dict:
        mask = harden_hole(self.fed(batch)["mask"])
        return {**self(batch["corrupted"], mask), "mask": mask}

    # -- the three phases

    def phase(self) -> str:
        """Which of :data:`PHASES` the next training iteration is in."""
        hp = self.hparams
        if self.iterations < hp.completion_steps:
            return "completion"
        if self.iterations < hp.completion_steps + hp.discriminator_steps:
            return "discriminator"
        return "joint"

    def training_step(self, batch: dict, batch_idx: int) -> None:
        phase = self.phase()
        logs = {}
        if phase == "discriminator":
            with torch.no_grad():
                outputs = self.generate(batch)
            _, logs = self.discriminator_step(batch, outputs)
            g_loss = self.reconstruction_loss(batch, outputs)
        else:
            outputs = self.generate(batch)
            if phase == "joint":
                _, logs = self.discriminator_step(batch, outputs)
            g_loss, g_logs = self.generator_step(batch, outputs)
            logs.update(g_logs)
        self.iterations += 1
        self.log_training(batch, g_loss, {**logs, "phase": PHASES.index(phase)})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["glcic_iterations"] = self.iterations

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.iterations = int(checkpoint.get("glcic_iterations", 0))

    # -- losses and scores

    def reconstruction_loss(self, batch: dict, outputs: dict) -> torch.Tensor:
        mask = outputs["mask"]
        return F.mse_loss(outputs["refined"] * mask, batch["image"] * mask)

    def _discriminate(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return discriminate(self.discriminator, image * 2 - 1, mask.detach())

    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        real = self._discriminate(batch["image"], outputs["mask"])
        fake = self._discriminate(outputs["output"], outputs["mask"])
        return self.adversarial.discriminator(real, fake), {}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        mse = self.reconstruction_loss(batch, outputs)
        if self.training and self.phase() == "completion":
            return mse, {"mse": mse}
        adversarial = self.adversarial.generator(self._discriminate(outputs["output"], outputs["mask"]))
        return mse + self.hparams.adv_weight * adversarial, {"mse": mse, "g_adv": adversarial}

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return fill_metrics(outputs["output"], batch["image"], outputs["mask"])

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "mask": outputs["mask"],
            "fill": outputs["refined"],
            "output": outputs["output"],
            "truth": batch["image"],
        }

    def configure_optimizers(self):
        if self.discriminator is None:
            return super().configure_optimizers()  # the clear "built for inference" error
        hp = self.hparams
        opt_g = torch.optim.Adadelta(self.generator_parameters(), lr=hp.lr)
        opt_d = torch.optim.Adadelta(self.discriminator.parameters(), lr=hp.lr * hp.d2g_lr)
        return [opt_g, opt_d]
