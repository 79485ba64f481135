"""Synthetic corruption for blind inpainting.

A clean image ``x`` and a hole ``h`` from a mask generator are turned into a
training pair ``(y, m)``::

    y = (1 - m) * x + m * fill

where ``m`` is a *continuous* mask (1 = destroyed, 0 = intact) and ``fill`` is
the content pasted into the hole. ``m`` is exactly what the Mask Prediction
Network learns to predict, so it is returned alongside ``y``.

Following VCNet (Wang et al., "VCNet: A Robust Approach to Blind Image
Inpainting", ECCV 2020), fills are drawn from several kinds -- real images
from another data set being the hardest to detect -- and, half of the time,
the hard mask is softened by iterative Gaussian blending so that the hole
border is not a trivial cue. Semi-transparent overlays (partial alpha),
graffiti strokes and text captions/watermarks complete the corruption family.
A spread, low-amplitude mode turns denoising into "inpainting" of the whole
image, and a fixed constant fill gives classic non-blind inpainting (e.g.
EdgeConnect pastes white into the hole).

Everything is per sample (no batch dimension), CPU-only, driven by an explicit
``numpy.random.Generator`` and implemented with numpy / OpenCV so it is cheap
inside DataLoader workers.
"""

from __future__ import annotations

import colorsys
import math
import string
from collections.abc import Mapping, Sequence

import cv2
import numpy as np
import torch

from data.masks import normalised_weights

__all__ = ["FILL_KINDS", "Corruptor", "smooth_random_field", "soften_mask", "transform_donor"]

FILL_KINDS: tuple[str, ...] = ("image", "constant", "gaussian", "uniform", "graffiti", "text")

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_COMPLEX,
)
_ALPHABET = np.array(list(string.ascii_letters + string.digits))


# --------------------------------------------------------------------------- masks


def soften_mask(hole: np.ndarray, kernel_size: int = 15, iterations: int = 4) -> np.ndarray:
    """Soften the border of a hard mask by iterative Gaussian blending (VCNet).

    Each iteration blurs the mask and takes the maximum with the original hole,
    so the hole stays fully destroyed (``m == 1``) and only a ramp outside its
    border grows, from 1 down to 0.

    Args:
        hole: ``(H, W)`` float32 mask in [0, 1] (1 = hole).
        kernel_size: odd Gaussian kernel size in pixels (VCNet: 15).
        iterations: number of blur / max rounds (VCNet: 4).

    Returns:
        ``(H, W)`` float32 mask in [0, 1], ``>= hole`` everywhere.
    """
    hole = np.asarray(hole, dtype=np.float32)
    m = hole
    for _ in range(iterations):
        m = np.maximum(cv2.GaussianBlur(m, (kernel_size, kernel_size), 0), hole)
    return np.clip(m, 0.0, 1.0, out=m)


