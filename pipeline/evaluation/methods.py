"""What is evaluated, built from the config: our model, another system's trained stage (the
partial-convolution U-Net, GLCIC), a baseline or another tool's predictions, in blind or masked mode
(the method), and the baselines run beside it on every pair, on its own mask and on the true mask."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from common.errors import ConfigError
from data.damage import DAMAGE_KINDS
from pipeline.evaluation.external import Predictions
from pipeline.evaluation.metrics import LPIPS_BACKBONES
from pipeline.evaluation.pairs import PROTOCOLS
from pipeline.inference.inpainter import OURS, BlindInpainter, InpaintSettings, build_inpainter, check_stage_checkpoint
from pipeline.methods import fill_stages
from pipeline.methods.classical import BASELINES, inpaint_batch
from pipeline.model import BlindPipeline, given_settings

PREDICTIONS = "predictions"  # another tool's outputs, read from a folder (pipeline/evaluation/external.py)
MODES = ("blind", "masked")
# The other systems' trained inpainting stages (pipeline.methods.fill_stages): method=<name>
# checkpoint=<its training run or .ckpt> fills the given mask (masked) or the mask of
# mask_checkpoint='s MPN (blind), in the pipeline in the IPN's place.
STAGE_METHODS = tuple(fill_stages())


@dataclass
class Method:
    """What is evaluated: ``name`` (``ours``, a stage of :data:`STAGE_METHODS`, a baseline or
    ``predictions``) in ``mode``. ``model`` is the inpainter that repairs (ours, or the stage
    method's: the mask model's MPN with the stage filling), the model whose MPN finds the mask of
    a baseline (blind) or None; ``pipeline`` the pipeline whose mask rule hardens the true mask for
    a baseline in masked mode."""

    name: str
    mode: str
    model: BlindInpainter | None
    pipeline: BlindPipeline
    predictions: Predictions | None = None  # method=predictions: attached once the pairs are known

    @property
    def is_ours(self) -> bool:
        """Whether a model of ours repairs: our pipeline, or it with another system's stage filling."""
        return self.name == OURS or self.name in STAGE_METHODS

    @property
    def native_size(self) -> int | None:
        """The side the method's network works at, where it has one (the 64² DCGAN, the 32² CIFAR GAN):
        the test pairs are resized to it."""
        return getattr(self.model.pipeline.ipn, "native_size", None) if self.is_ours else None

    @property
    def label(self) -> str:
        """Its name in the report (with its native size, where the pairs are resized to it)."""
        return f"{self.name} ({self.native_size}²)" if self.native_size else self.name

    def __call__(
        self, corrupted: torch.Tensor, true_mask: torch.Tensor, pair_ids: list[int] | None = None
    ) -> dict[str, torch.Tensor]:
        """Repair ``corrupted`` ``(B, 3, H, W)`` (test pairs ``pair_ids``) -> ``output`` ``(B, 3, H,
        W)``, the ``mask`` ``(B, 1, H, W)`` it composited with or filled (blind: the model's final
        mask; masked: the one binary hole every method gets, :meth:`~pipeline.model.BlindPipeline.masked_hole`)
        and the ``edges`` ``(B, 1, H, W)`` (ours)."""
        blind = self.mode == "blind"
        if self.is_ours:
            result = self.model.inpaint(corrupted, None if blind else self.pipeline.masked_hole(true_mask), self.mode)
            return {k: result[k] for k in ("output", "mask", "edges")}
        used = self.model.masks(corrupted)["mask"] if blind else self.pipeline.masked_hole(true_mask)
        if self.name == PREDICTIONS:
            return {"output": self.predictions.load(pair_ids, corrupted.shape[-2:]), "mask": used}

        return {"output": inpaint_batch(self.name, corrupted, used), "mask": used}

    def mask_prediction(self, corrupted: torch.Tensor) -> torch.Tensor | None:
        """The MPN's soft mask ``(B, 1, H, W)`` that the mask metrics measure (blind), else None."""
        return self.model.masks(corrupted)["predicted_mask"] if self.mode == "blind" else None


@dataclass
class BaselineRun:
    """Baseline ``name`` run beside the method on every pair, on the ``source`` mask: ``own``, the
    mask the method used (blind mode: the model's final mask), or ``true``, the binary hole of the
    true mask that masked mode gives every method (:meth:`~pipeline.model.BlindPipeline.masked_hole`)."""

    name: str
    source: str
    pipeline: BlindPipeline

    @property
    def label(self) -> str:
        """Its name in the report, e.g. ``telea (own mask)``."""
        return f"{self.name} ({self.source} mask)"

    def __call__(self, corrupted: torch.Tensor, true_mask: torch.Tensor, own_mask: torch.Tensor) -> dict:
        """``output`` ``(B, 3, H, W)`` and the ``mask`` ``(B, 1, H, W)`` it filled."""
        mask = own_mask if self.source == "own" else self.pipeline.masked_hole(true_mask)
        return {"output": inpaint_batch(self.name, corrupted, mask), "mask": mask}


