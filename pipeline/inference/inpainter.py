"""Blind inpainting for users: :class:`BlindInpainter` runs :class:`~pipeline.model.BlindPipeline`
(the one module that connects the stages; its ``mode`` and mask rule are documented there) with
input reading, resizing, batching and the Canny edges of the input.

Any size and aspect: each network pads its input to the multiple it needs (MPN 16, EPN 4, IPN 8)
and crops back. For photos whose long side exceeds ``working_size`` (:mod:`pipeline.inference.large`):

- ``large="crop"`` (default): the damage is found on the photo at ``mask_size`` (the MPN tiled with
  overlap where that exceeds the working size), then the EPN and IPN repair crops around each
  damaged region, at full resolution where the crop fits the working size (else the crop is
  resized), and only the hole is pasted back (IOPaint's "crop" strategy);
- ``large="resize"``: the whole photo is repaired at the working size and the upsampled fill is
  pasted back, ``(1 − M)·x + M·up(ŷ)`` (IOPaint's "resize" strategy).

Either way every known pixel of the original is kept exactly.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.config import Annotated, Field, check_values
from common.errors import ConfigError
from common.images import to_pil
from data.io import to_float, to_pixels
from pipeline.inference import large
from pipeline.inference.large import resize_matrix, working_shape
from pipeline.methods import fill_stages
from pipeline.model import MODES, STAGES, BlindPipeline, load_fill_stage, load_pipeline, model_path

LARGE_STRATEGIES = ("crop", "resize")
BACKENDS = ("torch", "onnxruntime")
OURS = "ours"
COARSE_OPENING = 5  # px at the working size: the narrowest damage the whole-photo view contributes
TILE_MARGIN = 64  # px of context a tile of the MPN keeps on each side (common.ops.tiled)


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
        large: photos above ``working_size``: ``crop`` repairs crops around the damage at full
            resolution, ``resize`` the whole photo at the working size (module docstring).
        mask_size: ``large=crop``: the long side the damage is looked for at (the MPN runs in
            overlapping tiles of ``working_size`` above it); 0 = the photo's own size.
        two_scale: above ``working_size``, the MPN also looks at the whole photo at the working
            size and m̂ is the larger of the two views (:meth:`BlindInpainter.found_masks`): finds
            damage that is large at full resolution, but takes thin lines crossing a photo for the
            borders of pasted regions (README, "Detection by kind"); off by default.
        crop_margin: ``large=crop``: px of context around each damaged region.
        backend: ``torch``, or ``onnxruntime``: the MPN's and EPN's generators run in ONNX
            Runtime on the CPU (:mod:`pipeline.inference.onnx`; the IPN stays in PyTorch).
    """

    mode: str = "blind"
    working_size: Annotated[int, Field(ge=16)] = 512
    channels_last: tuple[str, ...] = ("mpn", "ipn")
    large: str = "crop"
    mask_size: Annotated[int, Field(ge=0)] = 4096
    two_scale: bool = False
    crop_margin: Annotated[int, Field(ge=0)] = 128
    backend: str = "torch"

    @classmethod
    def from_config(cls, cfg) -> InpaintSettings:
        """The settings a command's config holds at its root (``mode=``, ``working_size=``, ...)."""
        values = {field.name: cfg[field.name] for field in fields(cls)}
        return cls(**{**values, "channels_last": tuple(values["channels_last"])})

    def __post_init__(self):
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; expected one of {MODES}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.large not in LARGE_STRATEGIES:
            raise ConfigError(f"large must be one of {LARGE_STRATEGIES}, got {self.large!r}")
        if 0 < self.mask_size < 16:
            raise ConfigError(f"mask_size must be 0 (the photo's size) or at least 16, got {self.mask_size}")
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


def _check_backend_device(backend: str, device: torch.device) -> None:
    if backend == "onnxruntime" and device.type != "cpu":
        raise ConfigError("backend=onnxruntime runs on the CPU: use device=cpu or backend=torch")


def check_stage_checkpoint(method: str, checkpoint) -> None:
    """Another system's method (:func:`~pipeline.methods.fill_stages`) needs its trained stage."""
    stages = fill_stages()
    if method in stages and not checkpoint:
        stage = stages[method].stage_name
        raise ConfigError(f"method={method} needs checkpoint=, a trained stage={stage} run folder or checkpoint")


def methods() -> tuple[str, ...]:
    """``ours``, or another system's trained stage filling our mask (:func:`~pipeline.methods.fill_stages`)."""
    return (OURS, *fill_stages())


def check_method(method: str, checkpoint=None, mask_checkpoint=None) -> None:
    """The choices :func:`build_inpainter` takes, checked before anything loads (one-line errors)."""
    if method not in methods():
        raise ConfigError(f"unknown method {method!r}; expected one of {', '.join(methods())}")
    if method == OURS and mask_checkpoint:
        raise ConfigError("mask_checkpoint= names the model that finds the mask for another system's method; "
                          "method=ours finds it with its own MPN")  # fmt: skip
    check_stage_checkpoint(method, checkpoint)


