"""PatchMatch inpainting.

- Nearest-neighbour field: C. Barnes, E. Shechtman, A. Finkelstein, D. B. Goldman, "PatchMatch: A
  Randomized Correspondence Algorithm for Structural Image Editing", SIGGRAPH 2009. Random
  initialisation, propagation, random search with the radius halving from the image size to 1.
- Completion: Y. Wexler, E. Shechtman, M. Irani, "Space-Time Completion of Video", TPAMI 29(3), 2007:
  coarse to fine, alternating the NNF search with a reconstruction of the hole in which every pixel
  is the (similarity-weighted) vote of all matched patches that overlap it.

Vectorised with numpy, every target pixel is updated at once (Jacobi style) instead of in scan
order. A one-pixel Jacobi propagation would move a good offset one pixel per iteration, so each
iteration propagates from neighbours at distances ..., 4, 2, 1 (jump flooding, Rong & Tan 2006, the
usual parallel replacement for the sequential scan): from the left/up neighbours in even
iterations, the right/down ones in odd iterations.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from common.classical import keep_known, prepare_inputs, telea


def _generator(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _padded(image: np.ndarray, half: int) -> np.ndarray:
    mode = "reflect" if min(image.shape[:2]) > half else "edge"
    return np.pad(image, ((half, half), (half, half), (0, 0)), mode=mode)


def patch_features(image: np.ndarray, patch_size: int, ys=None, xs=None) -> np.ndarray:
    """The ``patch_size`` patch around every pixel of ``image`` ``(H, W, C)``, flattened:
    ``(H, W, p * p * C)`` float32, or ``(N, p * p * C)`` for the pixels ``(ys, xs)`` only.
    Patches over the border see a reflection of the image."""
    windows = sliding_window_view(
        _padded(image.astype(np.float32), patch_size // 2), (patch_size, patch_size), axis=(0, 1)
    )
    if ys is None:
        return np.ascontiguousarray(windows).reshape(*image.shape[:2], -1)
    return windows[ys, xs].reshape(len(ys), -1)


def _jumps(size: int) -> list[int]:
    """Propagation distances: powers of two up to ``size / 2``, largest first, down to 1."""
    jumps = [1]
    while jumps[-1] * 4 <= size:
        jumps.append(jumps[-1] * 2)
    return jumps[::-1]


class _Field:
    """PatchMatch search for the target patches centred at ``(ty, tx)`` (``N`` pixels of an
    ``(Ht, Wt)`` grid, features ``(N, D)``) among the ``valid`` ``(Hs, Ws)`` source centres
    (features ``(Hs, Ws, D)``). ``sy, sx, dist`` ``(N,)``: current match and its SSD.

    ``field`` ``(Ht, Wt, 2)`` holds a source centre for every grid pixel; the targets' entries are
    kept in sync, the other entries still serve as propagation sources."""

    def __init__(
        self, source_features: np.ndarray, target_features: np.ndarray, ty, tx, field: np.ndarray, valid: np.ndarray
    ):
        self.source = source_features.reshape(-1, source_features.shape[-1])
        self.source_width = source_features.shape[1]
        self.target, self.ty, self.tx = target_features, ty, tx
        self.field, self.valid = field, valid
        self.sy, self.sx = field[ty, tx, 0].copy(), field[ty, tx, 1].copy()
        self.dist = self._distance(np.arange(len(ty)), self.sy, self.sx)

    def _distance(self, index: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        diff = self.source[sy * self.source_width + sx] - self.target[index]
        return np.einsum("ij,ij->i", diff, diff)

    def consider(self, cy: np.ndarray, cx: np.ndarray, usable: np.ndarray | None = None) -> None:
        """Replace each target's match by candidate ``(cy, cx)`` where that is a valid source
        (and ``usable``) and closer."""
        height, width = self.valid.shape
        ok = (cy >= 0) & (cy < height) & (cx >= 0) & (cx < width) & ((cy != self.sy) | (cx != self.sx))
        if usable is not None:
            ok &= usable
        index = np.flatnonzero(ok)
        index = index[self.valid[cy[index], cx[index]]]
        if index.size == 0:
            return
        dist = self._distance(index, cy[index], cx[index])
        better = dist < self.dist[index]
        index = index[better]
        self.sy[index], self.sx[index], self.dist[index] = cy[index], cx[index], dist[better]

    def propagate(self, step: int) -> None:
        """Try the offsets of the neighbours ``step`` pixels away (left/up for ``step > 0``,
        right/down for ``step < 0``): neighbour's source + the displacement."""
        height, width = self.field.shape[:2]
        for dy, dx in ((0, step), (step, 0)):
            ny, nx = self.ty - dy, self.tx - dx
            inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            ny, nx = np.clip(ny, 0, height - 1), np.clip(nx, 0, width - 1)
            self.consider(self.field[ny, nx, 0] + dy, self.field[ny, nx, 1] + dx, inside)
            self.store()

    def random_search(self, rng: np.random.Generator) -> None:
        """Candidates uniformly within a window around the current match whose radius halves
        from the source size down to 1 (window clipped to the source)."""
        height, width = self.valid.shape
        radius = max(height, width)
        while radius >= 1:
            jitter = rng.integers(-radius, radius + 1, size=(2, len(self.sy)))
            self.consider(np.clip(self.sy + jitter[0], 0, height - 1), np.clip(self.sx + jitter[1], 0, width - 1))
            radius //= 2
        self.store()

    def store(self) -> None:
        self.field[self.ty, self.tx, 0] = self.sy
        self.field[self.ty, self.tx, 1] = self.sx

    def run(self, iterations: int, rng: np.random.Generator, jumps: list[int]) -> None:
        for iteration in range(iterations):
            sign = 1 if iteration % 2 == 0 else -1
            for jump in jumps:
                self.propagate(sign * jump)
            self.random_search(rng)