def _names(cfg: DictConfig, key: str, valid) -> list[str] | None:
    """The list ``cfg[key]`` (None stays None), refused unless every entry is one of ``valid``, once."""
    value = cfg[key]
    if value is None:
        return None
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} must be a list of names (e.g. {key}=[{valid[0]}]), got {value!r}")
    names = list(value)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ConfigError(f"{key}: unknown name(s) {', '.join(unknown)}; expected any of {', '.join(valid)}")
    if len(set(names)) < len(names):
        raise ConfigError(f"{key} lists a name twice: {', '.join(names)}")
    return names


def check_config(cfg: DictConfig) -> None:
    """Refuse contradictory or missing settings before anything is loaded."""
    methods = [OURS, *STAGE_METHODS, *BASELINES, PREDICTIONS]
    if cfg.method not in methods:
        raise ConfigError(f"unknown method {cfg.method!r}; expected one of {', '.join(methods)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if (cfg.method == PREDICTIONS) != bool(cfg.predictions):
        raise ConfigError("method=predictions and predictions=DIR (the other tool's outputs) go together")
    if cfg.method == PREDICTIONS and cfg.mode != "masked":
        raise ConfigError("method=predictions scores another tool's outputs for the exported holes: use mode=masked")
    if cfg.export_pairs and cfg.method == PREDICTIONS:
        raise ConfigError("export_pairs=DIR writes the test pairs and stops; score predictions in a separate run")
    if cfg.method == OURS:
        if cfg.mask_checkpoint:
            raise ConfigError(
                "mask_checkpoint= is for baselines in mode=blind; method=ours finds the mask with its own MPN"
            )
    else:
        check_stage_checkpoint(cfg.method, cfg.checkpoint)
        if cfg.checkpoint and cfg.method not in STAGE_METHODS:
            raise ConfigError(
                f"checkpoint= is the model of method=ours (or of a trained stage: {', '.join(STAGE_METHODS)}); "
                f"method={cfg.method} takes the model whose MPN finds its mask (mode=blind) as mask_checkpoint="
            )
        if cfg.mode == "blind" and not cfg.mask_checkpoint and cfg.method not in STAGE_METHODS:
            raise ConfigError(
                f"method={cfg.method} mode=blind needs mask_checkpoint=MODEL, the model whose MPN finds "
                "the mask (or use mode=masked)"
            )
        if cfg.mode == "masked" and cfg.mask_checkpoint:
            raise ConfigError("mask_checkpoint= is used in mode=blind only; mode=masked gives the true mask")
    if cfg.protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {cfg.protocol!r}")
    if cfg.protocol == "denoise" and cfg.method != OURS:
        raise ConfigError("protocol=denoise scores the model (method=ours) beside the classical denoisers it runs")
    if _names(cfg, "damage_kinds", DAMAGE_KINDS) == []:
        raise ConfigError(f"damage_kinds must name at least one kind (null: all of {', '.join(DAMAGE_KINDS)})")
    _names(cfg, "baselines", list(BASELINES))
    if cfg.lpips_net not in LPIPS_BACKBONES:
        raise ConfigError(f"lpips_net must be one of {', '.join(LPIPS_BACKBONES)}, got {cfg.lpips_net!r}")


def build_method(cfg: DictConfig, device: str) -> Method:
    """The method of ``cfg`` on ``device``: the model of ``checkpoint=`` (ours; null: the shipped
    model) or ``mask_checkpoint=`` (a blind baseline) with the ``pipeline.*`` overrides of its stored
    settings; without a model (a baseline in masked mode) a :class:`BlindPipeline` of those
    overrides, for its mask rule."""
    overrides = given_settings(cfg.pipeline)
    settings = InpaintSettings.from_config(cfg)
    if cfg.method == OURS or cfg.method in STAGE_METHODS:  # a stage method fills the mask model's mask
        model = build_inpainter(cfg.method, cfg.checkpoint, cfg.mask_checkpoint, settings, device, **overrides)
    elif cfg.mask_checkpoint:
        model = BlindInpainter.from_pretrained(cfg.mask_checkpoint, settings, device, **overrides)
    else:
        model = None
    pipeline = model.pipeline if model is not None else BlindPipeline(**overrides)
    return Method(cfg.method, cfg.mode, model, pipeline)


def build_baselines(cfg: DictConfig, method: Method) -> list[BaselineRun]:
    """The baselines of ``baselines=``, each on the method's own mask (blind mode: the mask the
    model found; in masked mode there is none of its own) and on the true mask hardened by the
    method's mask rule."""
    sources = ("own", "true") if method.mode == "blind" else ("true",)
    return [BaselineRun(name, source, method.pipeline) for name in cfg.baselines or () for source in sources]
