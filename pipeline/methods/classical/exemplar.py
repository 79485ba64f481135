"""Exemplar-based inpainting: A. Criminisi, P. Pérez, K. Toyama, "Region Filling and Object Removal
by Exemplar-Based Image Inpainting", IEEE Trans. Image Processing 13(9), 2004.

Greedy: repeatedly pick the fill-front pixel with the highest priority P = C * D, find the fully
known source patch that best matches (SSD over the known pixels) the patch around it, and copy
that source patch into the still-unknown part of the target patch.

- confidence C(p): sum of the confidences in the patch around p / patch area (known pixels start
  at 1, holes at 0; copied pixels inherit C(p));
- data term D(p) = |isophote(p) . n_p| / alpha, alpha = 1 for [0, 1] images. The isophote at a front
  pixel is not defined (its neighbours are unknown), so we take the root mean square of
  |isophote . n_p| over the known pixels of the patch (via the windowed structure tensor), which
  is vectorised and, unlike a mean isophote, does not cancel across thin lines;
- the SSD of every candidate source position is computed at once with two correlations
  (``cv2.matchTemplate``; see ``_MaskedSSD``); ties go to the nearest source.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.classical import keep_known, prepare_inputs, telea

_EPS_DATA = 1e-3  # keeps the confidence deciding the order where the image is flat (D = 0)
_TIE_PER_PIXEL = 1e-5


def _source_positions(hole: np.ndarray, patch_size: int) -> np.ndarray:
    """Bool ``(H - p + 1, W - p + 1)``: True where the ``p x p`` patch with that top-left corner is
    inside the image and holds no hole pixel (the source region of the paper)."""
    counts = cv2.boxFilter(
        hole.astype(np.float32),
        -1,
        (patch_size, patch_size),
        normalize=False,
        anchor=(0, 0),
        borderType=cv2.BORDER_CONSTANT,
    )
    return counts[: hole.shape[0] - patch_size + 1, : hole.shape[1] - patch_size + 1] < 0.5


class _MaskedSSD:
    """SSD between one masked template and every ``p x p`` window of a fixed ``(H, W, 3)`` image.

    sum_c sum M (T_c - I_c)^2 = sum M T^2 - 2 corr(I, M T) + corr(sum_c I_c^2, M). The 3-channel
    correlation runs as one single-channel correlation on the ``(H, 3W)`` interleaved image
    (every third output column lines the channels up), which is ~3x faster than cv2's own masked
    ``TM_SQDIFF`` on 3-channel input."""

    def __init__(self, image: np.ndarray):
        self.flat = np.ascontiguousarray(image.reshape(image.shape[0], -1))
        self.energy = np.ascontiguousarray((image**2).sum(axis=2))

    def __call__(self, template: np.ndarray, weight: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        """``template`` ``(p, p, 3)``, ``weight`` ``(p, p)`` in {0, 1}; searches the windows whose
        top-left corners lie in ``rows`` x ``cols``. Returns ``(len(rows), len(cols))``."""
        p = template.shape[0]
        masked = (template * weight[..., None]).astype(np.float32)
        y0, y1 = rows.start, rows.stop + p - 1
        x0, x1 = cols.start, cols.stop + p - 1
        cross = cv2.matchTemplate(self.flat[y0:y1, 3 * x0 : 3 * x1], masked.reshape(p, 3 * p), cv2.TM_CCORR)[:, ::3]
        energy = cv2.matchTemplate(self.energy[y0:y1, x0:x1], weight.astype(np.float32), cv2.TM_CCORR)
        return float((masked * template).sum()) - 2.0 * cross + energy


def _fill_front(hole: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Bool: hole pixels with a known 8-neighbour (the boundary delta-Omega of the hole)."""
    return hole & (cv2.dilate(known.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)


class _PriorityFields:
    """Per-pixel ingredients of P = C * D over the padded ``(Hp, Wp)`` grid, kept up to date
    locally: a fill only changes them near the filled patch, so recomputing the whole grid at
    every step (hundreds of steps) would dominate the run time."""

    def __init__(self, grey: np.ndarray, known: np.ndarray, confidence: np.ndarray, patch_size: int):
        self.grey, self.known, self.confidence, self.patch_size = grey, known, confidence, patch_size
        self.names = ("conf", "nx", "ny", "jxx", "jxy", "jyy", "count")
        for name, value in zip(self.names, self._compute(slice(None), slice(None))):
            setattr(self, name, value)

    def _compute(self, rows: slice, cols: slice) -> tuple[np.ndarray, ...]:
        size = (self.patch_size, self.patch_size)
        known = self.known[rows, cols].astype(np.float32)
        conf = cv2.boxFilter(self.confidence[rows, cols], -1, size, borderType=cv2.BORDER_CONSTANT)
        # normal to the front: gradient of the (slightly smoothed) known-region indicator
        region = cv2.GaussianBlur(known, (5, 5), 1.0)
        nx = cv2.Sobel(region, cv2.CV_32F, 1, 0, ksize=3)
        ny = cv2.Sobel(region, cv2.CV_32F, 0, 1, ksize=3)
        # image gradient, only where the whole 3x3 stencil is known
        stencil = cv2.erode(known, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
        grey = self.grey[rows, cols]
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, scale=0.125) * stencil
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, scale=0.125) * stencil
        sums = (
            cv2.boxFilter(g, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)
            for g in (gx * gx, gx * gy, gy * gy, stencil)
        )
        return (conf, nx, ny, *sums)

    def update(self, top: int, left: int) -> None:
        """The patch with top-left ``(top, left)`` was just filled: refresh what it influences."""
        reach = self.patch_size // 2 + 3  # box filter half-width + Gaussian/Sobel/erode stencils
        height, width = self.known.shape
        out_y0, out_x0 = max(top - reach, 0), max(left - reach, 0)
        out_y1 = min(top + self.patch_size + reach, height)
        out_x1 = min(left + self.patch_size + reach, width)
        in_y0, in_x0 = max(out_y0 - reach, 0), max(out_x0 - reach, 0)
        in_y1, in_x1 = min(out_y1 + reach, height), min(out_x1 + reach, width)
        inner = (slice(out_y0 - in_y0, out_y1 - in_y0), slice(out_x0 - in_x0, out_x1 - in_x0))
        for name, value in zip(self.names, self._compute(slice(in_y0, in_y1), slice(in_x0, in_x1))):
            getattr(self, name)[out_y0:out_y1, out_x0:out_x1] = value[inner]

    def priorities(self, fy: np.ndarray, fx: np.ndarray) -> np.ndarray:
        """P = C * D at the pixels ``(fy, fx)``; D is the RMS of |isophote . n| over the known part
        of the patch (the isophote (-gy, gx) dotted with n equals g . m for m = (n_y, -n_x))."""
        nx, ny = self.nx[fy, fx], self.ny[fy, fx]
        norm = np.hypot(nx, ny) + 1e-8
        mx, my = ny / norm, -nx / norm
        energy = mx * mx * self.jxx[fy, fx] + 2 * mx * my * self.jxy[fy, fx] + my * my * self.jyy[fy, fx]
        data = np.sqrt(np.maximum(energy, 0.0) / np.maximum(self.count[fy, fx], 1.0))
        return self.conf[fy, fx] * (data + _EPS_DATA)


