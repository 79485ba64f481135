"""Classical hole fills: the diffusion-style inpainting baselines, the pull-push pyramid, and the
floor a learned fill starts from (:func:`classical_fill`).

- ``telea``: fast marching method, A. Telea, "An Image Inpainting Technique Based on the Fast
  Marching Method", Journal of Graphics Tools 9(1), 2004 (``cv2.INPAINT_TELEA``).
- ``navier_stokes``: M. Bertalmio, A. L. Bertozzi, G. Sapiro, "Navier-Stokes, Fluid Dynamics, and
  Image and Video Inpainting", CVPR 2001 (``cv2.INPAINT_NS``).
- ``biharmonic``: S. B. Damelin, N. S. Hoang, "On Surface Completion and Image Inpainting by
  Biharmonic Functions", Int. J. Math. Math. Sci. 2018 (``skimage.restoration.inpaint_biharmonic``).

- ``pull_push``: the pull-push pyramid, S. J. Gortler et al., "The Lumigraph", SIGGRAPH 1996
  (torch: any device, differentiable).

Convention (the numpy fills, every baseline of :mod:`pipeline.methods.classical`): ``image`` is float32
``(H, W, 3)`` in [0, 1] whose hole pixels hold garbage; ``mask`` is ``(H, W)`` with holes where
``mask > 0.5``; the result is float32 ``(H, W, 3)`` in [0, 1] and equals ``image`` exactly outside
the hole. :func:`classical_fill` runs one on torch batches.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic

from common.ops import hard_mask


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


def pull_push_fill(image: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """A classical fill of the hole of ``mask`` ``(B, 1, H, W)`` (1 = destroyed, soft values weigh
    the pixel less) in ``image`` ``(B, C, H, W)``: the pull-push pyramid (Gortler et al., "The
    Lumigraph", 1996). Pull: halve the resolution, averaging the known colours weighted by how
    known they are (weights summed, capped at 1); push: from the coarsest level back, each pixel is
    its own colour where known and the upsampled coarser colour where not. Smooth, in torch (so on
    the GPU and differentiable), ``O(H·W)``; known pixels are returned as they are."""
    weight = (1 - mask).clamp(0, 1).to(image.dtype)
    levels = [(image, weight)]
    while min(levels[-1][0].shape[-2:]) > 1:
        colour, weight = levels[-1]
        summed = F.avg_pool2d(weight, 2, ceil_mode=True)
        colour = F.avg_pool2d(colour * weight, 2, ceil_mode=True) / summed.clamp_min(eps)
        levels.append((colour, (4 * summed).clamp(max=1)))
    filled = levels[-1][0]
    for colour, weight in reversed(levels[:-1]):
        coarser = F.interpolate(filled, size=colour.shape[-2:], mode="bilinear", align_corners=False)
        filled = weight * colour + (1 - weight) * coarser
    return filled


# How far into a hole Telea's fill is trusted before pull-push takes over (px, the e-folding distance).
TELEA_REACH = 4.0


def telea_pull_push(image, mask) -> np.ndarray:
    """Telea's fill near the hole's border, the pull-push pyramid's deeper inside (see
    :func:`classical_fill`). ``image`` ``(H, W, 3)``, ``mask`` ``(H, W)`` -> ``(H, W, 3)``."""
    clean, hole = prepare_inputs(image, mask)
    batch = torch.from_numpy(clean).permute(2, 0, 1)[None]
    filled = classical_fill(batch, torch.from_numpy(hole)[None, None].float(), "telea_pull_push")
    return keep_known(filled[0].permute(1, 2, 0).numpy(), image, hole)


# The floors a learned fill may start from (ipn.module.IPNModule's prefill), fast enough to run on
# every training batch: a batch of 8 at 128² on 2 CPU threads, Telea ≈ 30 ms, pull-push ≈ 15 ms.
FLOORS = ("telea", "navier_stokes", "pull_push", "telea_pull_push")
_NUMPY_FILLS = {"telea": telea, "navier_stokes": navier_stokes}


def _per_image(fill, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """A numpy fill of :mod:`common.classical` run on each image of a batch."""
    pictures = image.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    holes = hole[:, 0].float().cpu().numpy()
    filled = np.stack([fill(picture, h) for picture, h in zip(pictures, holes)])
    return torch.from_numpy(filled).permute(0, 3, 1, 2).to(image.device, image.dtype)


def _telea_weight(hole: torch.Tensor, reach: float = TELEA_REACH) -> torch.Tensor:
    """``exp(−d / reach)`` ``(B, 1, H, W)``, ``d`` each hole pixel's distance (px) to the nearest
    known one."""
    holes = hole[:, 0].to(torch.uint8).cpu().numpy()
    distance = np.stack([cv2.distanceTransform(h, cv2.DIST_L2, 5) for h in holes])
    return torch.from_numpy(np.exp(-distance / reach))[:, None].to(hole.device, hole.dtype)


@torch.no_grad()
def classical_fill(image: torch.Tensor, mask: torch.Tensor, method: str = "telea") -> torch.Tensor:
    """``image`` ``(B, 3, H, W)`` in [0, 1] with the hole of ``mask`` ``(B, 1, H, W)`` (``m > 0.5``)
    filled by ``method`` (:data:`FLOORS`); every other pixel is ``image``'s, bit for bit. On
    ``image``'s device and dtype; no gradient (a fixed starting point, not a part that learns).

    ``telea_pull_push``: Telea's fill near the hole's border, pull-push's deeper inside, weighted
    ``w = exp(−d / 4 px)`` and ``1 − w`` by the distance ``d`` to the nearest known pixel. Telea
    extrapolates the border's gradients, best in thin holes and the first pixels of a wide one;
    deep in a wide hole its streaks cost more than pull-push's smooth average (the bundled
    validation photos at 256²: hole PSNR 18.96 dB, Telea 18.41, pull-push 18.92; on thin scratches
    19.33, Telea 19.38, pull-push 19.03).

    It runs as the operator ``torch.ops.blindfill.classical_fill`` (OpenCV and NumPy inside), so a
    traced pipeline (``pipeline.export torchscript=``) records the call rather than its result at
    the traced size; loading such a graph needs this module imported."""
    if method not in FLOORS:
        raise ValueError(f"unknown classical fill {method!r}; expected one of {', '.join(FLOORS)}")
    return torch.ops.blindfill.classical_fill(image, mask, method)


@torch.library.custom_op("blindfill::classical_fill", mutates_args=())
def _classical_fill_op(image: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    hole = hard_mask(mask.to(image.dtype))
    if method == "pull_push":
        filled = pull_push_fill(image, hole)
    elif method == "telea_pull_push":
        weight = _telea_weight(hole)
        filled = weight * _per_image(telea, image, hole) + (1 - weight) * pull_push_fill(image, hole)
    else:
        filled = _per_image(_NUMPY_FILLS[method], image, hole)
    return torch.where(hole.bool(), filled, image)


@_classical_fill_op.register_fake
def _(image: torch.Tensor, mask: torch.Tensor, method: str) -> torch.Tensor:
    return torch.empty_like(image)
