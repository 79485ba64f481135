"""Classical denoisers: the baselines of the denoise protocol and the floor that denoise-as-inpaint
starts from (:func:`classical_denoise`).

- ``nlm``: non-local means, A. Buades, B. Coll, J.-M. Morel, "A non-local algorithm for image
  denoising", CVPR 2005 (OpenCV's ``fastNlMeansDenoisingColored``), its strength set from the
  noise level :func:`estimate_noise` finds;
- ``median``: the 3×3 median filter, the classic answer to impulse (salt-and-pepper) noise;
- ``classical_denoise``: impulses found (:func:`find_impulses`) and replaced by the median of
  their intact neighbours (a switching median filter), then non-local means at the level of
  the Gaussian-like noise left.

Convention as :mod:`common.classical`: float32 ``(H, W, 3)`` in [0, 1] in and out.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

__all__ = ["classical_denoise", "estimate_noise", "find_impulses", "median", "nlm"]

# Non-local means strength h = σ·(a − b·σ) (OpenCV's h and hColor, 8-bit units): the best h per σ
# on the bundled training photos is 0.8σ at σ 15-25 and 0.6σ at σ 50. Below QUIET (σ, 8-bit units)
# a photo is left as it is: a camera JPEG's own noise (the bundled photos: σ 0.2-1.7).
NLM_STRENGTH = (0.9, 0.006)
QUIET = 2.5
# An impulse: a channel at the end of the range, this far from its 3×3 median.
IMPULSE_JUMP = 0.3
IMPULSE_SHARE = 0.002  # fewer impulses than this share of the pixels are a photo's own highlights


def _pixels(image) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def estimate_noise(image) -> float:
    """The σ (8-bit units) of additive white noise in ``image`` ``(H, W, 3)``: J. Immerkær, "Fast
    Noise Variance Estimation", CVIU 64(2), 1996 — the mean absolute response of the Laplacian
    difference mask, which cancels smooth signal — per channel (a grey conversion would average
    colour noise down by a third), over the flatter half of the photo (gradient of the smoothed
    channel below its median), since edges and texture are signal, not noise.

    ``image``: float in [0, 1], as every function here takes it.

    >>> rng = np.random.default_rng(0)
    >>> flat = np.full((128, 128, 3), 0.5)
    >>> round(estimate_noise(flat + rng.normal(0, 10 / 255, flat.shape)))  # σ 10 in 8-bit units
    10
    >>> estimate_noise(flat)
    0.0
    """
    pixels = _pixels(image).astype(np.float64)
    if min(pixels.shape[:2]) < 3:
        return 0.0
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    sigmas = []
    for channel in np.moveaxis(pixels, 2, 0):
        response = np.abs(cv2.filter2D(channel, -1, kernel, borderType=cv2.BORDER_REFLECT))[1:-1, 1:-1]
        smooth = cv2.GaussianBlur(channel, (0, 0), 1.5)
        gradient = np.hypot(cv2.Sobel(smooth, -1, 1, 0), cv2.Sobel(smooth, -1, 0, 1))[1:-1, 1:-1]
        sigmas.append(np.sqrt(np.pi / 2) / 6 * response[gradient <= np.median(gradient)].mean())
    return float(np.mean(sigmas))


def find_impulses(image) -> np.ndarray:
    """``(H, W)`` bool: the pixels one of whose channels is at the end of the range (≤ 1/255 or ≥
    254/255) and :data:`IMPULSE_JUMP` away from its 3×3 median — salt and pepper."""
    pixels = _pixels(image)
    med = cv2.medianBlur(pixels, 3).astype(np.int16)
    extreme = (pixels <= 1) | (pixels >= 254)
    jump = np.abs(pixels.astype(np.int16) - med) > IMPULSE_JUMP * 255
    return (extreme & jump).any(axis=2)


def median(image, size: int = 3) -> np.ndarray:
    """The ``size``×``size`` median filter of ``image`` ``(H, W, 3)``."""
    return cv2.medianBlur(_pixels(image), size).astype(np.float32) / 255


def nlm(image, sigma: float | None = None) -> np.ndarray:
    """Non-local means of ``image`` ``(H, W, 3)`` at noise level ``sigma`` (8-bit units;
    :func:`estimate_noise`'s when None): h = hColor = σ·(a − b·σ) (:data:`NLM_STRENGTH`), 7×7
    patches in a 21×21 window (OpenCV's defaults)."""
    pixels = _pixels(image)
    sigma = estimate_noise(image) if sigma is None else float(sigma)
    a, b = NLM_STRENGTH
    strength = max(sigma * max(a - b * sigma, 0.4), 1.0)
    out = cv2.fastNlMeansDenoisingColored(pixels, None, strength, strength, 7, 21)
    return out.astype(np.float32) / 255


def _switching_median(pixels: np.ndarray, hits: np.ndarray, chunk: int = 1 << 18) -> np.ndarray:
    """Each hit pixel replaced by the median of the intact pixels of its 3×3 window, growing the
    window (5×5, 9×9, 17×17) where none is intact; the rest as it is."""
    out = pixels.copy()
    todo = np.argwhere(hits)
    for radius in (1, 2, 4, 8):
        if not len(todo):
            break
        pad = np.pad(pixels.astype(np.float32), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
        padded_hits = np.pad(hits, radius, mode="reflect")
        offsets = np.stack(np.mgrid[0 : 2 * radius + 1, 0 : 2 * radius + 1], -1).reshape(-1, 2)
        left = []
        for start in range(0, len(todo), chunk):
            where = todo[start : start + chunk]
            rows, cols = where[:, :1] + offsets[:, 0], where[:, 1:] + offsets[:, 1]  # (n, k)
            values = pad[rows, cols]  # (n, k, 3)
            values[padded_hits[rows, cols]] = np.nan
            found = ~np.isnan(values[:, :, 0]).all(1)
            with np.errstate(all="ignore"):
                medians = np.nanmedian(values[found], axis=1)
            out[where[found, 0], where[found, 1]] = np.round(medians).astype(np.uint8)
            left.append(where[~found])
        todo = np.concatenate(left) if left else todo[:0]
    return out


def classical_denoise(image, impulses: bool = False):
    """The classical floor of denoising ``image`` ``(H, W, 3)`` -> ``(H, W, 3)``: impulses
    replaced by the median of their intact neighbours where more than :data:`IMPULSE_SHARE` of
    the pixels are impulses, then non-local means at the noise level left, where it is above
    :data:`QUIET`. A clean photo comes back as it is. With ``impulses``, also the ``(H, W)``
    float32 map of the impulses replaced (1; else 0)."""
    pixels = _pixels(image)
    out = np.asarray(image, np.float32).copy()
    hits = find_impulses(image)
    replaced = hits.mean() > IMPULSE_SHARE
    if replaced:
        out = _switching_median(pixels, hits).astype(np.float32) / 255
    sigma = estimate_noise(out)
    if sigma > QUIET:
        out = nlm(out, sigma)
    return (out, (hits & replaced).astype(np.float32)) if impulses else out


@torch.no_grad()
def denoise_batch(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`classical_denoise` of each image of ``image`` ``(B, 3, H, W)`` in [0, 1], on its
    device and dtype: the denoised images ``(B, 3, H, W)`` and the impulses replaced ``(B, 1, H,
    W)`` in {0, 1}. It runs as the operator ``torch.ops.blindfill.classical_denoise``, so a traced
    pipeline records the call rather than its result."""
    both = torch.ops.blindfill.classical_denoise(image)
    return both[:, :3], both[:, 3:]


@torch.library.custom_op("blindfill::classical_denoise", mutates_args=())
def _classical_denoise_op(image: torch.Tensor) -> torch.Tensor:
    pictures = image.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    results = [classical_denoise(p, impulses=True) for p in pictures]
    out = np.stack([np.concatenate([d, i[..., None]], axis=2) for d, i in results])
    return torch.from_numpy(out).permute(0, 3, 1, 2).to(image.device, image.dtype)


@_classical_denoise_op.register_fake
def _(image: torch.Tensor) -> torch.Tensor:
    return image.new_empty(image.shape[0], 4, *image.shape[2:])
