"""Blind inpainting with the three trained stages: :class:`BlindInpainter`.

``mode="blind"``: the MPN predicts the mask; ``mode="masked"``: the mask is given;
``mode="denoise"``: the MPN's soft mask is used as it is (denoising is inpainting with a soft,
spread mask). Every mode then runs EdgeConnect's edge step (Canny of the known region + EPN inside
the hole) and the IPN, and composes ``(1 − m)·x + m·ŷ``.

Any size and aspect: each network pads its input to the multiple it needs (MPN 16, EPN 4, IPN 8)
and crops back. Images whose long side exceeds ``working_size`` are processed at that size and only
the fill is pasted back: the mask and the generated image are upsampled to full resolution and
``(1 − M)·x + M·up(ŷ)`` keeps every known pixel of the original (IOPaint's "resize" strategy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.checkpoint import CheckpointError, load_checkpoint
from common.images import to_pil
from common.layers import hard_mask
from epn.edges import canny, merge_edges, to_gray
from epn.module import EPNModule
from ipn.module import IPNModule, compose
from mpn.module import MPNModule
from pipeline.stages import stage_class

MODES = ("blind", "masked", "denoise")
STAGES = ("mpn", "epn", "ipn")
SAFETENSORS_FORMAT = "blindfill-inpainter/1"


@dataclass(frozen=True)
class InpaintSettings:
    """How masks are formed and large images handled (``conf/inpaint.yaml`` mirrors these)."""

    mode: str = "blind"
    hole_threshold: float = 0.5  # blind: m̂ above this becomes a full hole (1)
    dilate: int = 2  # blind: grow that hole by this many pixels, so no rim of the damage blends back in
    working_size: int = 512  # longer sides are processed at this size; the fill is pasted back
    canny_sigma: float = 2.0  # EdgeConnect's SIGMA for the known-region edges
    edge_threshold: float = 0.5  # m above this counts as hole when merging edges (EPN/IPN training value)
    # Stages run channels-last: measured with pipeline.benchmark on a 2-core CPU, the blind pipeline
    # at 512² takes 9.76 s instead of 11.20 s (MPN 3.85 vs 4.81 s, IPN 2.94 vs 3.53 s) with outputs
    # within 1.1e-5 of contiguous fp32; the EPN is slower channels-last (0.95 vs 0.72 s at 256²).
    channels_last: tuple[str, ...] = ("mpn", "ipn")

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.working_size < 16:
            raise ValueError(f"working_size must be at least 16, got {self.working_size}")
        unknown = set(self.channels_last) - set(STAGES)
        if unknown:
            raise ValueError(f"channels_last: unknown stage(s) {sorted(unknown)}; choose from {STAGES}")


@dataclass
class InpaintResult:
    """One inpainted image: ``output`` ``(3, H, W)``, ``mask`` and ``edges`` ``(1, H, W)``, all in [0, 1]
    at the input's full resolution."""

    output: torch.Tensor
    mask: torch.Tensor
    edges: torch.Tensor

    def to_pil(self, name: str = "output") -> Image.Image:
        return to_pil(getattr(self, name))


def _as_image_tensor(image) -> torch.Tensor:
    """A path, Pillow image, ``(H, W[, C])`` uint8/uint16/float array or ``(3, H, W)`` tensor ->
    ``(3, H, W)`` float32 in [0, 1]."""
    from data.io import _to_rgb_array, load_image

    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.ascontiguousarray(_to_rgb_array(image).transpose(2, 0, 1)))
    if isinstance(image, np.ndarray):
        arr = image.astype(np.float32) / (
            65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else 1.0
        )
        arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).clamp(0, 1)
    if torch.is_tensor(image):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        return image.float().expand(3, -1, -1).clamp(0, 1)
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """The ``(h, w)`` an image is processed at: unchanged up to ``working_size``, else the long
    side scaled down to it (aspect kept)."""
    scale = working_size / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Dilate ``mask`` ``(B, 1, H, W)`` by a square of radius ``pixels`` (max filter)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


