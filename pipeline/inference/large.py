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

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from common.ops import compose
from data.io import to_float, to_pixels

STRIP_ROWS = 256
_CHUNK = 256  # one-hot rows resampled at once when building a matrix


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


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, margin: int) -> torch.Tensor:
    """``fn`` (a fully convolutional map ``(1, C, h, w) -> (1, K, h, w)``) over ``x`` in tiles of at
    most ``tile`` px that overlap by ``2·margin``: each tile's output is kept only in its centre
    (its ``margin`` px next to another tile are dropped), so every output pixel has at least
    ``margin`` px of context on each side where the image has them (U-Net's overlap-tile)."""
    if tile <= 2 * margin:
        raise ValueError(f"a tile of {tile} px leaves nothing inside a margin of {margin} px")
    height, width = x.shape[-2:]
    if max(height, width) <= tile:
        return fn(x)
    step = tile - 2 * margin
    out = None
    for y0 in range(0, height, step):
        y1 = min(height, y0 + step)
        ty0, ty1 = max(0, y0 - margin), min(height, y1 + margin)
        for x0 in range(0, width, step):
            x1 = min(width, x0 + step)
            tx0, tx1 = max(0, x0 - margin), min(width, x1 + margin)
            piece = fn(x[..., ty0:ty1, tx0:tx1])
            if out is None:
                out = piece.new_empty(*piece.shape[:2], height, width)
            out[..., y0:y1, x0:x1] = piece[..., y0 - ty0 : y1 - ty0, x0 - tx0 : x1 - tx0]
    return out


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