def smooth_random_field(size: tuple[int, int], rng: np.random.Generator, cells: tuple[int, int] = (2, 8)) -> np.ndarray:
    """Low-frequency random field: a coarse grid of uniform noise upsampled bicubically.

    Args:
        size: ``(H, W)``.
        rng: random generator.
        cells: inclusive range of the coarse grid size along each axis.

    Returns:
        ``(H, W)`` float32 field min-max normalised to [0, 1].
    """
    h, w = size
    gh, gw = rng.integers(cells[0], cells[1] + 1, size=2)
    grid = rng.random((int(gh), int(gw)), dtype=np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    lo, hi = float(field.min()), float(field.max())
    field = (field - lo) / max(hi - lo, 1e-6)
    return np.clip(field, 0.0, 1.0, out=field)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` bounding box (exclusive ends) of ``mask != 0`` for an ``(H, W)`` mask, or None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


# --------------------------------------------------------------------------- fills
# Each fill is a float32 array in [0, 1] broadcastable to (3, H, W).


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """Uniform RGB colour, ``(3,)`` float32 in [0, 1]."""
    return rng.random(3, dtype=np.float32)


def _saturated_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Vivid paint colour as a uint8 RGB tuple (high saturation and value)."""
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0))
    return round(r * 255), round(g * 255), round(b * 255)


def _text_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Caption-like colour: half the time near white or near black, otherwise uniform RGB."""
    u = rng.random()
    if u < 0.25:
        return (int(rng.integers(215, 256)),) * 3
    if u < 0.5:
        return (int(rng.integers(0, 40)),) * 3
    r, g, b = rng.integers(0, 256, size=3)
    return int(r), int(g), int(b)


def _constant_fill(rng: np.random.Generator, value: float | None = None) -> np.ndarray:
    """One colour for the whole hole: ``value`` if given, else uniform RGB. Shape ``(3, 1, 1)``."""
    if value is not None:
        return np.full((3, 1, 1), value, dtype=np.float32)
    return _random_colour(rng).reshape(3, 1, 1)


def _gaussian_noise_fill(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """i.i.d. N(mu, sigma) per pixel and channel, clamped to [0, 1]. Shape ``(3, H, W)``.

    mu ~ U(0, 1) per channel half the time, 0.5 otherwise; sigma ~ U(0.1, 0.5).
    """
    h, w = size
    mu = _random_colour(rng).reshape(3, 1, 1) if rng.random() < 0.5 else np.float32(0.5)
    sigma = np.float32(rng.uniform(0.1, 0.5))
    noise = rng.standard_normal((3, h, w), dtype=np.float32)
    noise *= sigma
    noise += mu
    return np.clip(noise, 0.0, 1.0, out=noise)


def _uniform_noise_fill(size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """i.i.d. U(0, 1) per pixel and channel. Shape ``(3, H, W)``."""
    h, w = size
    return rng.random((3, h, w), dtype=np.float32)


def _graffiti_fill(size: tuple[int, int], rng: np.random.Generator, stroke_scale: float | None = None) -> np.ndarray:
    """Multi-coloured paint strokes over a random background colour. Shape ``(3, H, W)``.

    Several thick anti-aliased polylines in a small palette of saturated
    colours, starting inside the canvas (the hole's bounding box, so that the
    hole shows paint rather than background) and wandering off it.

    Args:
        size: canvas ``(H, W)``.
        rng: random generator.
        stroke_scale: length scale in pixels of the stroke widths and lengths,
            normally the image's short side; defaults to ``min(H, W)``.
    """
    h, w = size
    short = min(h, w) if stroke_scale is None else stroke_scale
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = rng.integers(0, 256, size=3, dtype=np.uint8)
    palette = [_saturated_colour(rng) for _ in range(int(rng.integers(2, 5)))]
    for _ in range(int(rng.integers(6, 16))):
        n = int(rng.integers(2, 7))
        start = rng.uniform((0, 0), (w, h))
        walk = rng.normal(0.0, 0.25 * short, size=(n - 1, 2))
        pts = np.vstack([start, start + np.cumsum(walk, axis=0)])
        pts = np.round(pts).astype(np.int32).reshape(-1, 1, 2)
        thickness = max(1, round(short * rng.uniform(0.03, 0.1)))
        colour = palette[int(rng.integers(len(palette)))]
        cv2.polylines(canvas, [pts], False, colour, thickness, cv2.LINE_AA)
    return canvas.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)


def _text_fill(size: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Render a few lines of random text (captions / watermarks).

    Each line is a random string of 3-12 letters and digits in a random Hershey
    font (sometimes italic), with a height of 6-18 % of the image, a stroke
    thickness proportional to it, a random colour and a random position that
    keeps at least a quarter of the line inside the image.

    Returns:
        fill: ``(3, H, W)`` float32 -- the text colours on the glyphs, over a random
            "outline" colour that shows when the glyph mask is softened.
        glyphs: ``(H, W)`` float32 hard glyph mask in {0, 1}.
    """
    h, w = size
    glyphs = np.zeros((h, w), dtype=np.uint8)
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = _text_colour(rng)
    for _ in range(int(rng.integers(1, 4))):
        text = "".join(rng.choice(_ALPHABET, size=int(rng.integers(3, 13))))
        font = int(_FONTS[int(rng.integers(len(_FONTS)))])
        if rng.random() < 0.2:
            font |= cv2.FONT_ITALIC
        target_h = h * rng.uniform(0.06, 0.18)
        thickness = max(1, round(target_h * rng.uniform(0.06, 0.15)))
        (_, base_h), _ = cv2.getTextSize(text, font, 1.0, thickness)
        scale = max(target_h / max(base_h, 1), 0.1)
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
        x_lo, x_hi = -0.25 * tw, w - 0.75 * tw
        if x_hi < x_lo:  # line wider than the image: keep it covering the image
            x_lo, x_hi = w - tw, 0.0
        x = round(rng.uniform(x_lo, x_hi))
        y_lo, y_hi = 0.75 * th, h + 0.25 * th
        if y_hi < y_lo:  # line taller than the image (tiny images)
            y_lo, y_hi = float(h), float(th)
        y = round(rng.uniform(y_lo, y_hi))
        colour = _text_colour(rng)
        cv2.putText(glyphs, text, (x, y), font, scale, 255, thickness, cv2.LINE_8)
        cv2.putText(canvas, text, (x, y), font, scale, colour, thickness, cv2.LINE_8)
    fill = canvas.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return fill, (glyphs > 0).astype(np.float32)


def transform_donor(donor: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A donor photo made unlike its original, so a pasted crop cannot be recognised by heart.

    Geometry: horizontal and vertical flips, each with p 0.5, and a transpose with p 0.5 when the
    donor is square (together any of the 8 rotations / reflections; a non-square donor keeps its
    orientation up to flips). Colour: gamma log-uniform in [0.8, 1.25], a change a real photo could
    have; no channel swaps, which would teach that pasted photos have unnatural colours. The same
    draws are made whatever the shape.

    Args:
        donor: ``(3, H, W)`` float tensor in [0, 1].
        rng: random generator.

    Returns:
        ``(3, H, W)`` float32 in [0, 1], on the CPU.
    """
    flip_h, flip_v, transpose = (rng.random(3) < 0.5).tolist()
    gamma = float(np.exp(rng.uniform(-math.log(1.25), math.log(1.25))))
    out = donor.detach().to("cpu", torch.float32)
    out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clamp(0, 1)
    if transpose and out.shape[1] == out.shape[2]:
        out = out.transpose(1, 2)
    if flip_h:
        out = out.flip(2)
    if flip_v:
        out = out.flip(1)
    return out.pow(gamma).contiguous()


# --------------------------------------------------------------------------- corruptor


def _unit_range(name: str, value: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (low, high), got {value!r}") from None
    if not (0.0 <= lo <= hi <= 1.0):
        raise ValueError(f"{name} must satisfy 0 <= low <= high <= 1, got ({lo}, {hi})")
    return lo, hi


def _probability(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
    return value


class Corruptor:
    """Synthesise a blind-inpainting training pair ``(corrupted, m)``.

    ``corrupted = (1 - m) * image + m * fill`` with ``m`` continuous in [0, 1]
    (1 = destroyed). Per sample:

    1. a fill kind is drawn from ``fills``;
    2. the mask starts from ``hole`` -- except for ``text``, whose **glyph mask
       replaces the hole** (text is its own corruption shape, like captions and
       watermarks; the hole is kept only if no glyph lands in the image), and
       in ``spread`` mode (see below);
    3. with probability ``soft_prob`` the border is softened by VCNet's
       iterative Gaussian blending (:func:`soften_mask`): the hole stays at 1
       and a ramp grows outside it;
    4. with probability ``alpha_prob`` the overlay is made semi-transparent:
       ``m *= a``, ``a ~ U(alpha_range)``;
    5. the fill is drawn and blended.

    Fill kinds (:data:`FILL_KINDS`):

    * ``image``: the ``donor`` image (VCNet; hardest to detect), by default
      flipped / transposed and recoloured first (:func:`transform_donor`, drawn
      from ``rng``) so that the network cannot learn the donor photos by heart
      and spot them as foreign; ``donor_transform=False`` pastes it as it is.
      If ``donor`` is None, another kind is drawn from the remaining configured
      kinds (renormalised), or ``gaussian`` if ``image`` is the only one.
    * ``constant``: one uniform random RGB colour, or ``fill_value`` if set.
    * ``gaussian``: N(mu, sigma) per pixel and channel, clamped.
    * ``uniform``: U(0, 1) per pixel and channel.
    * ``graffiti``: thick multi-coloured paint strokes over a background colour.
    * ``text``: rendered random text (Hershey fonts); see step 2.

    Spread mode (``spread=True``, "denoise-as-inpaint"): ``m`` is a smooth random
    field over the whole image (:func:`smooth_random_field`) rescaled to a
    random sub-interval of ``level_range``; the hole is ignored unless
    ``use_hole=True``, in which case ``m = max(field, hole)`` with the hole
    softened as in step 3 beforehand; step 4 applies to the result. ``text``
    cannot be used in spread mode.

    Args:
        fills: fill kind -> weight (normalised to probabilities).
        soft_prob: probability of soft borders.
        soft_kernel: Gaussian kernel size of the soft borders (odd, VCNet: 15).
        soft_iters: blending iterations of the soft borders (VCNet: 4).
        alpha_prob: probability of a semi-transparent overlay.
        alpha_range: range of the overlay opacity ``a``.
        fill_value: fixed value of the ``constant`` fill (e.g. 1.0 = white, as
            in EdgeConnect); None draws a random colour.
        spread: spread, low-amplitude mask over the whole image.
        level_range: range of ``m`` in spread mode.
        use_hole: in spread mode, also destroy the hole (union).
        donor_transform: transform the donor before pasting it (``image`` fill).

    Call:
        image: ``(3, H, W)`` float tensor in [0, 1].
        hole: ``(1, H, W)`` tensor in {0, 1} (1 = hole).
        rng: ``numpy.random.Generator``; the only source of randomness.
        donor: ``(3, H, W)`` real image for the ``image`` fill, or None.

    Returns:
        corrupted: ``(3, H, W)`` float32 in [0, 1], bitwise equal to ``image``
            wherever ``m == 0``.
        m: ``(1, H, W)`` float32 in [0, 1], the mask actually used in the blend.
    """

    def __init__(
        self,
        *,
        fills: Mapping[str, float] | None = None,
        soft_prob: float = 0.5,
        soft_kernel: int = 15,
        soft_iters: int = 4,
        alpha_prob: float = 0.3,
        alpha_range: Sequence[float] = (0.5, 1.0),
        fill_value: float | None = None,
        spread: bool = False,
        level_range: Sequence[float] = (0.05, 0.4),
        use_hole: bool = False,
        donor_transform: bool = True,
    ) -> None:
        if fills is None:
            fills = {"image": 0.4, "constant": 0.1, "gaussian": 0.1, "uniform": 0.1, "graffiti": 0.15, "text": 0.15}
        self.fills = normalised_weights(fills, FILL_KINDS, "fill kind")
        self._kinds = tuple(self.fills)
        self._probs = np.array([self.fills[k] for k in self._kinds])

        self.soft_prob = _probability("soft_prob", soft_prob)
        if int(soft_kernel) != soft_kernel or soft_kernel < 3 or soft_kernel % 2 == 0:
            raise ValueError(f"soft_kernel must be an odd integer >= 3, got {soft_kernel}")
        if int(soft_iters) != soft_iters or soft_iters < 1:
            raise ValueError(f"soft_iters must be an integer >= 1 (use soft_prob=0 to disable), got {soft_iters}")
        self.soft_kernel = int(soft_kernel)
        self.soft_iters = int(soft_iters)
        self.alpha_prob = _probability("alpha_prob", alpha_prob)
        self.alpha_range = _unit_range("alpha_range", alpha_range)
        if fill_value is not None:
            fill_value = float(fill_value)
            if not 0.0 <= fill_value <= 1.0:
                raise ValueError(f"fill_value must be in [0, 1] or None, got {fill_value}")
        self.fill_value = fill_value
        self.spread = bool(spread)
        self.level_range = _unit_range("level_range", level_range)
        self.use_hole = bool(use_hole)
        self.donor_transform = bool(donor_transform)
        if self.spread and "text" in self.fills:
            raise ValueError("the 'text' fill defines its own mask and cannot be combined with spread=True")

    # ------------------------------------------------------------------ helpers

    def _draw_kind(self, rng: np.random.Generator, has_donor: bool) -> str:
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._probs))]
        if kind == "image" and not has_donor:
            others = [k for k in self._kinds if k != "image"]
            if not others:
                return "gaussian"
            p = np.array([self.fills[k] for k in others])
            kind = others[int(rng.choice(len(others), p=p / p.sum()))]
        return kind

    def _spread_mask(self, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
        lo, hi = np.sort(rng.uniform(*self.level_range, size=2))
        field = smooth_random_field(size, rng)
        return (np.float32(lo) + np.float32(hi - lo) * field).astype(np.float32)

    def _fill(
        self,
        kind: str,
        box: tuple[int, int, int, int],
        image_size: tuple[int, int],
        rng: np.random.Generator,
        donor: torch.Tensor | None,
    ) -> torch.Tensor:
        """Fill of the ``(y0, y1, x0, x1)`` box of the image, broadcastable to ``(3, y1 - y0, x1 - x0)``."""
        y0, y1, x0, x1 = box
        size = (y1 - y0, x1 - x0)
        if kind == "image":
            assert donor is not None
            if self.donor_transform:
                return transform_donor(donor, rng)[:, y0:y1, x0:x1]
            crop = donor.detach()[:, y0:y1, x0:x1].to("cpu", torch.float32)
            return torch.nan_to_num(crop, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1)
        if kind == "constant":
            fill = _constant_fill(rng, self.fill_value)
        elif kind == "gaussian":
            fill = _gaussian_noise_fill(size, rng)
        elif kind == "uniform":
            fill = _uniform_noise_fill(size, rng)
        elif kind == "graffiti":
            fill = _graffiti_fill(size, rng, stroke_scale=min(image_size))
        else:
            raise AssertionError(kind)
        return torch.from_numpy(fill)

    # ------------------------------------------------------------------ call

    def __call__(
        self,
        image: torch.Tensor,
        hole: torch.Tensor,
        rng: np.random.Generator,
        donor: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must have shape (3, H, W), got {tuple(image.shape)}")
        size = (int(image.shape[1]), int(image.shape[2]))
        if tuple(hole.shape) != (1, *size):
            raise ValueError(f"hole must have shape (1, {size[0]}, {size[1]}), got {tuple(hole.shape)}")
        if donor is not None and tuple(donor.shape) != tuple(image.shape):
            raise ValueError(f"donor must have the image's shape {tuple(image.shape)}, got {tuple(donor.shape)}")

        kind = self._draw_kind(rng, donor is not None)
        hole_np = np.clip(hole.detach().cpu().numpy()[0].astype(np.float32), 0.0, 1.0)
        text_fill = None
        if kind == "text":
            text_fill, glyphs = _text_fill(size, rng)
            if glyphs.any():
                hole_np = glyphs

        if self.spread and not self.use_hole:
            m = self._spread_mask(size, rng)
        else:
            m = hole_np
            if rng.random() < self.soft_prob:
                m = soften_mask(m, self.soft_kernel, self.soft_iters)
            if self.spread:
                m = np.maximum(m, self._spread_mask(size, rng))
        if rng.random() < self.alpha_prob:
            m = m * np.float32(rng.uniform(*self.alpha_range))
        m = np.clip(m, 0.0, 1.0).astype(np.float32, copy=False)
        m_t = torch.from_numpy(m)[None]
        image = image.detach().to("cpu", torch.float32)
        corrupted = image.clone()

        # Fills are only generated and blended over the bounding box of m > 0.
        box = _bbox(m)
        if box is None:
            return corrupted, m_t
        y0, y1, x0, x1 = box
        if text_fill is not None:
            fill = torch.from_numpy(text_fill[:, y0:y1, x0:x1])
        else:
            fill = self._fill(kind, box, size, rng, donor)
        mb = m_t[:, y0:y1, x0:x1]
        corrupted[:, y0:y1, x0:x1] = ((1 - mb) * image[:, y0:y1, x0:x1] + mb * fill).clamp_(0, 1)
        return corrupted, m_t

    def __repr__(self) -> str:
        fills = ", ".join(f"{k}={v:.3g}" for k, v in self.fills.items())
        args = [
            f"fills={{{fills}}}",
            f"soft_prob={self.soft_prob}",
            f"soft_kernel={self.soft_kernel}",
            f"soft_iters={self.soft_iters}",
            f"alpha_prob={self.alpha_prob}",
            f"alpha_range={self.alpha_range}",
            f"fill_value={self.fill_value}",
        ]
        if not self.donor_transform:
            args.append("donor_transform=False")
        if self.spread:
            args += ["spread=True", f"level_range={self.level_range}", f"use_hole={self.use_hole}"]
        return f"{type(self).__name__}({', '.join(args)})"