def _random_sources(valid: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``(count, 2)`` source centres drawn uniformly from the True pixels of ``valid``."""
    choices = np.flatnonzero(valid)
    if choices.size == 0:
        raise ValueError("no valid source patch to match against")
    picked = choices[rng.integers(0, choices.size, size=count)]
    return np.stack(np.divmod(picked, valid.shape[1]), axis=1)


def nnf(
    source, target, patch_size: int = 7, iterations: int = 5, rng=None, valid=None, init=None
) -> tuple[np.ndarray, np.ndarray]:
    """PatchMatch nearest-neighbour field from every patch of ``target`` to ``source``.

    ``source`` ``(Hs, Ws, C)`` or ``(Hs, Ws)``, ``target`` ``(Ht, Wt, C)`` or ``(Ht, Wt)``; patches are
    ``patch_size`` squares around each pixel (border: reflection). ``valid``: bool ``(Hs, Ws)``,
    the source centres allowed (default all). ``init``: ``(Ht, Wt, 2)`` starting field (default
    random). ``rng``: seed or ``np.random.Generator``.

    Returns ``(field, dist)``: int64 ``(Ht, Wt, 2)`` = the ``(y, x)`` source centre matched to each
    target pixel (the offset is ``field - (y, x)``) and float32 ``(Ht, Wt)`` patch SSD.
    """
    source, target = np.asarray(source, np.float32), np.asarray(target, np.float32)
    source = source[..., None] if source.ndim == 2 else source
    target = target[..., None] if target.ndim == 2 else target
    rng = _generator(rng)
    valid = np.ones(source.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    height, width = target.shape[:2]
    if init is None:
        field = _random_sources(valid, height * width, rng).reshape(height, width, 2)
    else:
        field = np.array(init, dtype=np.int64, copy=True)
    ty, tx = (grid.ravel() for grid in np.indices((height, width)))
    target_features = patch_features(target, patch_size).reshape(height * width, -1)
    search = _Field(patch_features(source, patch_size), target_features, ty, tx, field, valid)
    if init is not None:  # invalid starting matches would never be replaced by a worse candidate
        search.dist[~valid[search.sy, search.sx]] = np.inf
    search.run(iterations, rng, _jumps(max(height, width)))
    search.store()
    return field, search.dist.reshape(height, width).astype(np.float32)


# ---------------------------------------------------------------- completion (Wexler et al.)


def _source_centres(hole: np.ndarray, patch_size: int) -> np.ndarray:
    """Bool ``(H, W)``: centres whose patch lies inside the image and holds no hole pixel."""
    half = patch_size // 2
    touches_hole = cv2.dilate(hole.astype(np.uint8), np.ones((patch_size, patch_size), np.uint8)) > 0
    valid = ~touches_hole
    valid[:half], valid[-half:], valid[:, :half], valid[:, -half:] = False, False, False, False
    return valid


def _downsample(image: np.ndarray, hole: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-size image (averaging known pixels only) and hole (any hole pixel in the 2x2 block)."""
    size = ((hole.shape[1] + 1) // 2, (hole.shape[0] + 1) // 2)
    known = (~hole).astype(np.float32)
    weight = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
    summed = cv2.resize(image * known[..., None], size, interpolation=cv2.INTER_AREA)
    return summed / np.maximum(weight, 1e-6)[..., None], weight < 1.0 - 1e-6


def _pyramid(image: np.ndarray, hole: np.ndarray, patch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Levels fine to coarse; stop before a level would be smaller than 4 patches across or would
    keep under a tenth of its pixels as source centres."""
    levels = [(image, hole)]
    while min(levels[-1][1].shape) // 2 >= 4 * patch_size:
        smaller = _downsample(*levels[-1])
        if _source_centres(smaller[1], patch_size).mean() < 0.1:
            break
        levels.append(smaller)
    return levels


def _vote(image: np.ndarray, hole: np.ndarray, ty, tx, sy, sx, dist, patch_size: int) -> np.ndarray:
    """Each hole pixel becomes the weighted mean of the pixels that the matched source patches of
    all target patches covering it put there; weights exp(-d / 2 sigma^2), sigma^2 from the
    75th percentile of the distances (Wexler et al.). Returns the new ``(H, W, 3)`` image."""
    height, width = hole.shape
    half = patch_size // 2
    weight = np.exp(-dist / (2.0 * max(float(np.percentile(dist, 75)), 1e-6)))
    dy, dx = (offset.reshape(-1, 1) for offset in np.indices((patch_size, patch_size)) - half)
    qy, qx = ty + dy, tx + dx  # (p * p, N): every pixel of every target patch
    keep = (qy >= 0) & (qy < height) & (qx >= 0) & (qx < width)
    keep[keep] = hole[qy[keep], qx[keep]]
    where = qy[keep] * width + qx[keep]
    votes = image[(sy + dy)[keep], (sx + dx)[keep]]
    weights = np.broadcast_to(weight, keep.shape)[keep]
    norm = np.bincount(where, weights, minlength=height * width)
    total = np.stack([np.bincount(where, weights * votes[:, c], minlength=height * width) for c in range(3)], axis=-1)
    out = image.copy()
    covered = hole.ravel() & (norm > 0)
    out.reshape(-1, 3)[covered] = (total[covered] / norm[covered, None]).astype(np.float32)
    return out


def _upsample_field(
    field: np.ndarray, shape: tuple[int, int], valid: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Coarse field ``(h, w, 2)`` -> ``(H, W, 2)``: fine pixel (y, x) takes 2 * coarse match +
    (y mod 2, x mod 2); matches that are not ``valid`` fine sources are redrawn at random."""
    ys, xs = np.indices(shape)
    coarse = field[np.minimum(ys // 2, field.shape[0] - 1), np.minimum(xs // 2, field.shape[1] - 1)]
    fine = np.stack([2 * coarse[..., 0] + ys % 2, 2 * coarse[..., 1] + xs % 2], axis=-1)
    fine[..., 0] = np.clip(fine[..., 0], 0, shape[0] - 1)
    fine[..., 1] = np.clip(fine[..., 1], 0, shape[1] - 1)
    bad = ~valid[fine[..., 0], fine[..., 1]]
    fine[bad] = _random_sources(valid, int(bad.sum()), rng)
    return fine


def _complete_level(
    image: np.ndarray,
    hole: np.ndarray,
    field: np.ndarray,
    patch_size: int,
    em_steps: int,
    iterations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """EM at one level: ``image`` ``(H, W, 3)`` has a first guess in ``hole``; ``field`` (updated in
    place) starts the search. Returns the completed image."""
    valid = _source_centres(hole, patch_size)
    targets = cv2.dilate(hole.astype(np.uint8), np.ones((patch_size, patch_size), np.uint8)) > 0
    ty, tx = np.nonzero(targets)
    source = patch_features(image, patch_size)  # only valid (fully known) centres are ever read
    jumps = _jumps(max(hole.shape))
    for _ in range(em_steps):
        search = _Field(source, patch_features(image, patch_size, ty, tx), ty, tx, field, valid)
        search.dist[~valid[search.sy, search.sx]] = np.inf
        search.run(iterations, rng, jumps)
        image = _vote(image, hole, ty, tx, search.sy, search.sx, search.dist, patch_size)
    return image


def patchmatch(
    image, mask, patch_size: int = 7, em_steps: int = 3, iterations: int = 2, seed: int | None = 0
) -> np.ndarray:
    """PatchMatch (Barnes et al.) completion, coarse to fine (Wexler et al.).

    ``image``: float32 ``(H, W, 3)`` in [0, 1]; ``mask``: ``(H, W)``, hole where ``> 0.5``.
    ``em_steps``: search + vote rounds per pyramid level; ``iterations``: PatchMatch iterations per
    search; ``seed``: for the random parts (same seed, same result). Returns float32 ``(H, W, 3)``
    with the known pixels unchanged. The coarsest level starts from a Telea fill; when no fully
    known patch exists at all, the result is that Telea fill.
    """
    if patch_size < 3 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd and >= 3, got {patch_size}")
    clean, hole = prepare_inputs(image, mask)
    if not hole.any():
        return np.array(image, dtype=np.float32, copy=True)
    if min(hole.shape) < 2 * patch_size or not _source_centres(hole, patch_size).any():
        return telea(image, mask)
    rng = np.random.default_rng(seed)
    levels = _pyramid(clean, hole, patch_size)

    coarse_image, coarse_hole = levels[-1]
    current = telea(coarse_image, coarse_hole)
    field = _random_sources(_source_centres(coarse_hole, patch_size), coarse_hole.size, rng)
    field = field.reshape(*coarse_hole.shape, 2)
    for depth in range(len(levels) - 1, -1, -1):
        level_image, level_hole = levels[depth]
        if depth != len(levels) - 1:
            field = _upsample_field(field, level_hole.shape, _source_centres(level_hole, patch_size), rng)
            guess = cv2.resize(current, level_hole.shape[::-1], interpolation=cv2.INTER_LINEAR)
            current = np.where(level_hole[..., None], guess, level_image)
        current = _complete_level(current, level_hole, field, patch_size, em_steps, iterations, rng)
    return keep_known(current, image, hole)