class BlindInpainter:
    """MPN → EPN → IPN for inference. ``inpaint`` works on same-size batches of tensors,
    ``__call__`` on one image of any kind (path, Pillow, numpy, tensor).

    >>> inpainter = BlindInpainter.from_pretrained("runs/all/<time>/model.safetensors")
    >>> result = inpainter("photo.jpg")          # blind: no mask needed
    >>> result.to_pil().save("repaired.png")
    """

    def __init__(self, mpn: MPNModule, epn: EPNModule, ipn: IPNModule, settings: InpaintSettings | None = None):
        self.mpn, self.epn, self.ipn = (m.eval().requires_grad_(False) for m in (mpn, epn, ipn))
        self.settings = settings or InpaintSettings()
        self.device = next(self.ipn.parameters()).device

    @property
    def settings(self) -> InpaintSettings:
        return self._settings

    @settings.setter
    def settings(self, value: InpaintSettings) -> None:
        self._settings = value
        for name in STAGES:
            fmt = torch.channels_last if name in value.channels_last else torch.contiguous_format
            getattr(self, name).to(memory_format=fmt)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_stage_modules(cls, modules: dict, settings: InpaintSettings | None = None) -> BlindInpainter:
        """From trained stage modules ``{"mpn": ..., "epn": ..., "ipn": ...}`` (their discriminators,
        if any, are dropped: inference never needs them)."""
        return cls(*(_inference_only(modules[name]) for name in STAGES), settings=settings)

    @staticmethod
    def _build_stages(hparams: dict) -> dict:
        stages = {}
        for name in STAGES:
            if name not in hparams:
                raise CheckpointError(f"the model holds no {name} configuration")
            kwargs = dict(hparams[name])
            if name == "ipn":
                kwargs["vgg_weights"] = None  # a training-only loss network
            stages[name] = _inference_only(stage_class(name)(**kwargs))
        return stages

    @classmethod
    def from_pretrained(cls, path, settings: InpaintSettings | None = None, map_location="cpu") -> BlindInpainter:
        """Load a model written by :mod:`pipeline.export` (``.safetensors``), a joint checkpoint
        (``.ckpt``, read with ``weights_only=True``), or a run folder of ``stage=all``/``joint``
        (its ``model.safetensors``, else its joint checkpoint)."""
        path = Path(str(path)).expanduser()
        if path.is_dir():
            path = _model_in_run_folder(path)
        if not path.is_file():
            raise CheckpointError(f"model {path} does not exist")
        if path.suffix == ".safetensors":
            hparams, state = read_safetensors(path)
        else:
            checkpoint = load_checkpoint(path, "joint")
            hparams, state = checkpoint["hyper_parameters"]["stages"], checkpoint["state_dict"]
        stages = cls._build_stages(hparams)
        for name, module in stages.items():
            own = module.state_dict()
            prefix = f"{name}."
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix) and k[len(prefix) :] in own}
            missing = sorted(set(own) - set(sub))
            if missing:
                raise CheckpointError(f"{path} lacks {name} weights ({', '.join(missing[:3])} ...)")
            mismatched = [k for k in own if own[k].shape != sub[k].shape]
            if mismatched:
                raise CheckpointError(f"{path}: {name} weights do not fit its configuration ({mismatched[:3]})")
            module.load_state_dict(sub)
        return cls(*(stages[n] for n in STAGES), settings=settings).to(map_location)

    def to(self, device) -> BlindInpainter:
        for module in (self.mpn, self.epn, self.ipn):
            module.to(device)
        self.device = torch.device(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The three generators' weights, keys prefixed ``mpn.``, ``epn.``, ``ipn.``."""
        return {f"{name}.{k}": v for name in STAGES for k, v in getattr(self, name).state_dict().items()}

    def config(self) -> dict:
        """The three stages' constructor arguments (enough to rebuild them)."""
        return {name: dict(getattr(self, name).hparams) for name in STAGES}

    # -- running --------------------------------------------------------------------------------

    def _mask(self, corrupted: torch.Tensor, mask: torch.Tensor | None, mode: str) -> torch.Tensor:
        if mode == "masked":
            if mask is None:
                raise ValueError("mode='masked' needs a mask")
            return mask.to(corrupted)
        predicted = self.mpn(corrupted)
        if mode == "denoise":
            return predicted
        s = self.settings
        return torch.maximum(predicted, grow(hard_mask(predicted, s.hole_threshold), s.dilate))

    def _fill(self, corrupted: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Edges and the IPN's fill for a batch at working resolution."""
        known = canny(to_gray(corrupted), sigma=self.settings.canny_sigma)
        edges = merge_edges(self.epn(corrupted, mask, known), known, mask, self.settings.edge_threshold)
        generated = self.ipn(corrupted, mask, edges)["refined"]
        return {"generated": generated, "edges": edges}

    @torch.inference_mode()
    def inpaint(
        self, corrupted: torch.Tensor, mask: torch.Tensor | None = None, mode: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Repair a batch ``corrupted`` ``(B, 3, H, W)`` in [0, 1]. ``mask`` ``(B, 1, H, W)``
        (1 = hole) is needed for ``mode="masked"`` and ignored otherwise. Returns ``output``
        ``(B, 3, H, W)``, ``mask`` and ``edges`` ``(B, 1, H, W)`` at the input's resolution."""
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        if corrupted.dim() != 4 or corrupted.shape[1] != 3:
            raise ValueError(f"corrupted must be (B, 3, H, W), got {tuple(corrupted.shape)}")
        full = corrupted.to(self.device, torch.float32)
        h, w = full.shape[-2:]
        small_hw = working_shape(h, w, self.settings.working_size)
        full_mask = None if mask is None else mask.to(self.device, torch.float32)
        if small_hw == (h, w):
            m = self._mask(full, full_mask, mode)
            filled = self._fill(full, m)
            return {"output": compose(full, filled["generated"], m).clamp(0, 1), "mask": m, "edges": filled["edges"]}

        small = F.interpolate(full, size=small_hw, mode="bilinear", antialias=True, align_corners=False)
        small_mask = None if full_mask is None else F.adaptive_max_pool2d(full_mask, small_hw)  # no hole pixel is lost
        m_small = self._mask(small, small_mask, mode)
        filled = self._fill(small, m_small)
        m = full_mask if mode == "masked" else F.interpolate(m_small, size=(h, w), mode="bilinear", align_corners=False)
        generated = F.interpolate(filled["generated"], size=(h, w), mode="bicubic", align_corners=False)
        edges = F.interpolate(filled["edges"], size=(h, w), mode="nearest")
        return {"output": compose(full, generated, m).clamp(0, 1), "mask": m.clamp(0, 1), "edges": edges}

    def __call__(self, image, mask=None, mode: str | None = None) -> InpaintResult:
        """Repair one image (path, Pillow image, numpy array or ``(3, H, W)`` tensor); ``mask``
        likewise (white = hole), for ``mode="masked"``."""
        x = _as_image_tensor(image)[None]
        m = None if mask is None else _as_image_tensor(mask)[:1][None]
        if m is not None and m.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask size {tuple(m.shape[-2:])} differs from image size {tuple(x.shape[-2:])}")
        out = self.inpaint(x, m, mode or ("masked" if m is not None else None))
        return InpaintResult(out["output"][0].cpu(), out["mask"][0].cpu(), out["edges"][0].cpu())

    def with_settings(self, **changes) -> BlindInpainter:
        self.settings = replace(self.settings, **changes)
        return self


def _inference_only(module):
    """``module`` without its training-only parts (discriminator, VGG loss network)."""
    for part in ("discriminator", "vgg"):
        if getattr(module, part, None) is not None:
            setattr(module, part, None)
    return module


def _model_in_run_folder(folder: Path) -> Path:
    for candidate in (folder / "model.safetensors", *sorted(folder.glob("**/model.safetensors"))):
        if candidate.is_file():
            return candidate
    for pattern in (
        "**/joint/checkpoints/best-*.ckpt",
        "checkpoints/best-*.ckpt",
        "**/joint/checkpoints/last.ckpt",
        "checkpoints/last.ckpt",
    ):
        found = sorted(folder.glob(pattern))
        if found:
            return found[-1]
    raise CheckpointError(f"{folder} holds no model.safetensors and no joint checkpoint")


def read_safetensors(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(stage configs, weights)`` of a file written by :func:`write_safetensors` (no pickle)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file: {err}") from None
    if metadata.get("format") != SAFETENSORS_FORMAT:
        raise CheckpointError(
            f"{path} is not a blindfill model (format {metadata.get('format')!r}, expected {SAFETENSORS_FORMAT!r})"
        )
    return json.loads(metadata["stages"]), state


def write_safetensors(inpainter: BlindInpainter, path) -> Path:
    """Write the three generators' weights and their configuration to ``path`` (safetensors)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in inpainter.state_dict().items()}
    save_file(state, str(path), metadata={"format": SAFETENSORS_FORMAT, "stages": json.dumps(inpainter.config())})
    return path
