"""Poisson image blending (Pérez, Gangnet and Blake, SIGGRAPH 2003) of a fill into a hole: the
post-processing of GLCIC and of latent-search inpainting (Yeh et al.).

Inside the hole Ω the result f solves the discrete Poisson equation with the fill's gradients as
guidance and the known pixels around the hole as boundary values: for every p in Ω,
``|N_p|·f_p − Σ_{q ∈ N_p ∩ Ω} f_q = Σ_{q ∈ N_p \\ Ω} x_q + Σ_{q ∈ N_p} (g_p − g_q)``, with ``N_p`` the
4-neighbours of p inside the image, ``g`` the fill and ``x`` the image. One sparse solve per image
(all three channels share the matrix: one factorisation).

We solve it ourselves (SciPy's sparse LU) rather than with OpenCV's ``seamlessClone``, which GLCIC's
public implementation uses after a fast-marching fill: ``seamlessClone`` takes its boundary from a
bounding box around the mask, shifts the result when the mask touches the image border, and needs
that prefill for the pixels under the hole; here the boundary is exactly the known pixels next to
the hole, at the border too, so no prefill is needed.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

OFFSETS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def poisson_blend_array(fill: np.ndarray, image: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """``fill`` and ``image`` ``(H, W, C)`` float, ``hole`` ``(H, W)`` bool -> ``(H, W, C)``: the
    image outside the hole, the Poisson solution inside (see the module docstring)."""
    h, w = hole.shape
    ys, xs = np.nonzero(hole)
    if len(ys) == 0:
        return image.copy()
    index = np.full((h, w), -1, np.int64)
    index[ys, xs] = np.arange(len(ys))
    fill, image = fill.astype(np.float64), image.astype(np.float64)
    rows, cols, values = [], [], []
    degree = np.zeros(len(ys))
    rhs = np.zeros((len(ys), image.shape[2]))
    for dy, dx in OFFSETS:
        ny, nx = ys + dy, xs + dx
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        p, qy, qx = np.nonzero(inside)[0], ny[inside], nx[inside]
        degree[p] += 1
        rhs[p] += fill[ys[p], xs[p]] - fill[qy, qx]  # the guidance: the fill's own gradient
        q = index[qy, qx]
        in_hole = q >= 0
        rows.append(p[in_hole]), cols.append(q[in_hole]), values.append(-np.ones(in_hole.sum()))
        rhs[p[~in_hole]] += image[qy[~in_hole], qx[~in_hole]]  # the boundary: known pixels
    n = len(ys)
    rows.append(np.arange(n)), cols.append(np.arange(n)), values.append(degree)
    matrix = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    solved = splu(matrix.tocsc()).solve(rhs)
    out = image.copy()
    out[ys, xs] = solved
    return out


def blend_fill(fill: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``fill`` ``(B, C, H, W)`` with its hole part (``mask`` > 0.5) Poisson-blended into ``image``
    and left as it is elsewhere: what a stage composites with its soft mask in inference."""
    return torch.where(mask > 0.5, poisson_blend(fill, image, mask), fill)


def poisson_blend(fill: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Blend ``fill`` into the hole of ``image`` (both ``(B, C, H, W)`` in [0, 1]; the hole is
    ``mask`` ``(B, 1, H, W)`` > 0.5) -> ``(B, C, H, W)`` in [0, 1], equal to ``image`` outside
    the hole. A hole with no known pixel around it keeps the fill (nothing to blend with)."""
    out = []
    for g, x, m in zip(fill.detach().float().cpu(), image.detach().float().cpu(), mask.detach().cpu()):
        hole = (m[0] > 0.5).numpy()
        if hole.all():
            out.append(g)
            continue
        blended = poisson_blend_array(g.permute(1, 2, 0).numpy(), x.permute(1, 2, 0).numpy(), hole)
        out.append(torch.from_numpy(blended).permute(2, 0, 1).float())
    return torch.stack(out).clamp(0, 1).to(image.device, image.dtype)
