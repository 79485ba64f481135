"""Blind inpainting for users: :class:`BlindInpainter` runs :class:`~pipeline.model.BlindPipeline`
(the one module that connects the stages; its ``mode`` and mask rule are documented there) with
input reading, resizing, batching and the Canny edges of the input.

Any size and aspect: each network pads its input to the multiple it needs (MPN 16, EPN 4, IPN 8)
and crops back. Images whose long side exceeds ``working_size`` are processed at that size and only
the fill is pasted back: the mask and the generated image are upsampled to full resolution and
``(1 − M)·x + M·up(ŷ)`` keeps every known pixel of the original (IOPaint's "resize" strategy).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from PIL import Image

from common.config import Annotated, Field, check_values
from common.errors import ConfigError
from common.images import to_pil
from data.io import to_float, to_pixels
from pipeline.large import any_pool, downscale, paste_back, resize_matrix
from pipeline.model import MODES, STAGES, BlindPipeline, load_pipeline


@dataclass(frozen=True)
class InpaintSettings:
    """How :class:`BlindInpainter` runs the pipeline (the pipeline's own settings, such as the
    mask rule, travel with the model: :class:`~pipeline.model.BlindPipeline`).

    Args:
        mode: ``blind`` | ``masked`` | ``denoise`` when a call names none.
        working_size: images with a longer side are processed at this size; the fill is pasted
            back into the full-resolution original.
        channels_last: stages run in channels-last memory format (outputs within the tolerance
            and at the speeds the README's "Benchmark" gives; on a CPU the MPN and IPN are faster
            so, the EPN slower).
    """

    mode: str = "blind"
    working_size: Annotated[int, Field(ge=16)] = 512
    channels_last: tuple[str, ...] = ("mpn", "ipn")

    @classmethod
    def from_config(cls, cfg) -> InpaintSettings:
        """The settings a command's config holds at its root (``mode=``, ``working_size=``, ...)."""
        return cls(mode=cfg.mode, working_size=cfg.working_size, channels_last=tuple(cfg.channels_last))

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        check_values(InpaintSettings, asdict(self))
        unknown = set(self.channels_last) - set(STAGES)
        if unknown:
            raise ConfigError(f"channels_last: unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)}")


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
        return torch.from_numpy(np.ascontiguousarray(to_float(_to_rgb_array(image)).transpose(2, 0, 1)))
    if isinstance(image, np.ndarray):
        arr = to_float(image)
        arr = np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else arr[..., :3]
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).clamp(0, 1)
    if torch.is_tensor(image):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"an image tensor must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        return image.float().expand(3, -1, -1).clamp(0, 1)
    raise TypeError(f"cannot read an image from {type(image).__name__}")


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is refused."""
    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available")
    return name


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """The ``(h, w)`` an image is processed at: unchanged up to ``working_size``, else the long
    side scaled down to it (aspect kept)."""
    scale = working_size / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


class BlindInpainter:
    """The blind pipeline for inference: I/O, resizing and batching around
    :class:`~pipeline.model.BlindPipeline`. ``inpaint`` works on same-size batches of tensors,
    ``__call__`` on one image of any kind (path, Pillow, numpy, tensor).

    >>> inpainter = BlindInpainter.from_pretrained("runs/quickstart/<time>/model.safetensors")
    >>> result = inpainter("photo.jpg")          # blind: no mask needed
    >>> result.to_pil().save("repaired.png")
    """

    def __init__(self, pipeline: BlindPipeline, settings: InpaintSettings | None = None):
        self.pipeline = pipeline.eval().requires_grad_(False)
        self.settings = settings or InpaintSettings()
        self.device = next(pipeline.parameters()).device

    @property
    def settings(self) -> InpaintSettings:
        return self._settings

    @settings.setter
    def settings(self, value: InpaintSettings) -> None:
        self._settings = value
        for name in STAGES:
            fmt = torch.channels_last if name in value.channels_last else torch.contiguous_format
            getattr(self.pipeline, name).to(memory_format=fmt)

    @classmethod
    def from_pretrained(
        cls, path=None, settings: InpaintSettings | None = None, device="cpu", **pipeline_settings
    ) -> BlindInpainter:
        """Load a model written by :mod:`pipeline.export` (``.safetensors``), a joint checkpoint
        (``.ckpt``, read with ``weights_only=True``) or a training run folder; without ``path`` the
        model that ships with the package (:data:`pipeline.model.SHIPPED_MODEL`).
        ``pipeline_settings`` (e.g. ``hole_threshold=0.6``; None keeps the stored value) override
        the model's."""
        return cls(load_pipeline(path, **pipeline_settings), settings).to(device)

    def to(self, device) -> BlindInpainter:
        self.pipeline.to(device)
        self.device = torch.device(device)
        return self

    def with_settings(self, **changes) -> BlindInpainter:
        self.settings = replace(self.settings, **changes)
        return self

    # -- running --------------------------------------------------------------------------------

    @torch.inference_mode()
    def masks(self, corrupted: torch.Tensor, mode: str = "blind") -> dict[str, torch.Tensor]:
        """The pipeline's ``mask`` and ``predicted_mask`` for a batch ``(B, 3, H, W)`` at its own
        resolution, on the CPU (what a baseline fills in blind mode, and what mask metrics score)."""
        outputs = self.pipeline.masks(corrupted.to(self.device, torch.float32), mode=mode)
        return {k: outputs[k].float().cpu() for k in ("mask", "predicted_mask")}

    @torch.inference_mode()
    def run_pipeline(self, corrupted: torch.Tensor, mask: torch.Tensor | None, mode: str) -> dict[str, torch.Tensor]:
        """The pipeline on a batch ``(B, 3, h, w)`` at its working size: ``mask``, ``edges``
        ``(B, 1, h, w)``, ``refined``, ``output`` ``(B, 3, h, w)`` and ``damaged`` ``(B,)``.

        An image whose mask is empty (nothing found, or an empty mask given) skips the EPN and the
        IPN: its output is the input itself, as the composite would make it, and its edges the
        input's Canny edges, as the merged guide would be. A clean photo costs the MPN and Canny."""
        found = self.pipeline.masks(corrupted, mask, mode)
        edge = self.pipeline.corrupted_edge(corrupted)
        hole = found["mask"]
        damaged = hole.flatten(1).amax(dim=1) > 0
        outputs = {"mask": hole, "edges": edge, "refined": corrupted, "output": corrupted, "damaged": damaged}
        if not damaged.any():
            return outputs
        if damaged.all():
            repaired = self.pipeline(corrupted, edge, hole, "masked")  # the mask rule is applied already
            return {**outputs, **{key: repaired[key] for key in ("edges", "refined", "output")}}
        index = damaged.nonzero().squeeze(1)
        repaired = self.pipeline(corrupted[index], edge[index], hole[index], "masked")
        for key in ("edges", "refined", "output"):
            outputs[key] = outputs[key].index_copy(0, index, repaired[key].to(outputs[key].dtype))
        return outputs

    @torch.inference_mode()
    def inpaint(
        self, corrupted: torch.Tensor, mask: torch.Tensor | None = None, mode: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Repair a batch ``corrupted`` ``(B, 3, H, W)`` in [0, 1]. ``mask`` ``(B, 1, H, W)``
        (1 = hole) is needed for ``mode="masked"`` and ignored otherwise. Returns ``output``
        ``(B, 3, H, W)``, ``mask`` and ``edges`` ``(B, 1, H, W)`` at the input's resolution."""
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
        if corrupted.dim() != 4 or corrupted.shape[1] != 3:
            raise ValueError(f"corrupted must be (B, 3, H, W), got {tuple(corrupted.shape)}")
        full = corrupted.to(self.device, torch.float32)
        full_mask = None if mask is None or mode != "masked" else mask.to(self.device, torch.float32)
        h, w = full.shape[-2:]
        small_hw = working_shape(h, w, self.settings.working_size)
        if small_hw == (h, w):
            outputs = self.run_pipeline(full, full_mask, mode)
            return {"output": outputs["output"].clamp(0, 1), "mask": outputs["mask"], "edges": outputs["edges"]}

        results = [
            self.inpaint_array(
                image.permute(1, 2, 0).cpu().numpy(), None if full_mask is None else full_mask[i, 0].cpu().numpy(), mode
            )
            for i, image in enumerate(full)
        ]
        return {
            key: torch.stack([torch.from_numpy(r[key]).reshape(*r[key].shape[:2], -1) for r in results])
            .permute(0, 3, 1, 2)
            .to(full.device)
            for key in ("output", "mask", "edges")
        }

    @torch.inference_mode()
    def inpaint_array(
        self,
        image: np.ndarray,
        mask: np.ndarray | None = None,
        mode: str | None = None,
        in_place: bool = False,
        intermediates: bool = True,
    ) -> dict[str, np.ndarray | None]:
        """Repair one photo ``(H, W, 3)`` held in its own pixels (uint8, uint16, or float32 in
        [0, 1]); ``mask`` ``(H, W)`` (nonzero = hole) for ``mode="masked"``. Returns ``output``
        (``image``'s dtype; ``image`` itself, overwritten, with ``in_place``) and with
        ``intermediates`` the ``mask`` and ``edges`` ``(H, W)`` in the same scale, else None.

        Above ``working_size`` the full-resolution work runs in row strips (:mod:`pipeline.large`):
        memory is the photo, its result and the networks at working size, whatever the photo's
        size."""
        mode = mode or self.settings.mode
        height, width = image.shape[:2]
        size = working_shape(height, width, self.settings.working_size)
        if size == (height, width):
            x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None]
            m = None if mask is None or mode != "masked" else torch.from_numpy(np.asarray(mask, np.float32))[None, None]
            result = self.inpaint(x, m, mode)
            out = {}
            for key in ("output", "mask", "edges"):
                values = result[key][0].permute(1, 2, 0).cpu().numpy()
                values = values if key == "output" else values[..., 0]  # (H, W, 3) and (H, W)
                out[key] = to_pixels(values, image.dtype)
            if in_place and image.flags.writeable:
                image[...] = out["output"]
                out["output"] = image
            return out if intermediates else {**out, "mask": None, "edges": None}
        small = downscale(image, size).to(self.device)
        hole = None if mask is None or mode != "masked" else np.asarray(mask)
        small_mask = None if hole is None else any_pool(hole, size).to(self.device)
        outputs = self.run_pipeline(small, small_mask, mode)
        if not intermediates and not outputs["damaged"].any():  # nothing to paste back
            output = image if in_place and image.flags.writeable else image.copy()
            return {"output": output, "mask": None, "edges": None}
        return paste_back(image, outputs, hole, in_place, intermediates)

    @torch.inference_mode()
    def mask_array(
        self, image: np.ndarray, mode: str = "blind", size: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """The damage found in one photo ``(H, W, 3)`` (uint8, uint16, or float32 in [0, 1]): the
        ``mask`` the pipeline repairs (``mode`` blind or denoise) and the MPN's ``predicted_mask``,
        each ``(h, w)`` float32 in [0, 1] at ``size`` ``(h, w)`` (default the photo's). The MPN runs
        at the working size, and its masks are resized bilinearly, as :func:`~pipeline.large.paste_back`
        resizes them for the repair."""
        height, width = image.shape[:2]
        h, w = size or (height, width)
        small_hw = working_shape(height, width, self.settings.working_size)
        if small_hw == (height, width):
            x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None]
        else:
            x = downscale(image, small_hw)
        masks = self.pipeline.masks(x.to(self.device), mode=mode)
        rows, columns = resize_matrix(small_hw[0], h, "bilinear"), resize_matrix(small_hw[1], w, "bilinear")
        out = {}
        for key in ("mask", "predicted_mask"):
            values = masks[key][0, 0].float().cpu()
            if (h, w) != small_hw:
                values = rows @ values @ columns.T
            out[key] = values.clamp_(0, 1).numpy()
        return out

    def __call__(self, image, mask=None, mode: str | None = None) -> InpaintResult:
        """Repair one image (path, Pillow image, numpy array or ``(3, H, W)`` tensor); ``mask``
        likewise (white = hole), for ``mode="masked"``."""
        x = _as_image_tensor(image)[None]
        m = None if mask is None else _as_image_tensor(mask)[:1][None]
        if m is not None and m.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"mask size {tuple(m.shape[-2:])} differs from image size {tuple(x.shape[-2:])}")
        out = self.inpaint(x, m, mode or ("masked" if m is not None else None))
        return InpaintResult(out["output"][0].cpu(), out["mask"][0].cpu(), out["edges"][0].cpu())
