"""The partial-convolution U-Net as an inpainting stage: ``python -m pipeline.train stage=pconv``."""

from __future__ import annotations

from typing import ClassVar

import torch

from common.config import Positive, checked
from common.module import StageModule
from common.ops import compose, harden_hole
from common.vgg import VGG16Pools
from ipn.module import fill_metrics
from pipeline.methods import register_fill_stage
from pipeline.methods.pconv.model import PCONV_LOSS_WEIGHTS, PConvUNet, pconv_loss


@register_fill_stage("pconv")
@checked
class PConvModule(StageModule):
    """Liu et al.'s partial-convolution U-Net (:class:`~pipeline.methods.pconv.model.PConvUNet`) filling the hole of
    the corrupted image, trained with their loss (:func:`~pipeline.methods.pconv.model.pconv_loss`).

    The mask comes from the feed, as for the IPN: the true mask (masked inpainting), or a trained
    MPN's m̂ (``feed.mpn_checkpoint``: blind), after the mask rule. As in the paper, a pixel is
    missing when the mask says it is mostly destroyed (m > 0.5: :func:`~common.ops.harden_hole`;
    fainter damage keeps its soft m), the network's validity is ``1 − m`` and the partial
    convolutions renormalise by it. Images enter as
    ``[-1, 1]`` and the fill leaves the network on the same scale.

    The paper's schedule: phase 1, Adam at ``lr`` 2e-4 with batch norm everywhere; phase 2, lr 5e-5
    with the encoder's batch norm frozen (``generator.freeze_encoder_bn=true``, ``init_from=`` the
    phase-1 checkpoint; ``conf/stage/pconv.yaml`` says how). The perceptual and style terms need
    ``vgg_weights``, a torchvision ``vgg16`` state dict (nothing is downloaded); without it the
    loss is the L1 and total-variation terms.
    """

    stage_name = "pconv"
    # the networks' config schemas by name (conf/schemas.py)
    networks: ClassVar[dict[str, type]] = {"pconv_unet": PConvUNet}
    training_only = ("feed", "vgg_weights")
    uses_edges = False  # fills (corrupted, mask) in the blind pipeline's IPN place (pipeline.methods.fill_stages)

    def __init__(
        self,
        generator: dict | None = None,
        lr: Positive = 2e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        vgg_weights: str | None = None,
        valid_weight: float = PCONV_LOSS_WEIGHTS["valid"],
        hole_weight: float = PCONV_LOSS_WEIGHTS["hole"],
        perceptual_weight: float = PCONV_LOSS_WEIGHTS["perceptual"],
        style_weight: float = PCONV_LOSS_WEIGHTS["style"],
        tv_weight: float = PCONV_LOSS_WEIGHTS["tv"],
        grad_clip: float = 0.0,
        max_nonfinite: int = 10,
        grid_rows: int = 8,
        feed=None,
    ):
        super().__init__(grad_clip=grad_clip, max_nonfinite=max_nonfinite, grid_rows=grid_rows, feed=feed)
        self.save_hyperparameters(ignore=["feed"])
        self.generator = PConvUNet(**(generator or {}))
        self.attach_frozen("vgg", VGG16Pools(vgg_weights) if vgg_weights else None)

    def forward(self, corrupted: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The corrupted image ``(B, 3, H, W)`` in [0, 1] and its mask ``(B, 1, H, W)`` (above 0.5 a
        whole hole, fainter damage blended: :func:`~common.ops.harden_hole`) ->
        ``refined`` (the network's fill everywhere) and ``output`` (composited), ``(B, 3, H, W)`` in [0, 1]."""
        mask = harden_hole(mask)
        valid = 1 - mask
        fill = (self.generator(corrupted * 2 - 1, valid) + 1) / 2
        return {"refined": fill, "output": compose(corrupted, fill.clamp(0, 1), mask)}

    def generate(self, batch: dict) -> dict:
        mask = harden_hole(self.fed(batch)["mask"])
        return {**self(batch["corrupted"], mask), "mask": mask}

    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        hp = self.hparams
        weights = {
            "valid": hp.valid_weight,
            "hole": hp.hole_weight,
            "perceptual": hp.perceptual_weight,
            "style": hp.style_weight,
            "tv": hp.tv_weight,
        }
        return pconv_loss(outputs["refined"], batch["image"], outputs["mask"], self.frozen("vgg"), weights)

    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return fill_metrics(outputs["output"], batch["image"], outputs["mask"])

    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        return {
            "corrupted": batch["corrupted"],
            "mask": outputs["mask"],
            "fill": outputs["refined"].clamp(0, 1),
            "output": outputs["output"],
            "truth": batch["image"],
        }

    def configure_optimizers(self):
        return torch.optim.Adam(self.generator_parameters(), lr=self.hparams.lr, betas=tuple(self.hparams.betas))
