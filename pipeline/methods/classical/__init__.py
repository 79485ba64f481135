"""Classical (non-learned) inpainting baselines behind one interface.

Every baseline is ``fill(image, mask) -> image``: ``image`` float32 ``(H, W, 3)`` in [0, 1] (hole
pixels hold garbage and are ignored), ``mask`` ``(H, W)`` with holes where ``mask > 0.5``; the
result is float32 ``(H, W, 3)`` in [0, 1], equal to ``image`` outside the hole. ``inpaint_batch``
runs one on torch batches the way evaluation code runs the network.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from common.classical import biharmonic, navier_stokes, telea, telea_pull_push
from pipeline.methods.classical.exemplar import exemplar
from pipeline.methods.classical.patchmatch import nnf, patchmatch

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "telea": telea,
    "navier_stokes": navier_stokes,
    "biharmonic": biharmonic,
    "telea_pull_push": telea_pull_push,
    "exemplar": exemplar,
    "patchmatch": patchmatch,
}

__all__ = [
    "BASELINES",
    "biharmonic",
    "exemplar",
    "get_baseline",
    "inpaint_batch",
    "navier_stokes",
    "nnf",
    "patchmatch",
    "telea",
    "telea_pull_push",
]


def get_baseline(name: str) -> Callable[..., np.ndarray]:
    """The ``fill(image, mask)`` function registered as ``name``.

    >>> image = np.full((32, 32, 3), 0.5, np.float32)
    >>> hole = np.zeros((32, 32), np.float32)
    >>> hole[10:20, 10:20] = 1
    >>> image[hole > 0] = 0  # what was there is lost
    >>> filled = get_baseline("telea")(image, hole)
    >>> round(float(filled[15, 15, 0]), 2), float(filled[0, 0, 0])  # filled from around it; the rest kept
    (0.5, 0.5)
    """
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; valid names: {', '.join(BASELINES)}") from None


def inpaint_batch(name: str, images: torch.Tensor, masks: torch.Tensor, **options) -> torch.Tensor:
    """Fill a batch with baseline ``name``, image by image.

    ``images`` ``(B, 3, H, W)`` in [0, 1]; ``masks`` ``(B, 1, H, W)`` (or ``(B, H, W)``), hole where
    ``> 0.5``; ``options`` go to the baseline. Returns float32 ``(B, 3, H, W)`` on the images' device.
    """
    fill = get_baseline(name)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if masks.ndim == 4:
        if masks.shape[1] != 1:
            raise ValueError(f"masks must be (B, 1, H, W), got {tuple(masks.shape)}")
        masks = masks[:, 0]
    if masks.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"masks {tuple(masks.shape)} do not fit images {tuple(images.shape)}")
    pictures = images.detach().float().permute(0, 2, 3, 1).cpu().numpy()
    holes = masks.detach().float().cpu().numpy()
    filled = np.stack([fill(picture, hole, **options) for picture, hole in zip(pictures, holes)])
    return torch.from_numpy(filled).permute(0, 3, 1, 2).contiguous().to(images.device)
