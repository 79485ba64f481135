"""Photos above the working size, in bounded memory.

Two strategies (:class:`~pipeline.inference.inpainter.InpaintSettings` ``large``), as IOPaint names them:

- ``crop``: the damage is found on the photo at ``mask_size`` (the MPN :func:`tiled` over it with
  overlap above the working size); the EPN and the IPN then run only on crops around the damaged
  regions (:func:`damage_boxes`), at full resolution where a crop fits the working size, and only
  the hole is pasted back. A photo with no damage costs the mask alone.
- ``resize``: the whole photo is repaired at the working size and only the fill is pasted back;
  a crop larger than the working size is treated so too.

Resizing and pasting back run in row strips. Done on whole full-resolution float
tensors, that costs ~12 bytes per pixel per copy (a 9400² PNG took 7.3 GB). Here the photo stays
in its own integer pixels (3 or 6 bytes per pixel) and every full-resolution step runs on strips of
:data:`STRIP_ROWS` rows:

- the downscale is PyTorch's antialiased bilinear resize, written as the two matrices it is
  (resizing is separable: ``small = R_y · X · R_xᵀ``, per channel), accumulated strip by strip;
- the upsampled mask (bilinear), fill (bicubic) and edges (nearest) of each output strip are rows of
  ``R_y · small · R_xᵀ``, composited ``(1 − m)·x + m·fill`` into the output strip at once.

The matrices are ``F.interpolate`` applied to one-hot rows, so the results are those of the
whole-tensor ``F.interpolate`` calls up to float rounding (tested). Peak memory: the photo, its
result (or the photo itself, ``in_place``), one strip's floats and the networks at working size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common.denoise import classical_denoise
from common.errors import ConfigError
from common.ops import compose
from data.io import to_float, to_pixels

if TYPE_CHECKING:
    from pipeline.inference.inpainter import BlindInpainter

STRIP_ROWS = 256
_CHUNK = 256  # one-hot rows resampled at once when building a matrix


def working_shape(height: int, width: int, working_size: int) -> tuple[int, int]:
    """The ``(h, w)`` an image is processed at: unchanged up to ``working_size``, else the long
    side scaled down to it (aspect kept).

    >>> working_shape(300, 400, 512), working_shape(3000, 4000, 512)
    ((300, 400), (384, 512))
    """
    scale = working_size / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_matrix(n_in: int, n_out: int, mode: str, antialias: bool = False) -> torch.Tensor:
    """The ``(n_out, n_in)`` matrix of ``F.interpolate``'s resampling along one axis from ``n_in``
    to ``n_out`` samples (``mode`` bilinear, bicubic or nearest; ``align_corners=False``): the
    resize of one-hot columns along the height, the width kept (at least 2 wide: PyTorch's
    antialiased kernel treats a width of 1 differently)."""
    options = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    columns = []
    for start in range(0, n_in, _CHUNK):
        count = min(_CHUNK, n_in - start)
        width = max(count, 2)
        one_hot = torch.zeros(1, 1, n_in, width)
        one_hot[0, 0, torch.arange(start, start + count), torch.arange(count)] = 1.0
        columns.append(F.interpolate(one_hot, size=(n_out, width), mode=mode, **options)[0, 0, :, :count])
    return torch.cat(columns, dim=1).contiguous()


def _rows(array: np.ndarray, r0: int, r1: int) -> torch.Tensor:
    """Rows ``r0:r1`` of ``(H, W, C)`` pixels as ``(C, R, W)`` float32 in [0, 1]."""
    return torch.from_numpy(to_float(array[r0:r1])).permute(2, 0, 1)


def downscale(image: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """``(H, W, 3)`` pixels -> ``(1, 3, h, w)`` float32, as ``F.interpolate(x, size, mode="bilinear",
    antialias=True)`` of the whole float image, one strip of rows at a time."""
    (height, width), (h, w) = image.shape[:2], size
    ry, rx_t = resize_matrix(height, h, "bilinear", antialias=True), resize_matrix(width, w, "bilinear", True).T
    small = torch.zeros(3, h, w)
    for r0 in range(0, height, STRIP_ROWS):
        r1 = min(height, r0 + STRIP_ROWS)
        small += ry[:, r0:r1] @ (_rows(image, r0, r1) @ rx_t)
    return small[None]


def any_pool(mask: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """A full-resolution hole ``(H, W)`` (nonzero = hole) -> ``(1, 1, h, w)`` in {0, 1}: a cell is
    a hole where any of its pixels is (``F.adaptive_max_pool2d``'s cells), so no hole is lost."""
    (height, width), (h, w) = mask.shape, size
    hole = mask.astype(bool, copy=False)
    rows = np.stack([hole[(i * height) // h : -((-(i + 1) * height) // h)].any(axis=0) for i in range(h)])
    cells = np.stack([rows[:, (j * width) // w : -((-(j + 1) * width) // w)].any(axis=1) for j in range(w)], axis=1)
    return torch.from_numpy(cells.astype(np.float32))[None, None]


def paste_back(
    image: np.ndarray,
    small: dict[str, torch.Tensor],
    mask: np.ndarray | Callable[[int, int], np.ndarray] | None = None,
    in_place: bool = False,
    intermediates: bool = True,
) -> dict[str, np.ndarray | None]:
    """Composite the working-size results ``small`` (``mask``, ``refined``, ``edges``, each
    ``(1, C, h, w)``) into the full-resolution ``image`` ``(H, W, 3)`` (uint8, uint16 or float in
    [0, 1]): ``(1 − m)·x + m·up(refined)`` with ``m`` the given full-resolution ``mask`` (an
    ``(H, W)`` array in [0, 1], nonzero = hole, or a function giving its rows ``r0:r1``) or
    ``up(mask)``. Returns ``output`` (``image``'s dtype; ``image`` itself
    when ``in_place`` and it is writable), and with ``intermediates`` the full-resolution ``mask`` and ``edges``
    ``(H, W)`` in ``image``'s dtype and scale (else None)."""
    height, width = image.shape[:2]
    h, w = small["refined"].shape[-2:]
    fill = small["refined"][0].float().cpu() @ resize_matrix(w, width, "bicubic").T  # (3, h, W)
    fill_rows = resize_matrix(h, height, "bicubic")
    soft = small["mask"][0, 0].float().cpu() @ resize_matrix(w, width, "bilinear").T  # (h, W)
    soft_rows = resize_matrix(h, height, "bilinear")
    edges = small["edges"][0, 0].float().cpu() @ resize_matrix(w, width, "nearest").T
    edge_rows = resize_matrix(h, height, "nearest")

    output = image if in_place and image.flags.writeable else np.empty_like(image)
    full_mask = np.empty((height, width), image.dtype) if intermediates else None
    full_edges = np.empty((height, width), image.dtype) if intermediates else None

    def store(target: np.ndarray, r0: int, r1: int, values: torch.Tensor) -> None:
        target[r0:r1] = to_pixels(values.numpy(), image.dtype)

    for r0 in range(0, height, STRIP_ROWS):
        r1 = min(height, r0 + STRIP_ROWS)
        if mask is not None:
            rows = mask(r0, r1) if callable(mask) else mask[r0:r1]
            m = torch.from_numpy(np.asarray(rows, np.float32)).clamp_(0, 1)
        else:
            m = soft_rows[r0:r1] @ soft
        out = compose(_rows(image, r0, r1), fill_rows[r0:r1] @ fill, m[None])
        store(output, r0, r1, out.permute(1, 2, 0))
        if intermediates:
            store(full_mask, r0, r1, m)
            store(full_edges, r0, r1, edge_rows[r0:r1] @ edges)
    return {"output": output, "mask": full_mask, "edges": full_edges}


# -- the crop strategy ---------------------------------------------------------------------------

Box = tuple[int, int, int, int]  # rows y0:y1, columns x0:x1


def damage_boxes(found: np.ndarray, full: tuple[int, int], margin: int) -> list[Box]:
    """The crops to repair: ``found`` ``(h, w)`` bool (where the mask is nonzero, on a grid laid
    over the photo of size ``full`` ``(H, W)``) -> boxes ``(y0, y1, x0, x1)`` in full-resolution
    pixels around each connected region, grown by ``margin`` px of context on each side (clipped
    to the photo) and merged where they overlap, so no two crops share a pixel."""
    (h, w), (height, width) = found.shape, full
    count, _, stats, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, bw, bh, _ in stats[1:count]:
        # the grid cells' full-resolution extent, plus one cell: bilinear upsampling spreads a cell
        y0, y1 = ((y - 1) * height) // h, -((-(y + bh + 1) * height) // h)
        x0, x1 = ((x - 1) * width) // w, -((-(x + bw + 1) * width) // w)
        box = (max(0, y0 - margin), min(height, y1 + margin), max(0, x0 - margin), min(width, x1 + margin))
        boxes.append(tuple(int(v) for v in box))
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(boxes)


class Upsampled:
    """A small map ``(h, w)`` bilinearly upsampled to ``full`` ``(H, W)`` (``F.interpolate``,
    ``align_corners=False``), computed only for the region asked for: :meth:`region` gives any box
    of the full-resolution map without making the whole of it."""

    def __init__(self, small: torch.Tensor, full: tuple[int, int]):
        h, w = small.shape
        self.small = small.float().cpu()
        self.same = (h, w) == tuple(full)  # nothing to upsample (the mask was found at full size)
        self.rows = None if self.same else resize_matrix(h, full[0], "bilinear")
        self.columns = None if self.same else resize_matrix(w, full[1], "bilinear")

    def region(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1`` of the full-resolution map, ``(y1 − y0, x1 − x0)`` float32."""
        if self.same:
            return self.small[y0:y1, x0:x1].numpy().copy()
        return (self.rows[y0:y1] @ self.small @ self.columns[x0:x1].T).numpy()

    def resampled(self, box: Box, size: tuple[int, int]) -> torch.Tensor:
        """The map over ``box`` resampled to ``size`` ``(h, w)`` (the upsampling, then an
        antialiased bilinear downscale, composed as matrices) -> ``(1, 1, h, w)``."""
        y0, y1, x0, x1 = box
        if self.same:
            crop = self.small[None, None, y0:y1, x0:x1]
            return F.interpolate(crop, size=size, mode="bilinear", align_corners=False, antialias=True)
        down_rows = resize_matrix(y1 - y0, size[0], "bilinear", antialias=True)
        down_columns = resize_matrix(x1 - x0, size[1], "bilinear", antialias=True)
        rows, columns = down_rows @ self.rows[y0:y1], down_columns @ self.columns[x0:x1]
        return (rows @ self.small @ columns.T)[None, None]


# -- the strategies above the working size (BlindInpainter.strategy chooses) -----------------------


def mask_grid(inpainter: BlindInpainter, image: np.ndarray) -> torch.Tensor:
    """The photo ``(H, W, 3)`` at the size its damage is looked for at
    (:meth:`~pipeline.inference.inpainter.BlindInpainter.mask_shape`), ``(1, 3, h, w)`` float32 on
    the inpainter's device."""
    height, width = image.shape[:2]
    shape = inpainter.mask_shape(height, width)
    if shape == (height, width):
        return torch.from_numpy(to_float(image)).permute(2, 0, 1)[None].to(inpainter.device)
    return downscale(image, shape).to(inpainter.device)


def repair_in_crops(
    inpainter: BlindInpainter,
    image: np.ndarray,
    mask: np.ndarray | None,
    mode: str,
    in_place: bool,
    intermediates: bool,
) -> dict[str, np.ndarray | None]:
    """``large=crop`` for one photo above the working size: the damage found on the photo at
    ``mask_size`` (:meth:`~pipeline.inference.inpainter.BlindInpainter.found_masks`; in masked
    mode the given hole), then the EPN and IPN on crops around each damaged region
    (:func:`damage_boxes`), at full resolution where a crop fits the working size (else resized,
    the fill pasted back); only the hole is written. Returns as
    :meth:`~pipeline.inference.inpainter.BlindInpainter.inpaint_array`."""
    height, width = image.shape[:2]
    if mode == "masked" and (mask is None or np.shape(mask) != (height, width)):
        given = "no mask" if mask is None else f"a mask of {np.shape(mask)}"
        raise ConfigError(f"mode=masked needs a mask of the photo's size {(height, width)}, got {given}")
    working = inpainter.settings.working_size
    output = image if in_place and image.flags.writeable else image.copy()
    small = mask_grid(inpainter, image)
    if mode == "masked":
        hole = np.asarray(mask)
        found = any_pool(hole, small.shape[-2:])[0, 0].numpy() > 0

        def region(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
            return np.clip(hole[y0:y1, x0:x1].astype(np.float32), 0, 1)

        def resampled(box, size) -> torch.Tensor:
            return any_pool(hole[box[0] : box[1], box[2] : box[3]], size)
    else:
        upsampled = Upsampled(inpainter.found_masks(small, mode)["mask"][0, 0], (height, width))
        found = upsampled.small.numpy() > 0
        region, resampled = upsampled.region, upsampled.resampled
    crop_edges = []
    for box in damage_boxes(found, (height, width), inpainter.settings.crop_margin):
        y0, y1, x0, x1 = box
        crop = output[y0:y1, x0:x1]  # still the original: crops do not overlap
        if max(y1 - y0, x1 - x0) <= working:  # at full resolution; only the hole is written
            m = region(*box)
            x = torch.from_numpy(to_float(crop)).permute(2, 0, 1)[None].to(inpainter.device)
            repaired = inpainter.run_pipeline(x, torch.from_numpy(m)[None, None].to(inpainter.device), "masked")
            pixels = to_pixels(repaired["output"][0].permute(1, 2, 0).float().cpu().numpy(), image.dtype)
            inside = m > 0
            crop[inside] = pixels[inside]
            edges = repaired["edges"][0, 0].float().cpu().numpy() if intermediates else None
        else:  # larger than the working size: repaired there, the fill pasted back
            size = working_shape(y1 - y0, x1 - x0, working)
            x, m = downscale(crop, size).to(inpainter.device), resampled(box, size).to(inpainter.device)
            repaired = inpainter.run_pipeline(x, m, "masked")
            rows = lambda r0, r1, box=box: region(box[0] + r0, box[0] + r1, box[2], box[3])  # noqa: E731
            pasted = paste_back(crop, repaired, rows, in_place=True, intermediates=intermediates)
            edges = to_float(pasted["edges"]) if intermediates else None
        if intermediates:
            crop_edges.append((box, edges))
    if not intermediates:
        return {"output": output, "mask": None, "edges": None}
    full_mask, full_edges = _full_maps(inpainter, image, small, region, crop_edges)
    return {"output": output, "mask": full_mask, "edges": full_edges}


def repair_resized(
    inpainter: BlindInpainter,
    image: np.ndarray,
    mask: np.ndarray | None,
    mode: str,
    in_place: bool,
    intermediates: bool,
) -> dict[str, np.ndarray | None]:
    """``large=resize`` for one photo above the working size: the whole photo repaired at the
    working size, and only the fill pasted back (:func:`paste_back`)."""
    size = working_shape(*image.shape[:2], inpainter.settings.working_size)
    small = downscale(image, size).to(inpainter.device)
    hole = None if mask is None or mode != "masked" else np.asarray(mask)
    small_mask = None if hole is None else any_pool(hole, size).to(inpainter.device)
    outputs = inpainter.run_pipeline(small, small_mask, mode)
    if not intermediates and not outputs["damaged"].any():  # nothing to paste back
        output = image if in_place and image.flags.writeable else image.copy()
        return {"output": output, "mask": None, "edges": None}
    return paste_back(image, outputs, hole, in_place, intermediates)


def denoise_full(
    inpainter: BlindInpainter, image: np.ndarray, in_place: bool, intermediates: bool
) -> dict[str, np.ndarray | None]:
    """``denoise`` mode for one photo above the working size, at full resolution: the MPN's m̂
    found at the mask size (:meth:`~pipeline.inference.inpainter.BlindInpainter.found_masks`) and
    upsampled, the classical denoiser on the whole photo, ``(1 − w)·y + w·D(y)`` in strips of rows
    (w: :meth:`~pipeline.model.BlindPipeline.denoise_weight`). A photo the denoiser finds clean
    comes back as it is. The edges reported are the photo's Canny edges, as the
    working-size path reports them."""
    height, width = image.shape[:2]
    photo = to_float(image)
    denoised, impulses = classical_denoise(photo, impulses=True)
    output = image if in_place and image.flags.writeable else image.copy()
    full_mask = np.zeros((height, width), image.dtype) if intermediates else None
    if not np.array_equal(denoised, photo):
        upsampled = Upsampled(
            inpainter.found_masks(mask_grid(inpainter, image), "denoise")["mask"][0, 0], (height, width)
        )
        for r0 in range(0, height, STRIP_ROWS):
            r1 = min(height, r0 + STRIP_ROWS)
            predicted = torch.from_numpy(upsampled.region(r0, r1, 0, width))
            weight = inpainter.pipeline.denoise_weight(predicted, torch.from_numpy(impulses[r0:r1]))
            m = weight.numpy()[..., None]
            output[r0:r1] = to_pixels(photo[r0:r1] + m * (denoised[r0:r1] - photo[r0:r1]), image.dtype)
            if intermediates:
                full_mask[r0:r1] = to_pixels(m[..., 0], image.dtype)
    if not intermediates:
        return {"output": output, "mask": None, "edges": None}
    edges = inpainter.pipeline.corrupted_edge(torch.from_numpy(photo).permute(2, 0, 1)[None])[0, 0].numpy()
    return {"output": output, "mask": full_mask, "edges": to_pixels(edges, image.dtype)}


def _full_maps(inpainter: BlindInpainter, image, small, region, crop_edges) -> tuple[np.ndarray, np.ndarray]:
    """``large=crop``'s intermediates at full resolution, in ``image``'s dtype and scale: the
    mask repaired, and the edges (each crop's guide; elsewhere the Canny edges of the photo at
    the mask size, nearest-upsampled)."""
    height, width = image.shape[:2]
    h, w = small.shape[-2:]
    coarse = inpainter.pipeline.corrupted_edge(small)[0, 0].cpu()
    rows, columns = resize_matrix(h, height, "nearest"), resize_matrix(w, width, "nearest")
    coarse = coarse @ columns.T
    full_mask = np.empty((height, width), image.dtype)
    full_edges = np.empty((height, width), image.dtype)
    for r0 in range(0, height, STRIP_ROWS):
        r1 = min(height, r0 + STRIP_ROWS)
        full_mask[r0:r1] = to_pixels(region(r0, r1, 0, width), image.dtype)
        full_edges[r0:r1] = to_pixels((rows[r0:r1] @ coarse).numpy(), image.dtype)
    for (y0, y1, x0, x1), edges in crop_edges:
        full_edges[y0:y1, x0:x1] = to_pixels(edges, image.dtype)
    return full_mask, full_edges