def _search_window(corner: int, radius: int | None, limit: int) -> slice:
    """Corners within ``radius`` of ``corner``, clipped to ``[0, limit)`` (never empty)."""
    if radius is None:
        return slice(0, limit)
    start = min(max(corner - radius, 0), limit - 1)
    return slice(start, max(min(corner + radius + 1, limit), start + 1))


def _best_source(
    ssd: _MaskedSSD,
    template: np.ndarray,
    known: np.ndarray,
    invalid: np.ndarray,
    radius: int | None,
    top: int,
    left: int,
) -> tuple[int, int]:
    """Top-left corner of the source patch with the least SSD to ``template`` ``(p, p, 3)`` over its
    ``known`` ``(p, p)`` pixels; ``invalid`` ``(H - p + 1, W - p + 1)`` marks excluded corners; the
    search is limited to ``radius`` around ``(top, left)`` unless that window holds no source.

    Ties (within ``_TIE_PER_PIXEL`` per known pixel, below the float noise of the correlation
    SSD and an 8-bit step) go to the source nearest the target: a target whose known part is flat
    matches many sources equally, and a far one may carry an unrelated edge in its unknown part."""
    weight = known.astype(np.float32)
    rows = _search_window(top, radius, invalid.shape[0])
    cols = _search_window(left, radius, invalid.shape[1])
    cost = ssd(template, weight, rows, cols)
    cost[invalid[rows, cols]] = np.inf
    if not np.isfinite(cost).any():
        rows, cols = slice(0, invalid.shape[0]), slice(0, invalid.shape[1])
        cost = ssd(template, weight, rows, cols)
        cost[invalid] = np.inf
    ties = cost <= cost.min() + _TIE_PER_PIXEL * max(float(weight.sum()), 1.0)
    ys, xs = np.nonzero(ties)
    nearest = int(np.argmin((ys + rows.start - top) ** 2 + (xs + cols.start - left) ** 2))
    return int(ys[nearest]) + rows.start, int(xs[nearest]) + cols.start


