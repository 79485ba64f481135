"""Diffusion-style inpainting baselines, plus the input/output conventions every baseline shares.

- ``telea``: fast marching method, A. Telea, "An Image Inpainting Technique Based on the Fast
  Marching Method", Journal of Graphics Tools 9(1), 2004 (``cv2.INPAINT_TELEA``).
- ``navier_stokes``: M. Bertalmio, A. L. Bertozzi, G. Sapiro, "Navier-Stokes, Fluid Dynamics, and
  Image and Video Inpainting", CVPR 2001 (``cv2.INPAINT_NS``).
- ``biharmonic``: S. B. Damelin, N. S. Hoang, "On Surface Completion and Image Inpainting by
  Biharmonic Functions", Int. J. Math. Math. Sci. 2018 (``skimage.restoration.inpaint_biharmonic``).

Convention (all baselines): ``image`` is float32 ``(H, W, 3)`` in [0, 1] whose hole pixels hold
garbage; ``mask`` is ``(H, W)`` with holes where ``mask > 0.5``; the result is float32 ``(H, W, 3)``
in [0, 1] and equals ``image`` exactly outside the hole.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.restoration import inpaint_biharmonic


def prepare_inputs(image, mask) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes and return ``(image, hole)``: a float32 ``(H, W, 3)`` copy with the hole set to 0
    (so garbage such as NaN never leaks into a method) and the bool ``(H, W)`` hole."""
    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3), got {image.shape}")
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask must be (H, W) = {image.shape[:2]}, got {mask.shape}")
    hole = mask > 0.5
    return np.where(hole[..., None], np.float32(0), image), hole


def keep_known(filled: np.ndarray, image, hole: np.ndarray) -> np.ndarray:
    """The float32 ``(H, W, 3)`` result: ``filled`` (clipped to [0, 1]) inside ``hole``, the
    original ``image`` bit for bit outside it."""
    out = np.array(image, dtype=np.float32, copy=True)
    out[hole] = np.clip(filled[hole], 0.0, 1.0)
    return out


def _grey_fill(image, hole: np.ndarray) -> np.ndarray:
    """Nothing is known to propagate from: fill the hole with mid-grey."""
    return keep_known(np.full(hole.shape + (3,), 0.5, np.float32), image, hole)


def _cv2_inpaint(image, mask, radius: float, flags: int) -> np.ndarray:
    clean, hole = prepare_inputs(image, mask)
    if not hole.any():
        return np.array(image, dtype=np.float32, copy=True)
    if hole.all():
        return _grey_fill(image, hole)
    as_uint8 = np.round(np.clip(clean, 0.0, 1.0) * 255).astype(np.uint8)  # cv2.inpaint is 8-bit only
    filled = cv2.inpaint(as_uint8, hole.astype(np.uint8), float(radius), flags)
    return keep_known(filled.astype(np.float32) / 255.0, image, hole)


def telea(image, mask, radius: float = 3) -> np.ndarray:
    """Telea's fast-marching inpainting. ``image`` ``(H, W, 3)``, ``mask`` ``(H, W)`` -> ``(H, W, 3)``.

    ``radius``: the neighbourhood (pixels) each filled pixel is estimated from."""
    return _cv2_inpaint(image, mask, radius, cv2.INPAINT_TELEA)


def navier_stokes(image, mask, radius: float = 3) -> np.ndarray:
    """Bertalmio et al.'s Navier-Stokes inpainting. ``image`` ``(H, W, 3)``, ``mask`` ``(H, W)`` ->
    ``(H, W, 3)``."""
    return _cv2_inpaint(image, mask, radius, cv2.INPAINT_NS)


def biharmonic(image, mask) -> np.ndarray:
    """Biharmonic (smoothest C1) fill, per channel. ``image`` ``(H, W, 3)``, ``mask`` ``(H, W)`` ->
    ``(H, W, 3)``."""
    clean, hole = prepare_inputs(image, mask)
    if not hole.any():
        return np.array(image, dtype=np.float32, copy=True)
    if hole.all():
        return _grey_fill(image, hole)
    filled = inpaint_biharmonic(clean.astype(np.float64), hole, channel_axis=-1)
    return keep_known(filled.astype(np.float32), image, hole)
