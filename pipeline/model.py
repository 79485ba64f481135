"""The blind pipeline: the one place where the three stages are connected.

::

    corrupted ─► MPN ─► m̂ ─► mask rule ─► m ─┬─► EPN(corrupted, m, corrupted_edge) ─► predicted edges
                                              └─► IPN(corrupted, m, predicted edges, corrupted_edge)
                                                       ─► output = (1 − m)·corrupted + m·refined

The IPN's place may be taken by another system's trained inpainting stage that needs no edges
(:func:`pipeline.methods.fill_stages`: the partial-convolution U-Net, GLCIC, the parallel CNN +
attention network, DCGAN latent search, the CIFAR-scale GAN; ``uses_edges = False``): it fills
``(corrupted, m)`` and the EPN is not run (:meth:`~pipeline.inference.inpainter.BlindInpainter.with_fill_stage`).

Training (:class:`~pipeline.training.joint.JointModule`, and each stage through :class:`StageFeed`),
selection, evaluation (``pipeline.evaluate``), export (``pipeline.export``) and inference
(:class:`~pipeline.inference.inpainter.BlindInpainter`) all run this module, so what is trained and selected
is what a user runs. The Canny edges of the corrupted image (``corrupted_edge``, as the batch
key of the data contract) are an input: Canny runs in OpenCV on the CPU, outside the traced graph;
:meth:`BlindPipeline.corrupted_edge` computes them.

The mask rule (``mode``):

- ``blind``: m̂ above ``hole_threshold`` becomes a full hole (1), grown by ``dilate`` pixels so no
  rim of the damage blends back in; elsewhere the soft m̂ stays where it reaches ``soft_floor``:
  ``m = max(m̂·[m̂ ≥ f], grow(m̂ > t, d))``. A false "damage" call costs more than a miss, so the
  threshold is chosen on validation photos, intact ones included (:mod:`pipeline.training.selection`), and
  stored in the model file; the floor keeps the MPN's faint doubts from blending into intact pixels;
- ``denoise``: the fill is the classical denoiser's (:func:`common.denoise.classical_denoise`: a
  switching median for impulses, non-local means at the estimated noise level), blended in by the
  MPN's m̂, the Wiener weight it learned (:mod:`data.noise`), turned into the weight of that
  better estimate (:meth:`BlindPipeline.denoise_weight`): ``output = (1 − w)·y + w·D(y)``, and m
  = w. A photo the denoiser finds clean comes back bit for bit;
- ``masked``: m is given.

In ``blind`` mode with ``blind_denoise``, a photo the classical denoiser finds noisy is denoised
first as in ``denoise`` mode, and the blind repair runs on the result (the MPN again, on the
denoised photo); a clean photo takes the blind path alone, bit for bit as without it.

Where ``straight_through`` and gradients are on (joint training), the blind rule's value is kept
but its gradient is the identity's, so the IPN's and EPN's losses reach the MPN through every
pixel of m̂ (the hard rule alone has no gradient inside the hole).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from common.checkpoint import (
    ModelFile,
    build,
    check_arguments,
    fit_state,
    load_module,
    read_model_file,
    training_only_key,
    write_model_file,
)
from common.config import Share, checked
from common.denoise import denoise_batch
from common.errors import CheckpointError, ConfigError
from common.ops import canny, grow, hard_mask, tiled, to_gray
from epn.module import EPNModule
from ipn.module import IPNModule
from mpn.module import MPNModule
from pipeline.methods import fill_stages

MODES = ("blind", "denoise", "masked")
STAGES = {"mpn": MPNModule, "epn": EPNModule, "ipn": IPNModule}
SETTINGS = (
    "hole_threshold",
    "dilate",
    "soft_floor",
    "edge_sigma",
    "straight_through",
    "blind_denoise",
    "denoiser_error",
)


class BlindPipeline(nn.Module):
    """MPN → mask rule → EPN → IPN → composite (see the module docstring).

    Args:
        mpn, epn, ipn: the stage modules; one may be None where the truth stands in for it
            (training a later stage, :meth:`upstream`) or where it is not needed (``masked`` mode
            needs no MPN).
        hole_threshold: blind mode: m̂ above this is a full hole.
        dilate: blind mode: grow that hole by this many pixels.
        soft_floor: blind mode: m̂ below this is taken as intact (0).
        edge_sigma: Canny's Gaussian sigma for ``corrupted_edge`` (EdgeConnect's SIGMA 2; the data's
            ``corrupted_edge`` must use the same).
        straight_through: with gradients on, the blind rule passes m̂'s gradient unchanged.
        blind_denoise: blind mode denoises a photo the classical denoiser finds noisy first.
        denoiser_error: α, the classical denoiser's error energy as a share of the photo's local
            variance: the weight of its result is ``m̂ / (m̂ + α·(1 − m̂))`` (:meth:`denoise_weight`).
    """

    def __init__(
        self,
        mpn: MPNModule | None = None,
        epn: EPNModule | None = None,
        ipn: IPNModule | None = None,
        hole_threshold: float = 0.5,
        dilate: int = 2,
        soft_floor: float = 0.1,
        edge_sigma: float = 2.0,
        straight_through: bool = True,
        blind_denoise: bool = True,
        denoiser_error: float = 0.1,
    ):
        super().__init__()
        if not 0 <= hole_threshold < 1:
            raise ConfigError(f"hole_threshold must be in [0, 1), got {hole_threshold}")
        if not 0 <= dilate <= 64:
            raise ConfigError(f"dilate must be in 0..64 pixels, got {dilate}")
        if not 0 <= soft_floor <= hole_threshold:
            raise ConfigError(f"soft_floor must be in [0, hole_threshold={hole_threshold}], got {soft_floor}")
        if edge_sigma < 0:
            raise ConfigError(f"edge_sigma must be >= 0, got {edge_sigma}")
        self.mpn, self.epn, self.ipn = mpn, epn, ipn
        self.hole_threshold, self.dilate, self.soft_floor = hole_threshold, dilate, soft_floor
        self.edge_sigma = edge_sigma
        self.straight_through = straight_through
        self.blind_denoise = bool(blind_denoise)
        if not 0 < denoiser_error <= 1:
            raise ConfigError(f"denoiser_error must be in (0, 1], got {denoiser_error}")
        self.denoiser_error = float(denoiser_error)

    def settings(self) -> dict:
        """The pipeline's own arguments (not its stages)."""
        return {name: getattr(self, name) for name in SETTINGS}

    def config(self) -> dict:
        """Everything needed to rebuild this pipeline: each stage's constructor arguments and the settings."""
        stages = {name: dict(getattr(self, name).hparams) for name in STAGES if getattr(self, name) is not None}
        return {"stages": stages, "pipeline": self.settings()}

    # -- the steps, in order

    @torch.no_grad()
    def corrupted_edge(self, corrupted: torch.Tensor) -> torch.Tensor:
        """Canny edges of the corrupted image ``(B, 3, H, W)`` -> ``(B, 1, H, W)`` in {0, 1}."""
        return canny(to_gray(corrupted), sigma=self.edge_sigma)

    def mask_rule(self, predicted: torch.Tensor, mode: str = "blind") -> torch.Tensor:
        """The mask the EPN, the IPN and the composite use, from a predicted (or true) mask ``(B, 1, H, W)``.

        >>> rule = BlindPipeline(hole_threshold=0.5, dilate=1, soft_floor=0.1)
        >>> rule.mask_rule(torch.tensor([[[[0.05, 0.3, 0.0, 0.0, 0.9]]]]))  # below the floor, soft, a hole grown by 1
        tensor([[[[0.0000, 0.3000, 0.0000, 1.0000, 1.0000]]]])
        """
        if mode == "denoise":
            return predicted
        kept = predicted * (predicted >= self.soft_floor).to(predicted.dtype)
        hardened = torch.maximum(kept, grow(hard_mask(predicted, self.hole_threshold), self.dilate))
        if self.straight_through and predicted.requires_grad and torch.is_grad_enabled():
            return predicted + (hardened - predicted).detach()
        return hardened

    def masked_hole(self, mask: torch.Tensor) -> torch.Tensor:
        """The binary hole ``(B, 1, H, W)`` in {0, 1} that stands for a continuous (true) ``mask``
        where a hole is given, as a user hands a mask file to any tool: this pipeline's blind rule
        applied to it, ``> 0.5``. Masked-mode evaluation gives it to every method alike."""
        return (self.mask_rule(mask.detach(), "blind") > 0.5).to(mask.dtype)

    def predict_mask(self, corrupted: torch.Tensor, tile: int | None = None, margin: int = 0) -> torch.Tensor:
        """The MPN's m̂ ``(B, 1, H, W)`` for ``corrupted`` ``(B, 3, H, W)``; with ``tile``, the MPN
        runs in overlapping tiles of at most that size with ``margin`` px of context
        (:func:`common.ops.tiled`), so on a photo larger than it was trained at thin damage stays
        thicker than a pixel."""
        if tile is None:
            return self.mpn(corrupted)["predicted_mask"]
        return tiled(lambda x: self.mpn(x)["predicted_mask"], corrupted, tile, margin)

    def masks(self, corrupted: torch.Tensor, mask: torch.Tensor | None = None, mode: str = "blind") -> dict:
        """``mask`` (the one the later stages use); in blind and denoise modes also the MPN's
        ``mask_logits`` and ``predicted_mask`` m̂. ``mask`` is needed in masked mode only."""
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
        if mode == "masked":
            if mask is None:
                raise ConfigError("mode=masked needs a mask")
            return {"mask": mask.to(corrupted)}
        outputs = self.mpn(corrupted)
        return {**outputs, "mask": self.mask_rule(outputs["predicted_mask"], mode)}

    def forward(
        self,
        corrupted: torch.Tensor,
        corrupted_edge: torch.Tensor,
        mask: torch.Tensor | None = None,
        mode: str = "blind",
    ) -> dict[str, torch.Tensor]:
        """Repair ``corrupted`` ``(B, 3, H, W)`` in [0, 1] given its Canny ``corrupted_edge``
        ``(B, 1, H, W)`` (and ``mask`` in masked mode). Returns ``mask`` (and ``mask_logits``,
        ``predicted_mask``), ``predicted_edges``, the merged ``edges`` guide (``(B, 1, H, W)``),
        and ``coarse``, ``refined``, ``output`` (``(B, 3, H, W)``)."""
        if mode == "denoise":
            return self.denoise(corrupted, corrupted_edge)
        corrupted, corrupted_edge, weight = self.denoise_first(corrupted, corrupted_edge, mode)
        outputs = self.repair(corrupted, corrupted_edge, mask, mode)
        return outputs if weight is None else {**outputs, "mask": torch.maximum(outputs["mask"], weight)}

    def denoise_first(
        self, corrupted: torch.Tensor, corrupted_edge: torch.Tensor, mode: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Blind mode's first step (``blind_denoise``): each image the classical denoiser finds
        noisy is denoised as in ``denoise`` mode. Returns the images to repair, their Canny edges
        and the denoise ``weight`` ``(B, 1, H, W)`` (0 for the clean ones), or the inputs and None
        where there is nothing to denoise (a trace records the step whatever its example)."""
        if mode != "blind" or not self.blind_denoise:
            return corrupted, corrupted_edge, None
        floor, impulses = denoise_batch(corrupted)
        noisy = (floor != corrupted).flatten(1).any(1).view(-1, 1, 1, 1)
        if not (torch.jit.is_tracing() or bool(noisy.any())):
            return corrupted, corrupted_edge, None
        denoised = self.denoise(corrupted, corrupted_edge, (floor, impulses))
        cleaned = torch.where(noisy, denoised["output"], corrupted)
        return cleaned, torch.where(noisy, self.corrupted_edge(cleaned), corrupted_edge), denoised["mask"] * noisy

    def repair(
        self, corrupted: torch.Tensor, corrupted_edge: torch.Tensor, mask: torch.Tensor | None, mode: str
    ) -> dict[str, torch.Tensor]:
        """The mask (:meth:`masks`), then the EPN and the IPN (or a fill stage): see :meth:`forward`."""
        outputs = self.masks(corrupted, mask, mode)
        if not getattr(self.ipn, "uses_edges", True):  # another system's fill stage: no edge guide
            filled = self.ipn(corrupted, outputs["mask"])
            return {**outputs, "predicted_edges": corrupted_edge, "edges": corrupted_edge, **filled}
        outputs.update(self.epn(corrupted, outputs["mask"], corrupted_edge))
        outputs.update(self.ipn(corrupted, outputs["mask"], outputs["predicted_edges"], corrupted_edge))
        return outputs

    def denoise(
        self,
        corrupted: torch.Tensor,
        corrupted_edge: torch.Tensor,
        denoised: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``denoise`` mode: ``(1 − w)·corrupted + w·D(corrupted)`` with the classical denoiser D
        (:func:`~common.denoise.denoise_batch`; its result and impulses in ``denoised`` where they
        are known already) and the weight w of the MPN's m̂ (:meth:`denoise_weight`), which is
        the ``mask``; outputs as :meth:`forward`'s (``coarse`` and ``refined``: D's result; the
        edges: ``corrupted_edge``)."""
        outputs = self.masks(corrupted, mode="denoise")
        floor, impulses = denoise_batch(corrupted) if denoised is None else denoised
        weight = self.denoise_weight(outputs["predicted_mask"], impulses)
        output = corrupted + weight * (floor - corrupted)  # (1 − w)·y + w·D(y), exact where D(y) = y
        edges = {"predicted_edges": corrupted_edge, "edges": corrupted_edge}
        return {**outputs, "mask": weight, **edges, "coarse": floor, "refined": floor, "output": output}

    def denoise_weight(self, predicted: torch.Tensor, impulses: torch.Tensor) -> torch.Tensor:
        """The weight ``(B, 1, H, W)`` of the classical denoiser's result D(y) in ``(1 − w)·y +
        w·D(y)``, from the MPN's m̂ and the ``impulses`` D replaced: m̂ is the Wiener weight of the
        noise against the photo's local *variance* (what the local mean misses, :mod:`data.noise`);
        D misses less, α = ``denoiser_error`` of that, so the Wiener weight against D is
        ``m̂ / (m̂ + α·(1 − m̂))``; an impulse D found is wholly replaced (w = 1)."""
        weight = predicted / (predicted + self.denoiser_error * (1 - predicted)).clamp_min(1e-6)
        return torch.maximum(weight, impulses.to(weight.dtype))

    @torch.no_grad()
    def upstream(self, batch: dict, masked_share: float = 0.0) -> dict[str, torch.Tensor]:
        """What this pipeline's stages give the stage trained after them, for a training batch:
        the ``mask`` (the MPN's m̂, else the true ``batch["mask"]``, through the blind rule; for a
        ``masked_share`` of the samples, drawn per sample by :func:`sample_draws`, the given hole of
        masked mode, :meth:`masked_hole`) and the ``predicted_edges`` (the EPN's, else the truth's
        Canny ``batch["edge"]``)."""
        corrupted = batch["corrupted"]
        predicted = batch["mask"] if self.mpn is None else self.mpn(corrupted)["predicted_mask"]
        mask = self.mask_rule(predicted, "blind")
        if masked_share > 0:
            given = (sample_draws(batch["mask"]) < masked_share).view(-1, 1, 1, 1)
            mask = torch.where(given, self.masked_hole(batch["mask"]), mask)
        if self.epn is None:
            return {"mask": mask, "predicted_edges": batch.get("edge")}
        return {"mask": mask, **self.epn(corrupted, mask, batch["corrupted_edge"])}


def sample_draws(mask: torch.Tensor) -> torch.Tensor:
    """One number in [0, 1) per sample of ``mask`` ``(B, 1, H, W)``, a pure function of the sample:
    the fractional part of its mask's sum times the golden ratio. Training samples, whose damage is
    new every step, get a fresh draw each; a validation sample always the same, so the validation
    score does not change with the draws."""
    return torch.frac(mask.detach().double().flatten(1).sum(1) * 0.6180339887498949).to(mask.device)


class TracingOutputs(nn.Module):
    """The pipeline in blind mode with tuple outputs, as ``torch.jit.trace`` wants them:
    ``(corrupted, corrupted_edge) -> (output, mask, edges)``."""

    def __init__(self, pipeline: BlindPipeline):
        super().__init__()
        self.pipeline = pipeline

    def forward(self, corrupted: torch.Tensor, corrupted_edge: torch.Tensor):
        outputs = self.pipeline(corrupted, corrupted_edge)
        return outputs["output"], outputs["mask"], outputs["edges"]


@checked
class StageFeed(nn.Module):
    """What the earlier stages give a stage in training (the ``feed`` of the stage modules): the
    blind pipeline up to that stage, frozen, with the truth standing in for each earlier stage whose
    checkpoint is not given (EdgeConnect's stage-wise training), so a stage learns on the inputs the
    pipeline will hand it.

    Args:
        mpn_checkpoint: a trained MPN (``.ckpt``): its m̂ is the mask, else the true mask is.
        epn_checkpoint: a trained EPN: its edges guide the IPN, else Canny of the truth does.
        pipeline: the :class:`BlindPipeline` settings (the mask rule).
        masked_share: the share of samples whose mask is the binary hole a user gives in masked
            mode (:meth:`BlindPipeline.masked_hole` of the true mask), so the stage learns both the
            holes the MPN finds and the holes users draw.
    """

    def __init__(
        self,
        mpn_checkpoint: str | None = None,
        epn_checkpoint: str | None = None,
        pipeline: dict | None = None,
        masked_share: Share = 0.0,
    ):
        super().__init__()
        self.masked_share = masked_share
        self.pipeline = BlindPipeline(
            mpn=load_module(mpn_checkpoint, MPNModule) if mpn_checkpoint else None,
            epn=load_module(epn_checkpoint, EPNModule) if epn_checkpoint else None,
            **check_arguments(BlindPipeline, dict(pipeline or {}), "pipeline settings"),
        )

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.pipeline.upstream(batch, self.masked_share)


# -- model files --------------------------------------------------------------------------------


def model_in_folder(folder: Path) -> Path:
    """The model of a training run folder: its ``model.safetensors``, else the best (or last)
    joint checkpoint."""
    for candidate in (folder / "model.safetensors", *sorted(folder.glob("**/model.safetensors"))):
        if candidate.is_file():
            return candidate
    patterns = ("**/joint/checkpoints/best-*.ckpt", "checkpoints/best-*.ckpt", "**/joint/checkpoints/last.ckpt")
    for pattern in (*patterns, "checkpoints/last.ckpt"):
        found = sorted(folder.glob(pattern))
        if found:
            return found[-1]
    raise CheckpointError(f"{folder} holds no model.safetensors and no joint checkpoint")


def given_settings(overrides) -> dict:
    """The pipeline settings a command actually sets (``pipeline.*``): None keeps the stored value
    (or, without a model file, :class:`BlindPipeline`'s default)."""
    return {k: v for k, v in overrides.items() if v is not None}


def pipeline_from(model: ModelFile, **settings) -> BlindPipeline:
    """The frozen inference pipeline of a ``pipeline`` or ``joint`` model file; ``settings``
    override the stored ones (:data:`SETTINGS`)."""
    where = str(model.path)
    config = model.config
    stored = config.get("stages")
    if not isinstance(stored, dict) or any(not isinstance(stored.get(name), dict) for name in STAGES):
        raise CheckpointError(f"{where} lacks the configuration of the stages {list(STAGES)}")
    stages = {name: build(cls, stored[name], f"{where} ({name})") for name, cls in STAGES.items()}
    overrides = given_settings(settings)
    pipeline_settings = check_arguments(BlindPipeline, {**config.get("pipeline", {}), **overrides}, where)
    pipeline = BlindPipeline(**stages, **pipeline_settings)

    prefix = "pipeline." if model.kind == "joint" else ""
    state = {k[len(prefix) :]: v for k, v in model.state.items() if k.startswith(prefix)}
    fit_state(pipeline, state, where, _training_only)
    return pipeline.eval().requires_grad_(False)


def _training_only(key: str) -> bool:
    """Whether a pipeline state key belongs to a stage's training-only part (a discriminator)."""
    stage, _, rest = key.partition(".")
    return stage in STAGES and training_only_key(STAGES[stage])(rest)


# The model that ships with the package, trained with the project's own recipe (README, "The
# shipped model"): what loads when no model is named.
SHIPPED_MODEL = Path(__file__).parent / "weights" / "blindfill-natural.safetensors"


def load_pipeline(path=None, **settings) -> BlindPipeline:
    """The inference pipeline from a ``.safetensors`` model (``pipeline.export``), a joint ``.ckpt``
    or a training run folder; without ``path`` the shipped model (:data:`SHIPPED_MODEL`).
    ``settings`` (e.g. ``hole_threshold=0.6``) override the stored ones."""
    return pipeline_from(read_model_file(model_path(path), ("pipeline", "joint")), **settings)


def model_path(path=None) -> Path:
    """The model file ``path`` names: itself, a run folder's model (:func:`model_in_folder`), or
    without ``path`` the shipped model."""
    if path is None:
        if not SHIPPED_MODEL.is_file():
            raise CheckpointError(f"the shipped model {SHIPPED_MODEL} is missing from this install; give a model path")
        path = SHIPPED_MODEL
    path = Path(str(path)).expanduser()
    return model_in_folder(path) if path.is_dir() else path


def load_fill_stage(path, method: str) -> nn.Module:
    """The trained stage of ``method`` (:func:`~pipeline.methods.fill_stages`) from its ``.ckpt``, ``.safetensors``
    or run folder, frozen for inference. A stage that trains several systems (``system``: GLCIC's
    stage, with GLCIC's network or the parallel-attention one) must hold ``method``'s."""
    path = model_path(path)
    module = load_module(path, fill_stages()[method])
    system = getattr(module, "system", method)
    if system != method:
        raise CheckpointError(f"{path} holds the {system} network, not {method}'s: use method={system}")
    return module


def save_pipeline(pipeline: BlindPipeline, path) -> Path:
    """Write the pipeline for inference as safetensors: its stage configs without the training-only
    parts, its settings, and the weights of its generators (no discriminators)."""
    config = pipeline.config()
    for name, arguments in config["stages"].items():
        arguments.update(dict.fromkeys(STAGES[name].training_only))
    state = {k: v for k, v in pipeline.state_dict().items() if not _training_only(k)}
    return write_model_file(path, "pipeline", config, state)