def build_inpainter(
    method: str,
    checkpoint=None,
    mask_checkpoint=None,
    settings: InpaintSettings | None = None,
    device="cpu",
    **pipeline_settings,
) -> BlindInpainter:
    """The inpainter of ``method`` (:func:`methods`), as ``pipeline.inpaint`` and ``pipeline.evaluate``
    build it: ``ours``, the model of ``checkpoint`` (None: the shipped one); another system's
    method, its trained stage in ``checkpoint`` filling the mask that the model of
    ``mask_checkpoint`` (None: the shipped one) finds, or that is given (masked mode)."""
    check_method(method, checkpoint, mask_checkpoint)
    if method == OURS:
        return BlindInpainter.from_pretrained(checkpoint or None, settings, device, **pipeline_settings)
    base = BlindInpainter.from_pretrained(mask_checkpoint or None, settings, device, **pipeline_settings)
    return base.with_fill_stage(load_fill_stage(checkpoint, method))


def opened(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Grey opening of ``mask`` ``(B, 1, H, W)`` by a ``size``×``size`` square (a min filter, then
    a max filter): structures narrower than ``size`` px are removed, wider ones kept as they are."""
    return kornia.morphology.opening(mask, mask.new_ones(size, size))


class BlindInpainter:
    """The blind pipeline for inference: I/O, resizing and batching around
    :class:`~pipeline.model.BlindPipeline`. ``inpaint`` works on same-size batches of tensors,
    ``__call__`` on one image of any kind (path, Pillow, numpy, tensor).

    >>> import cv2
    >>> from data.sample import PHOTO_DIR
    >>> inpainter = BlindInpainter.from_pretrained()  # the shipped model, or a model file / run folder
    >>> photo = np.array(Image.open(PHOTO_DIR / "skimage_rocket.jpg"))  # or a path, a Pillow image, a tensor
    >>> scratched = cv2.line(photo.copy(), (10, 60), (200, 90), (240, 240, 240), 3)  # a light scratch
    >>> result = inpainter(scratched)                # blind: no mask needed
    >>> result.output.shape, result.mask.shape
    (torch.Size([3, 342, 512]), torch.Size([1, 342, 512]))
    >>> damage = np.abs(scratched.astype(int) - photo).sum(axis=2) > 30
    >>> bool((result.mask[0].numpy()[damage] > 0.5).mean() > 0.9)  # the scratch is found ...
    True
    >>> error = lambda image: np.abs(image.astype(float) - photo)[damage].mean()
    >>> repaired = (result.output.permute(1, 2, 0).numpy() * 255).round()
    >>> bool(error(repaired) < error(scratched) / 3)  # ... and repaired
    True
    """

    def __init__(
        self, pipeline: BlindPipeline, settings: InpaintSettings | None = None, model_path: Path | None = None
    ):
        self.torch_pipeline = pipeline.eval().requires_grad_(False)
        self.pipeline = self.torch_pipeline  # what runs: the PyTorch pipeline, or its ONNX Runtime twin
        self.model_path = model_path  # where the backend looks for exported graphs
        self.device = next(pipeline.parameters()).device
        self._onnx_pipeline: BlindPipeline | None = None
        self.settings = settings or InpaintSettings()

    @property
    def settings(self) -> InpaintSettings:
        return self._settings

    @settings.setter
    def settings(self, value: InpaintSettings) -> None:
        for name in STAGES:
            fmt = torch.channels_last if name in value.channels_last else torch.contiguous_format
            if getattr(self.torch_pipeline, name) is not None:
                getattr(self.torch_pipeline, name).to(memory_format=fmt)
        _check_backend_device(value.backend, self.device)
        if value.backend == "onnxruntime":
            if self._onnx_pipeline is None:
                self._onnx_pipeline = self._build_onnx_pipeline()
            self.pipeline = self._onnx_pipeline
        else:
            self.pipeline = self.torch_pipeline
        self._settings = value

    def _build_onnx_pipeline(self) -> BlindPipeline:
        """The pipeline with the generators of :data:`~pipeline.inference.onnx.EXPORTED` in ONNX
        Runtime: copies of those stage modules whose ``generator`` is an
        :class:`~pipeline.inference.onnx.OnnxGenerator`; the other stages shared."""
        from pipeline.inference.onnx import EXPORTED, onnx_generators

        source = self.torch_pipeline
        missing = [name for name in EXPORTED if getattr(source, name) is None]
        if missing:
            raise ConfigError(f"backend=onnxruntime needs the {', '.join(missing)} stage(s), which this model lacks")
        exported = {name: getattr(source, name) for name in EXPORTED}
        generators = onnx_generators(exported, self.model_path, torch.get_num_threads())
        stages = {}
        for name in STAGES:
            stage = getattr(source, name)
            if name in generators:
                generator, stage.generator = stage.generator, None  # not copied
                try:
                    stage_copy = copy.deepcopy(stage)
                finally:
                    stage.generator = generator
                stage_copy.generator = generators[name]
                stage = stage_copy
            stages[name] = stage
        return BlindPipeline(**stages, **source.settings()).eval().requires_grad_(False)

    @classmethod
    def from_pretrained(
        cls, path=None, settings: InpaintSettings | None = None, device="cpu", **pipeline_settings
    ) -> BlindInpainter:
        """Load a model written by :mod:`pipeline.export` (``.safetensors``), a joint checkpoint
        (``.ckpt``, read with ``weights_only=True``) or a training run folder; without ``path`` the
        model that ships with the package (:data:`pipeline.model.SHIPPED_MODEL`).
        ``pipeline_settings`` (e.g. ``hole_threshold=0.6``; None keeps the stored value) override
        the model's."""
        path = model_path(path)
        pipeline = load_pipeline(path, **pipeline_settings).to(device)
        return cls(pipeline, settings, model_path=path)

    def with_fill_stage(self, stage: torch.nn.Module) -> BlindInpainter:
        """An inpainter that finds the mask as this one does (its MPN and mask rule) and fills it
        with ``stage``, another system's trained inpainting stage (:func:`~pipeline.methods.fill_stages`,
        e.g. from :func:`~pipeline.model.load_fill_stage`), in place of the EPN and the IPN."""
        source = self.torch_pipeline
        pipeline = BlindPipeline(mpn=source.mpn, ipn=stage.to(self.device).eval(), **source.settings())
        return BlindInpainter(pipeline, replace(self.settings, backend="torch"))

    def to(self, device) -> BlindInpainter:
        device = torch.device(device)
        _check_backend_device(self.settings.backend, device)
        self.torch_pipeline.to(device)
        self.device = device
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
        edge = self.pipeline.corrupted_edge(corrupted)
        if mode == "denoise":
            denoised = self.pipeline(corrupted, edge, None, mode)
            damaged = denoised["mask"].flatten(1).amax(dim=1) > 0
            return {**{key: denoised[key] for key in ("mask", "edges", "refined", "output")}, "damaged": damaged}
        corrupted, edge, weight = self.pipeline.denoise_first(corrupted, edge, mode)
        found = self.pipeline.masks(corrupted, mask, mode)
        hole = found["mask"]
        damaged = hole.flatten(1).amax(dim=1) > 0
        outputs = {"mask": hole, "edges": edge, "refined": corrupted, "output": corrupted, "damaged": damaged}
        if weight is not None:  # blind mode denoised these first: their mask says so
            denoised = weight.flatten(1).amax(1) > 0
            outputs = {**outputs, "mask": torch.maximum(hole, weight), "damaged": damaged | denoised}
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

    def strategy(self, height: int, width: int, mode: str) -> str:
        """How a photo of ``(height, width)`` is repaired in ``mode``: the one place this is decided.

        - ``whole``: within ``working_size``, the pipeline runs on the photo itself (batches of
          same-size photos together, :meth:`inpaint`);
        - above it, one photo at a time in its own pixels (:mod:`pipeline.inference.large`):
          ``denoise`` (denoise mode at full resolution, :func:`~pipeline.inference.large.denoise_full`),
          else the ``large`` setting: ``crop`` (:func:`~pipeline.inference.large.repair_in_crops`)
          or ``resize`` (:func:`~pipeline.inference.large.repair_resized`)."""
        if working_shape(height, width, self.settings.working_size) == (height, width):
            return "whole"
        return "denoise" if mode == "denoise" else self.settings.large

    @torch.inference_mode()
    def inpaint(
        self, corrupted: torch.Tensor, mask: torch.Tensor | None = None, mode: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Repair a batch ``corrupted`` ``(B, 3, H, W)`` in [0, 1]. ``mask`` ``(B, 1, H, W)``
        (1 = hole) is needed for ``mode="masked"`` and ignored otherwise. Returns ``output``
        ``(B, 3, H, W)``, ``mask`` and ``edges`` ``(B, 1, H, W)`` at the input's resolution.
        Photos above the working size go through :meth:`inpaint_array` one by one."""
        mode = self._mode(mode)
        if corrupted.dim() != 4 or corrupted.shape[1] != 3:
            raise ValueError(f"corrupted must be (B, 3, H, W), got {tuple(corrupted.shape)}")
        full = corrupted.to(self.device, torch.float32)
        full_mask = None if mask is None or mode != "masked" else mask.to(self.device, torch.float32)
        if self.strategy(*full.shape[-2:], mode) == "whole":
            return self._whole(full, full_mask, mode)
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

        Above ``working_size`` the full-resolution work runs in row strips (:mod:`pipeline.inference.large`):
        memory is the photo, its result and the networks at working size, whatever the photo's
        size."""
        mode = self._mode(mode)
        strategy = self.strategy(*image.shape[:2], mode)
        if strategy == "denoise":
            return large.denoise_full(self, image, in_place, intermediates)
        if strategy == "crop":
            return large.repair_in_crops(self, image, mask, mode, in_place, intermediates)
        if strategy == "resize":
            return large.repair_resized(self, image, mask, mode, in_place, intermediates)
        x = torch.from_numpy(to_float(image)).permute(2, 0, 1)[None].to(self.device)
        m = None if mask is None or mode != "masked" else torch.from_numpy(np.asarray(mask, np.float32))[None, None]
        result = self._whole(x, None if m is None else m.to(self.device), mode)
        out = {}
        for key in ("output", "mask", "edges"):
            values = result[key][0].permute(1, 2, 0).cpu().numpy()
            values = values if key == "output" else values[..., 0]  # (H, W, 3) and (H, W)
            out[key] = to_pixels(values, image.dtype)
        if in_place and image.flags.writeable:
            image[...] = out["output"]
            out["output"] = image
        return out if intermediates else {**out, "mask": None, "edges": None}

    def _mode(self, mode: str | None) -> str:
        mode = mode or self.settings.mode
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {MODES}")
        return mode

    def _whole(self, corrupted: torch.Tensor, mask: torch.Tensor | None, mode: str) -> dict[str, torch.Tensor]:
        """The ``whole`` strategy on a batch ``(B, 3, H, W)`` on the device: ``output``, ``mask``, ``edges``."""
        outputs = self.run_pipeline(corrupted, mask, mode)
        return {"output": outputs["output"].clamp(0, 1), "mask": outputs["mask"], "edges": outputs["edges"]}

    def mask_shape(self, height: int, width: int) -> tuple[int, int]:
        """The ``(h, w)`` the damage in a photo of ``(height, width)`` is looked for at: the
        working size for photos within it and for ``large=resize``, else ``mask_size``."""
        small = working_shape(height, width, self.settings.working_size)
        if small == (height, width) or self.settings.large == "resize":
            return small
        return working_shape(height, width, self.settings.mask_size or max(height, width))

    def found_masks(self, corrupted: torch.Tensor, mode: str) -> dict[str, torch.Tensor]:
        """The MPN's ``predicted_mask`` and the ``mask`` of the rule (``mode`` blind or denoise) for
        one photo ``(1, 3, h, w)``, ``(1, 1, h, w)`` each. Above the working size the MPN looks
        in overlapping tiles of that size (:meth:`~pipeline.model.BlindPipeline.predict_mask`),
        where thin damage stays thicker than a pixel; with ``two_scale`` also once over the whole
        photo at the working size, where damage that is large at this resolution (a pasted photo,
        thick paint) looks as it did in training. That second view keeps only what is at least
        :data:`COARSE_OPENING` px wide there (a grey opening: thin damage, upsampled, would smear
        into bands the tiles draw sharply); m̂ is the larger of the two (the second upsampled),
        the rule on the whole."""
        tile = self.settings.working_size
        predicted = self.pipeline.predict_mask(corrupted, tile, min(TILE_MARGIN, tile // 4))
        h, w = corrupted.shape[-2:]
        view = working_shape(h, w, tile)
        if view != (h, w) and self.settings.two_scale:
            small = F.interpolate(corrupted, size=view, mode="bilinear", antialias=True, align_corners=False)
            coarse = opened(self.pipeline.predict_mask(small), COARSE_OPENING)
            coarse = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
            predicted = torch.maximum(predicted, coarse)
        return {"predicted_mask": predicted, "mask": self.pipeline.mask_rule(predicted, mode)}

    @torch.inference_mode()
    def mask_array(
        self, image: np.ndarray, mode: str = "blind", size: tuple[int, int] | None = None
    ) -> dict[str, np.ndarray]:
        """The damage found in one photo ``(H, W, 3)`` (uint8, uint16, or float32 in [0, 1]): the
        ``mask`` the pipeline repairs (``mode`` blind or denoise) and the MPN's ``predicted_mask``,
        each ``(h, w)`` float32 in [0, 1] at ``size`` ``(h, w)`` (default the photo's). The MPN runs
        at :meth:`mask_shape`, as for the repair, and its masks are resized bilinearly, as the
        repair resizes them."""
        height, width = image.shape[:2]
        h, w = size or (height, width)
        small = large.mask_grid(self, image)
        small_hw = tuple(small.shape[-2:])
        masks = self.found_masks(small, mode)
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
