"""Photo noise as damage: the noise kinds a denoiser meets, each with the soft mask of how much of
every pixel it destroyed (denoising as inpainting with a soft, grey-valued mask).

Kinds (:data:`NOISE_KINDS`), all on float images in [0, 1], results clipped to [0, 1] and rounded
to 8 bits (what a user's file holds). ``colour`` noise is drawn per channel, ``luminance`` noise
once per pixel and added to every channel (p 0.5 each unless said):

==============  ==========================================================================
gaussian        additive N(0, σ²), σ ~ U(5, 60)/255
poisson         shot noise: ``Poisson(x·p)/p``, p ~ log-U(5, 300) photons at white
salt_pepper     impulses: a share ~ U(1, 25) % of the pixels (per channel for colour) set to
                0 or 1 (salt share ~ U(0.3, 0.7))
speckle         multiplicative: ``x·(1 + s·n)``, n ~ N(0, 1), s ~ U(0.05, 0.4)
jpeg            JPEG compression at quality 5-35 (blocking and ringing; colour only)
grain           film grain: N(0, 1) blurred by a Gaussian of 0.5-1.5 px, scaled to unit
                std, times ``a·2·sqrt(x(1 − x))`` (strongest in the mid-tones), a ~ U(0.02,
                0.12); luminance p 0.7
==============  ==========================================================================

The soft ground truth ``m`` (:func:`noise_mask`). For impulses a hit pixel is wholly destroyed:
``m = r`` where a channel was set, 0 elsewhere (``r`` the noise's local strength, below). For
every other kind ``m`` is the **Wiener weight** of the noise: with ``E`` the local energy of the
error ``y − x`` and ``V`` the local variance of the clean signal (Gaussian windows of σ
:data:`WINDOW_SIGMA` px, channel means)::

    m = E / (E + V + ε),   ε = (2/255)²

so that ``(1 − m)·y + m·μ`` (``μ`` the local mean) is the Wiener estimate of ``x``: ``m`` → 1
where the noise swamps the signal (flat regions, strong noise), → 0 where the signal's detail
dominates or there is no noise, and ε keeps an 8-bit rounding error from counting as damage. The
mask says how much of a pixel's own value to discard in favour of what its neighbourhood says —
exactly the blend weight of the denoise-as-inpaint composite ``(1 − m)·y + m·fill``.

Regional noise (``regional``) applies the noise through a soft blob ``r`` (a LaMa mask, softened):
``y = x + r·(noisy − x)``; ``m`` follows from the realised error, so it is 0 wherever ``y = x``.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from data.corruption import soften_mask
from data.masks import LamaMasks

__all__ = ["LEVELS", "NOISE_KINDS", "WINDOW_SIGMA", "Noise", "add_noise", "make_noise", "noise_mask"]

NOISE_KINDS: tuple[str, ...] = ("gaussian", "poisson", "salt_pepper", "speckle", "jpeg", "grain")
WINDOW_SIGMA = 1.5  # px: the Gaussian window of the local energies of noise_mask
_EPS = (2.0 / 255.0) ** 2
_REGIONS = (LamaMasks("medium", max_area=0.5), LamaMasks("thick", max_area=0.5))


def _blur(a: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def _field(shape: tuple[int, int], rng: np.random.Generator, colour: bool) -> np.ndarray:
    """N(0, 1) noise ``(3, H, W)``: per channel, or one field repeated over the channels."""
    if colour:
        return rng.standard_normal((3, *shape), dtype=np.float32)
    return np.broadcast_to(rng.standard_normal(shape, dtype=np.float32), (3, *shape)).copy()


# The strength each kind draws (add_noise) and what it means (make_noise's ``level``).
LEVELS = {
    "gaussian": (5.0, 60.0),  # σ, 8-bit units
    "poisson": (5.0, 300.0),  # photons at white (drawn log-uniform)
    "salt_pepper": (0.01, 0.25),  # share of the pixels hit
    "speckle": (0.05, 0.4),  # s
    "jpeg": (5, 35),  # quality
    "grain": (0.02, 0.12),  # a
}


def add_noise(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` ``(3, H, W)`` float32 in [0, 1] with noise of ``kind``, its strength (:data:`LEVELS`)
    and colour drawn from ``rng`` (see the module docstring); returns :func:`make_noise`'s."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid kinds are {', '.join(NOISE_KINDS)}")
    lo, hi = LEVELS[kind]
    if kind == "poisson":
        level = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    elif kind == "jpeg":
        level = int(rng.integers(lo, hi + 1))
    else:
        level = float(rng.uniform(lo, hi))
    colour = bool(rng.random() < (0.3 if kind == "grain" else 0.5))
    return make_noise(image, kind, level, colour, rng)


def make_noise(
    image: np.ndarray, kind: str, level: float, colour: bool, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` ``(3, H, W)`` float32 in [0, 1] with noise of ``kind`` at ``level`` (its meaning per
    kind: :data:`LEVELS`), per channel (``colour``) or the same in every channel, the noise itself
    drawn from ``rng`` -> ``(noisy (3, H, W), hits)``: ``hits`` ``(H, W)`` bool for impulse noise (a
    channel was set), else None."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid kinds are {', '.join(NOISE_KINDS)}")
    x = np.asarray(image, np.float32)
    shape = x.shape[1:]
    hits = None
    if kind == "gaussian":
        y = x + np.float32(level / 255) * _field(shape, rng, colour)
    elif kind == "poisson":
        if colour:
            y = rng.poisson(x * level).astype(np.float32) / np.float32(level)
        else:
            grey = x.mean(0)
            y = x + (rng.poisson(grey * level).astype(np.float32) / np.float32(level) - grey)
    elif kind == "salt_pepper":
        salt = rng.uniform(0.3, 0.7)
        draw_shape = (3, *shape) if colour else shape
        hit = rng.random(draw_shape) < level
        value = (rng.random(draw_shape) < salt).astype(np.float32)
        if not colour:
            hit, value = np.broadcast_to(hit, x.shape), np.broadcast_to(value, x.shape)
        y = np.where(hit, value, x)
        hits = hit.any(0) if colour else hit[0].copy()
    elif kind == "speckle":
        y = x * (1 + np.float32(level) * _field(shape, rng, colour))
    elif kind == "jpeg":
        pixels = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)[..., ::-1]
        _, encoded = cv2.imencode(".jpg", np.ascontiguousarray(pixels), [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        y = cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255
    else:  # grain
        sigma = rng.uniform(0.5, 1.5)
        grain = np.stack([_blur(np.ascontiguousarray(c), sigma) for c in _field(shape, rng, colour)])
        grain /= max(float(grain.std()), 1e-6)
        amplitude = np.float32(level) * 2 * np.sqrt(np.clip(x * (1 - x), 0, None))
        y = x + amplitude * grain
    y = np.round(np.clip(y, 0, 1) * 255).astype(np.float32) / np.float32(255)
    return y, hits


def noise_mask(clean: np.ndarray, noisy: np.ndarray, hits: np.ndarray | None = None) -> np.ndarray:
    """How much of each pixel the noise destroyed, ``(H, W)`` float32 in [0, 1] (see the module
    docstring): the Wiener weight ``E / (E + V + ε)`` from ``clean`` and ``noisy`` ``(3, H, W)``,
    or for impulse noise the ``hits`` ``(H, W)`` (float: a hit's share, 1 for a whole one) where the
    pixel differs from ``clean``."""
    x, y = np.asarray(clean, np.float32), np.asarray(noisy, np.float32)
    if hits is not None:
        changed = np.abs(y - x).max(0) > 0.5 / 255
        return np.where(changed, np.clip(hits.astype(np.float32), 0, 1), 0).astype(np.float32)
    error = _blur(np.ascontiguousarray(((y - x) ** 2).mean(0)), WINDOW_SIGMA)
    mean = np.stack([_blur(np.ascontiguousarray(c), WINDOW_SIGMA) for c in x])
    variance = _blur(np.ascontiguousarray((x**2).mean(0)), WINDOW_SIGMA) - (mean**2).mean(0)
    m = error / (error + np.clip(variance, 0, None) + _EPS)
    m[np.abs(y - x).max(0) == 0] = 0.0  # an untouched pixel lost nothing (and y = x where m = 0)
    return np.clip(m, 0, 1).astype(np.float32)


class Noise:
    """Photo noise as a kind of damage (the ``(image, rng, donor) -> (corrupted, mask)`` call of
    :class:`data.damage.Damage`): a noise kind drawn from ``kinds``, over the whole photo or, with
    probability ``regional``, through a soft blob; the mask is :func:`noise_mask`'s.

    Args:
        kinds: the noise kinds to draw from, equally (default: all of :data:`NOISE_KINDS`).
        regional: probability that the noise covers a soft blob rather than the whole photo.

    Call:
        image: ``(3, H, W)`` float tensor in [0, 1]; rng: the only source of randomness; donor:
        ignored.

    Returns:
        corrupted ``(3, H, W)`` float32 in [0, 1], equal to ``image`` where ``mask == 0``, and the
        continuous ``mask`` ``(1, H, W)``.
    """

    def __init__(self, kinds=None, regional: float = 0.3) -> None:
        kinds = tuple(NOISE_KINDS if kinds is None else kinds)
        unknown = [k for k in kinds if k not in NOISE_KINDS]
        if not kinds or unknown:
            raise ValueError(f"noise kinds must be some of {', '.join(NOISE_KINDS)}, got {list(kinds)}")
        if not 0 <= regional <= 1:
            raise ValueError(f"regional must be a probability in [0, 1], got {regional}")
        self.kinds, self.regional = kinds, float(regional)

    def __call__(self, image: torch.Tensor, rng: np.random.Generator, donor: torch.Tensor | None = None):
        if not torch.is_tensor(image) or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image must be a (3, H, W) tensor, got {getattr(image, 'shape', type(image))}")
        x = image.detach().to("cpu", torch.float32).clamp(0, 1).numpy()
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        noisy, hits = add_noise(x, kind, rng)
        if rng.random() < self.regional:
            blob = _REGIONS[int(rng.integers(len(_REGIONS)))](*x.shape[1:], rng)
            region = soften_mask(np.asarray(blob, np.float32), 15, 4)
            noisy = np.round((x + region * (noisy - x)) * 255) / np.float32(255)
            noisy = np.where(region > 0, noisy, x).astype(np.float32)
            hits = None if hits is None else hits * region
        mask = noise_mask(x, noisy, hits)
        return torch.from_numpy(noisy), torch.from_numpy(mask)[None]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kinds={list(self.kinds)}, regional={self.regional})"