def exemplar(image, mask, patch_size: int = 9, search_radius: int | None = None) -> np.ndarray:
    """Criminisi et al. exemplar-based inpainting.

    ``image``: float32 ``(H, W, 3)`` in [0, 1]; ``mask``: ``(H, W)``, hole where ``> 0.5``.
    ``patch_size``: odd side of the square patch. ``search_radius``: only consider source patches
    whose centre is within this many pixels (per axis) of the target; ``None`` searches the whole
    image. Returns float32 ``(H, W, 3)``; known pixels are returned unchanged. Falls back to Telea
    when no fully known ``patch_size`` patch exists.
    """
    if patch_size < 3 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd and >= 3, got {patch_size}")
    clean, hole = prepare_inputs(image, mask)
    if not hole.any():
        return np.array(image, dtype=np.float32, copy=True)
    height, width = hole.shape
    sources = _source_positions(hole, patch_size) if min(height, width) >= patch_size else np.zeros((0, 0), bool)
    if not sources.any():
        return telea(image, mask)

    half = patch_size // 2
    pad = ((half, half), (half, half))
    # padded working copies: the border ring is neither known nor to be filled
    work = np.pad(clean, pad + ((0, 0),))
    to_fill = np.pad(hole, pad)
    known = np.pad(~hole, pad)
    confidence = known.astype(np.float32)
    fields = _PriorityFields(work.mean(axis=2), known, confidence, patch_size)
    ssd = _MaskedSSD(clean)
    invalid = ~sources

    while to_fill.any():
        fy, fx = np.nonzero(_fill_front(to_fill, known))
        best = int(np.argmax(fields.priorities(fy, fx)))
        # a padded centre (cy, cx) is the top-left corner of its patch in padded coordinates
        cy, cx = int(fy[best]), int(fx[best])
        target = (slice(cy - half, cy + half + 1), slice(cx - half, cx + half + 1))
        # its centre in image coordinates is (cy - half, cx - half), a source corner is half less
        sy, sx = _best_source(ssd, work[target], known[target], invalid, search_radius, cy - 2 * half, cx - 2 * half)

        copy = to_fill[target].copy()  # a view would be cleared below
        patch = clean[sy : sy + patch_size, sx : sx + patch_size]
        work[target][copy] = patch[copy]
        fields.grey[target][copy] = patch[copy].mean(axis=1)
        confidence[target][copy] = confidence[target].sum() / patch_size**2
        to_fill[target] = False
        known[target] |= copy
        fields.update(cy - half, cx - half)

    return keep_known(work[half:-half, half:-half], image, hole)
