"""Random hole masks for training.

Convention: a mask is an ``(H, W)`` float32 array with values in ``{0., 1.}``, where **1 marks a
destroyed pixel (hole)** and 0 a known one. A *mask generator* is any picklable callable

.. code-block:: python

    gen(height: int, width: int, rng: numpy.random.Generator) -> numpy.ndarray  # (H, W)

that takes all of its randomness from ``rng``, so a generator fed the same ``rng`` state always
returns the same mask. Drawing is done with OpenCV on ``uint8`` canvases with ``LINE_8`` (never
anti-aliased), so the masks stay binary.

Generators:

* :class:`FreeFormMasks` - DeepFill v2 brush strokes (Yu et al., ICCV 2019).
* :class:`RectMasks` - DeepFill's single box, random or centred (Yu et al., CVPR 2018).
* :class:`IrregularMaskFolder` - mask images from a folder (e.g. NVIDIA's irregular mask set,
  Liu et al., ECCV 2018) with PConv-style augmentation.
* :class:`LamaMasks` - LaMa's thin / medium / thick evaluation presets (Suvorov et al., WACV 2022).
* :class:`MixedMasks` - one of several generators per sample, by probability.

The fixed, bucketed test-mask set is :class:`pipeline.evaluation.mask_set.BucketedTestMasks`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.errors import BlindfillError
from data.io import list_images

__all__ = [
    "LAMA_PRESETS",
    "FreeFormMasks",
    "IrregularMaskFolder",
    "LamaMasks",
    "MaskGenerator",
    "MaskSourceError",
    "MixedMasks",
    "RectMasks",
    "check_size",
    "hole_ratio",
    "read_gray",
    "resize_nearest",
]

MaskGenerator = Callable[[int, int, np.random.Generator], np.ndarray]


class MaskSourceError(BlindfillError):
    """A mask source (folder, file or saved mask set) is missing, empty or unreadable."""


def hole_ratio(mask: Any) -> float:
    """Fraction of hole pixels (value > 0.5) in a mask of shape ``(H, W)`` (or any shape)."""
    mask = np.asarray(mask)
    if mask.size == 0:
        raise ValueError("hole_ratio of an empty mask")
    return float(np.count_nonzero(mask > 0.5)) / mask.size


def check_size(height: int, width: int) -> tuple[int, int]:
    """``(height, width)`` of a requested mask as ints; a ``ValueError`` unless both are positive."""
    height, width = int(height), int(width)
    if height < 1 or width < 1:
        raise ValueError(f"mask size must be positive, got {height}x{width}")
    return height, width


def _random_flip(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip left-right and up-down, each with p = 0.5; returns a contiguous array."""
    # Both coins are always drawn so the number of draws does not depend on the outcome.
    flip_h, flip_v = rng.random(2) < 0.5
    if flip_h and flip_v:
        return cv2.flip(mask, -1)
    if flip_h or flip_v:
        return cv2.flip(mask, 1 if flip_h else 0)
    return mask


def _to_float(canvas: np.ndarray) -> np.ndarray:
    """``uint8`` 0/1 canvas -> contiguous float32 ``(H, W)`` mask."""
    return canvas.astype(np.float32)


def resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """``mask`` ``(h, w)`` resized to ``(height, width)`` by nearest neighbour, so it stays binary;
    returned as is when it already has that size."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


class FreeFormMasks:
    """Free-form brush-stroke masks of DeepFill v2.

    Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019; the algorithm of
    ``brush_stroke_mask`` in JiahuiYu/generative_inpainting (branch v2, ``inpaint_ops.py``), whose
    constants are the defaults here. Per mask, ``randint(min_strokes, max_strokes + 1)`` strokes;
    per stroke:

    * ``num_vertex ~ randint(min_num_vertex, max_num_vertex)`` segments (4-11);
    * ``a_min = mean_angle - U(0, angle_range)``, ``a_max = mean_angle + U(0, angle_range)``; the
      segment angles alternate ``2 pi - U(a_min, a_max)`` and ``U(a_min, a_max)`` (zig-zag);
    * a start point uniform in the image, segment lengths ``N(r, r / 2)`` clipped to ``[0, 2 r]``
      with ``r = sqrt(H^2 + W^2) / 8``, every vertex clipped to the image;
    * one width ``w ~ U(min_width, max_width)`` for the stroke, drawn as lines of thickness ``w``
      with a disc of radius ``w // 2`` at every vertex (round joints).

    Differences from the reference code, all deliberate:

    * the reference meant to flip the mask left-right and up-down (each with p = 0.5) but discarded
      the result of ``Image.transpose``; here the flips are applied when ``flip=True``;
    * the reference swaps height and width when placing vertices (harmless for its square
      crops); here x runs over the width and y over the height for any ``H x W``;
    * the length spread is ``r / 2`` rather than ``r // 2`` so it scales smoothly with size.

    The widths are in pixels for 256 x 256 images (the length scale ``r`` already follows the
    image diagonal). With ``scale_width=True`` they are multiplied by ``min(H, W) / 256``.

    Returns ``(H, W)`` float32 masks, 1 = hole.
    """

    def __init__(
        self,
        min_num_vertex: int = 4,
        max_num_vertex: int = 12,
        mean_angle: float = 2 * math.pi / 5,
        angle_range: float = 2 * math.pi / 15,
        min_width: float = 12,
        max_width: float = 40,
        min_strokes: int = 1,
        max_strokes: int = 3,
        flip: bool = True,
        scale_width: bool = False,
        ref_size: int = 256,
    ) -> None:
        if not 1 <= min_num_vertex < max_num_vertex:
            raise ValueError("need 1 <= min_num_vertex < max_num_vertex (upper bound exclusive)")
        if not 0 < min_width <= max_width:
            raise ValueError("need 0 < min_width <= max_width")
        if not 0 <= min_strokes <= max_strokes:
            raise ValueError("need 0 <= min_strokes <= max_strokes")
        self.min_num_vertex = int(min_num_vertex)
        self.max_num_vertex = int(max_num_vertex)
        self.mean_angle = float(mean_angle)
        self.angle_range = float(angle_range)
        self.min_width = float(min_width)
        self.max_width = float(max_width)
        self.min_strokes = int(min_strokes)
        self.max_strokes = int(max_strokes)
        self.flip = bool(flip)
        self.scale_width = bool(scale_width)
        self.ref_size = int(ref_size)

    def draw(self, canvas: np.ndarray, rng: np.random.Generator) -> None:
        """Draw one stroke (value 1) onto a ``uint8`` canvas ``(H, W)`` in place."""
        height, width = canvas.shape
        radius = math.sqrt(height * height + width * width) / 8
        scale = min(height, width) / self.ref_size if self.scale_width else 1.0

        num_vertex = int(rng.integers(self.min_num_vertex, self.max_num_vertex))
        a_min = self.mean_angle - rng.uniform(0, self.angle_range)
        a_max = self.mean_angle + rng.uniform(0, self.angle_range)
        angles = rng.uniform(a_min, a_max, size=num_vertex)
        angles[0::2] = 2 * math.pi - angles[0::2]
        lengths = np.clip(rng.normal(radius, radius / 2, size=num_vertex), 0, 2 * radius)

        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        vertices = [(x, y)]
        for angle, length in zip(angles, lengths):
            x = int(min(max(x + length * math.cos(angle), 0), width - 1))
            y = int(min(max(y + length * math.sin(angle), 0), height - 1))
            vertices.append((x, y))

        thickness = max(1, int(rng.uniform(self.min_width, self.max_width) * scale))
        for p0, p1 in zip(vertices[:-1], vertices[1:]):
            cv2.line(canvas, p0, p1, 1, thickness, cv2.LINE_8)
        for v in vertices:
            cv2.circle(canvas, v, thickness // 2, 1, -1, cv2.LINE_8)

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        height, width = check_size(height, width)
        canvas = np.zeros((height, width), np.uint8)
        for _ in range(int(rng.integers(self.min_strokes, self.max_strokes + 1))):
            self.draw(canvas, rng)
        if self.flip:
            canvas = _random_flip(canvas, rng)
        return _to_float(canvas)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(vertices={self.min_num_vertex}..{self.max_num_vertex - 1}, "
            f"width={self.min_width:g}..{self.max_width:g}, "
            f"strokes={self.min_strokes}..{self.max_strokes}, flip={self.flip}, "
            f"scale_width={self.scale_width})"
        )


class RectMasks:
    """One rectangular hole, as in DeepFill (``random_bbox`` + ``bbox2mask``).

    Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018. The box is
    ``height_frac * H`` by ``width_frac * W`` (128 x 128 for 256 x 256), then shrunk on each side
    by a random ``0..round(max_delta_frac * H)`` rows (top and bottom alike) and
    ``0..round(max_delta_frac * W)`` columns (left and right alike) - up to 16 px at 256 x 256.

    * ``mode="random"``: the unshrunk box is placed uniformly, at least ``margin`` px from the
      image border;
    * ``mode="centre"``: the box is centred; the shrink is the only randomness (use
      ``max_delta_frac=0`` for an exact centre box).

    Returns ``(H, W)`` float32 masks, 1 = hole.
    """

    MODES = ("random", "centre")

    def __init__(
        self,
        mode: str = "random",
        height_frac: float = 0.5,
        width_frac: float = 0.5,
        max_delta_frac: float = 1 / 16,
        margin: int = 0,
    ) -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        if not (0 < height_frac <= 1 and 0 < width_frac <= 1):
            raise ValueError("height_frac and width_frac must be in (0, 1]")
        if not 0 <= max_delta_frac < 0.5:
            raise ValueError("max_delta_frac must be in [0, 0.5)")
        if margin < 0:
            raise ValueError("margin must be >= 0")
        self.mode = mode
        self.height_frac = float(height_frac)
        self.width_frac = float(width_frac)
        self.max_delta_frac = float(max_delta_frac)
        self.margin = int(margin)

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        height, width = check_size(height, width)
        box_h = max(1, round(self.height_frac * height))
        box_w = max(1, round(self.width_frac * width))
        if self.mode == "random":
            if box_h + 2 * self.margin > height or box_w + 2 * self.margin > width:
                raise ValueError(f"a {box_h}x{box_w} box with margin {self.margin} does not fit in {height}x{width}")
            top = int(rng.integers(self.margin, height - self.margin - box_h + 1))
            left = int(rng.integers(self.margin, width - self.margin - box_w + 1))
        else:
            top, left = (height - box_h) // 2, (width - box_w) // 2
        # Never shrink a side to nothing: keep at least one row / column.
        max_dh = min(round(self.max_delta_frac * height), (box_h - 1) // 2)
        max_dw = min(round(self.max_delta_frac * width), (box_w - 1) // 2)
        dh = int(rng.integers(0, max_dh + 1))
        dw = int(rng.integers(0, max_dw + 1))
        mask = np.zeros((height, width), np.float32)
        mask[top + dh : top + box_h - dh, left + dw : left + box_w - dw] = 1.0
        return mask

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, frac={self.height_frac:g}x"
            f"{self.width_frac:g}, max_delta_frac={self.max_delta_frac:g}, margin={self.margin})"
        )


def _list_mask_files(root: Path) -> list[str]:
    if not root.is_dir():
        raise MaskSourceError(f"mask folder {str(root)!r} does not exist or is not a directory")
    files = [str(p) for p in list_images(root)]
    if not files:
        raise MaskSourceError(
            f"mask folder {str(root)!r} contains no mask images (looked recursively for the formats Pillow reads)"
        )
    return files


def read_gray(path: str) -> np.ndarray:
    """Read an 8-bit grayscale image ``(H, W)``; on failure a :class:`MaskSourceError` names it."""
    try:
        # np.fromfile + imdecode instead of imread: imread cannot open non-ASCII paths on Windows.
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MaskSourceError(f"cannot read mask file {path!r}: {exc}") from exc
    img = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if img is None or img.size == 0:
        raise MaskSourceError(f"cannot decode mask file {path!r} (corrupt or not an image)")
    return img


class IrregularMaskFolder:
    """Masks read from a folder of mask images, with PConv-style augmentation.

    Meant for NVIDIA's irregular mask data set (Liu et al., "Image Inpainting for Irregular Holes
    Using Partial Convolutions", ECCV 2018), or any folder of binary masks. In that set the holes
    are white; pass ``invert=True`` for sets in which black marks the hole.

    The files (``.png .jpg .jpeg .bmp .tif .tiff .webp``, searched recursively, sorted) are listed
    once in the constructor and read lazily, one per call. Augmentation, as described in the PConv
    paper (random dilation, rotation and cropping), in this order:

    1. dilation of the holes by an elliptic kernel of ``U{1..max_dilation}`` px (1 = none);
    2. rotation by ``U(-max_rotation, max_rotation)`` degrees about the centre (nearest
       neighbour, the uncovered corners become known pixels);
    3. a crop of the largest window with the output's aspect ratio, scaled by
       ``U(min_crop_scale, 1)`` and placed uniformly, resized (nearest) to ``(H, W)``;
    4. horizontal and vertical flips, each with p = 0.5 (``flip=True``);
    5. binarisation at 0.5.

    Raises :class:`MaskSourceError` for a missing or empty folder (naming it) and, at call time,
    for an unreadable file (naming it). Returns ``(H, W)`` float32 masks, 1 = hole.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        invert: bool = False,
        max_dilation: int = 9,
        max_rotation: float = 180.0,
        min_crop_scale: float = 0.5,
        flip: bool = True,
    ) -> None:
        if max_dilation < 1:
            raise ValueError("max_dilation must be >= 1 (1 disables dilation)")
        if not 0 < min_crop_scale <= 1:
            raise ValueError("min_crop_scale must be in (0, 1]")
        self.root = str(root)
        self.invert = bool(invert)
        self.max_dilation = int(max_dilation)
        self.max_rotation = float(max_rotation)
        self.min_crop_scale = float(min_crop_scale)
        self.flip = bool(flip)
        self.files = _list_mask_files(Path(root))

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> np.ndarray:
        """The ``index``-th file, unaugmented, as ``uint8`` ``(h, w)`` with 255 = hole."""
        img = read_gray(self.files[index])
        return 255 - img if self.invert else img

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        height, width = check_size(height, width)
        # Every call makes the same draws from rng, whatever the file holds.
        index = int(rng.integers(len(self.files)))
        kernel = int(rng.integers(1, self.max_dilation + 1))
        angle = rng.uniform(-self.max_rotation, self.max_rotation)
        crop_scale = rng.uniform(self.min_crop_scale, 1.0)
        crop_y, crop_x = rng.random(2)

        mask = self.load(index)
        src_h, src_w = mask.shape
        if kernel > 1:
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel, kernel)))
        if angle != 0.0:
            rot = cv2.getRotationMatrix2D(((src_w - 1) / 2, (src_h - 1) / 2), angle, 1.0)
            mask = cv2.warpAffine(
                mask,
                rot,
                (src_w, src_h),
                flags=cv2.INTER_NEAREST,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0,
            )

        aspect = height / width
        if src_h / src_w > aspect:
            win_h, win_w = src_w * aspect, src_w
        else:
            win_h, win_w = src_h, src_h / aspect
        crop_h = min(src_h, max(1, round(win_h * crop_scale)))
        crop_w = min(src_w, max(1, round(win_w * crop_scale)))
        top = int(crop_y * (src_h - crop_h + 1))
        left = int(crop_x * (src_w - crop_w + 1))
        mask = resize_nearest(mask[top : top + crop_h, left : left + crop_w], height, width)

        if self.flip:
            mask = _random_flip(mask, rng)
        return (mask > 127).astype(np.float32)  # 0.5 on the 0..1 scale

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={self.root!r}, files={len(self.files)}, "
            f"invert={self.invert}, max_dilation={self.max_dilation}, "
            f"max_rotation={self.max_rotation:g}, min_crop_scale={self.min_crop_scale:g})"
        )


