"""Photos above the working size, in bounded memory: resampling and pasting back in row strips.

A photo larger than ``working_size`` is repaired at that size and only the fill is pasted back
(IOPaint's "resize" strategy, :mod:`pipeline.inference`). Done on whole full-resolution float
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
    mask: np.ndarray | None = None,
    in_place: bool = False,
    intermediates: bool = True,
) -> dict[str, np.ndarray | None]:
    """Composite the working-size results ``small`` (``mask``, ``refined``, ``edges``, each
    ``(1, C, h, w)``) into the full-resolution ``image`` ``(H, W, 3)`` (uint8, uint16 or float in
    [0, 1]): ``(1 − m)·x + m·up(refined)`` with ``m`` the given full-resolution ``mask`` (masked
    mode; nonzero = hole) or ``up(mask)``. Returns ``output`` (``image``'s dtype; ``image`` itself
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
            m = torch.from_numpy(mask[r0:r1].astype(np.float32)).clamp_(0, 1)
        else:
            m = soft_rows[r0:r1] @ soft
        out = compose(_rows(image, r0, r1), fill_rows[r0:r1] @ fill, m[None])
        store(output, r0, r1, out.permute(1, 2, 0))
        if intermediates:
            store(full_mask, r0, r1, m)
            store(full_edges, r0, r1, edge_rows[r0:r1] @ edges)
    return {"output": output, "mask": full_mask, "edges": full_edges}