# LaMa's evaluation presets for 256 x 256 (advimman/lama, configs/data_gen/random_*_256.yaml).
# "irregular" feeds make_random_irregular_mask, "box" make_random_rectangle_mask; the kinds are
# mixed by MixedMaskGenerator with weights irregular_proba = 1 and box_proba.
LAMA_PRESETS: dict[str, dict[str, Any]] = {
    "thin": {
        "irregular": dict(min_times=4, max_times=50, max_width=10, max_angle=4, max_len=40),
        "box_proba": 0.0,
        "box": None,
    },
    "medium": {
        "irregular": dict(min_times=4, max_times=5, max_width=50, max_angle=4, max_len=100),
        "box_proba": 0.3,
        "box": dict(margin=0, bbox_min_size=10, bbox_max_size=50, min_times=1, max_times=5),
    },
    "thick": {
        "irregular": dict(min_times=1, max_times=5, max_width=100, max_angle=4, max_len=200),
        "box_proba": 0.3,
        "box": dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=3),
    },
}


class LamaMasks:
    """LaMa's evaluation masks: the ``thin``, ``medium`` and ``thick`` presets.

    Suvorov et al., "Resolution-robust Large Mask Inpainting with Fourier Convolutions", WACV
    2022; advimman/lama, ``saicinpainting/training/data/masks.py`` with the parameters of
    ``configs/data_gen/random_{thin,medium,thick}_256.yaml`` (see :data:`LAMA_PRESETS`):

    ========  ==============  ==========  ===========  =====================================
    preset    strokes         width <     length <     boxes
    ========  ==============  ==========  ===========  =====================================
    thin      4-50            5 + 10      10 + 40      none
    medium    4-5             5 + 50      10 + 100     weight 0.3: 1-5 boxes of 10-49 px
    thick     1-5             5 + 100     10 + 200     weight 0.3: 1-3 boxes of 30-149 px
    ========  ==============  ==========  ===========  =====================================

    As in LaMa's ``MixedMaskGenerator``, one *kind* is drawn per mask with weights
    ``irregular: 1, box: box_proba`` (so a medium / thick mask is boxes only with probability
    0.3 / 1.3 ~ 0.23, strokes only otherwise). Irregular strokes follow
    ``make_random_irregular_mask``: a uniform start point, then ``1 + randint(5)`` segments, each
    with angle ``0.01 + randint(max_angle)`` radians (an integer plus 0.01, mirrored to
    ``2 pi - angle`` on even-numbered strokes), length ``10 + randint(max_len)`` and width
    ``5 + randint(max_width)``, drawn as thick lines (OpenCV's thick lines have round caps, which
    act as round joints). Boxes follow ``make_random_rectangle_mask``.

    As in LaMa's ``gen_mask_dataset.py``, a mask covering more than ``max_area`` of the image
    is rejected and redrawn; after ``max_attempts`` rejections the smallest candidate is returned.

    The numbers are for 256 x 256; for other sizes lengths, widths, box sizes and margins are
    scaled by ``min(H, W) / ref_size``. Returns ``(H, W)`` float32 masks, 1 = hole.

    Thin masks are not smaller than thick ones on average - they are many narrow strokes, and
    thick draws that exceed ``max_area`` are redrawn.
    """

    def __init__(
        self,
        preset: str = "medium",
        max_area: float = 0.5,
        ref_size: int = 256,
        max_attempts: int = 100,
    ) -> None:
        if preset not in LAMA_PRESETS:
            raise ValueError(f"preset must be one of {tuple(LAMA_PRESETS)}, got {preset!r}")
        if not 0 < max_area <= 1:
            raise ValueError("max_area must be in (0, 1]")
        self.preset = preset
        self.max_area = float(max_area)
        self.ref_size = int(ref_size)
        self.max_attempts = max(1, int(max_attempts))

    def _irregular(self, canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
        p = LAMA_PRESETS[self.preset]["irregular"]
        height, width = canvas.shape
        # Same distributions as LaMa's loop, drawn in batches (scalar draws dominate the cost).
        times = int(rng.integers(p["min_times"], p["max_times"] + 1))
        starts_x = rng.integers(width, size=times)
        starts_y = rng.integers(height, size=times)
        n_segments = 1 + rng.integers(5, size=times)
        total = int(n_segments.sum())
        angles = 0.01 + rng.integers(p["max_angle"], size=total)
        lengths = scale * (10 + rng.integers(p["max_len"], size=total))
        brushes = np.maximum(1, np.round(scale * (5 + rng.integers(p["max_width"], size=total))))
        j = 0
        for i in range(times):
            x, y = int(starts_x[i]), int(starts_y[i])
            for _ in range(int(n_segments[i])):
                angle = 2 * math.pi - angles[j] if i % 2 == 0 else angles[j]
                end_x = int(min(max(x + lengths[j] * math.sin(angle), 0), width))
                end_y = int(min(max(y + lengths[j] * math.cos(angle), 0), height))
                cv2.line(canvas, (x, y), (end_x, end_y), 1, int(brushes[j]), cv2.LINE_8)
                x, y = end_x, end_y
                j += 1

    def _boxes(self, canvas: np.ndarray, rng: np.random.Generator, scale: float) -> None:
        p = LAMA_PRESETS[self.preset]["box"]
        height, width = canvas.shape
        margin = round(p["margin"] * scale)
        if min(height, width) - 2 * margin < 1:
            margin = 0
        room = min(height, width) - 2 * margin
        min_size = min(max(1, round(p["bbox_min_size"] * scale)), room)
        max_size = max(min(round(p["bbox_max_size"] * scale), room), min_size + 1)
        for _ in range(int(rng.integers(p["min_times"], p["max_times"] + 1))):
            box_w = int(rng.integers(min_size, max_size))
            box_h = int(rng.integers(min_size, max_size))
            left = int(rng.integers(margin, width - margin - box_w + 1))
            top = int(rng.integers(margin, height - margin - box_h + 1))
            canvas[top : top + box_h, left : left + box_w] = 1

    def _sample(self, shape: tuple[int, int], rng: np.random.Generator, scale: float) -> np.ndarray:
        canvas = np.zeros(shape, np.uint8)
        box_proba = LAMA_PRESETS[self.preset]["box_proba"]
        if box_proba > 0 and rng.random() < box_proba / (1.0 + box_proba):
            self._boxes(canvas, rng, scale)
        else:
            self._irregular(canvas, rng, scale)
        return canvas

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        height, width = check_size(height, width)
        scale = min(height, width) / self.ref_size
        best, best_area = None, math.inf
        for _ in range(self.max_attempts):
            canvas = self._sample((height, width), rng, scale)
            area = np.count_nonzero(canvas) / canvas.size
            if area <= self.max_area:
                return _to_float(canvas)
            if area < best_area:
                best, best_area = canvas, area
        return _to_float(best)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(preset={self.preset!r}, max_area={self.max_area:g})"


def normalised_weights(weights: Mapping[str, float], known: Sequence[str], what: str) -> dict[str, float]:
    """``weights`` (name -> weight, each a finite number >= 0, not all 0) checked against the
    ``known`` names and normalised to sum to 1, in ``known``'s order (so a draw does not depend on
    the mapping's order), names with weight 0 left out. A ValueError says what is wrong, calling the
    names ``what`` (e.g. "fill kind")."""
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError(f"the {what} weights must be a non-empty mapping of {what} -> weight: {', '.join(known)}")
    unknown = [str(k) for k in weights if k not in known]
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; valid: {', '.join(known)}")
    values = {}
    for name, weight in weights.items():
        try:
            values[str(name)] = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"the weight of {name!r} must be a number, got {weight!r}") from None
    bad = {k: v for k, v in values.items() if not math.isfinite(v) or v < 0}
    if bad:
        raise ValueError(f"{what} weights must be finite and >= 0, got {bad}")
    total = sum(values.values())
    if total <= 0:
        raise ValueError(f"{what} weights must not all be zero, got {values}")
    return {k: values[k] / total for k in known if values.get(k, 0.0) > 0}


class MixedMasks:
    """Draws each mask from one of several generators, chosen per sample by probability.

    Args:
        generators: name -> mask generator.
        probs: name -> weight, same names as ``generators``; weights are normalised to sum to 1.

    Returns ``(H, W)`` float32 masks, 1 = hole.
    """

    def __init__(self, generators: Mapping[str, MaskGenerator], probs: Mapping[str, float]) -> None:
        # Plain dicts: Hydra hands over DictConfigs, which should not travel to DataLoader workers.
        generators = {str(k): generators[k] for k in generators}
        probs = {str(k): float(probs[k]) for k in probs}
        if not generators:
            raise ValueError("MixedMasks needs at least one generator")
        if set(generators) != set(probs):
            raise ValueError(
                f"generators and probs must have the same names, got {sorted(generators)} and {sorted(probs)}"
            )
        weights = np.array([probs[k] for k in generators], np.float64)
        if (weights < 0).any() or not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ValueError(f"probs must be finite, >= 0 and not all 0, got {probs}")
        self.names = list(generators)
        self.generators = generators
        self.probs = {k: float(w) for k, w in zip(self.names, weights / weights.sum())}
        self._cum = np.cumsum(weights / weights.sum())

    def choose(self, rng: np.random.Generator) -> str:
        """Name of the generator for the next sample."""
        k = int(np.searchsorted(self._cum, rng.random() * self._cum[-1], side="right"))
        return self.names[min(k, len(self.names) - 1)]

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        return self.generators[self.choose(rng)](height, width, rng)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {self.probs[k]:.3g} {self.generators[k]!r}" for k in self.names)
        return f"{type(self).__name__}({parts})"
