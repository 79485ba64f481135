"""DeepFill v2 building blocks: gated convolutions and contextual attention.

Yu et al., "Free-Form Image Inpainting with Gated Convolution", ICCV 2019 (gated convolution);
Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018 (attention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.layers import at_least_float32, full_precision
from common.ops import hard_mask

_ACTIVATIONS = {"elu": nn.ELU, "relu": nn.ReLU, "none": nn.Identity}


# The gates' starting bias: sigmoid(2) = 0.88, so a fresh layer passes most of its features on.
GATE_BIAS = 2.0


class GatedConv2d(nn.Module):
    """DeepFill v2's ``gen_conv``: one convolution gives ``2·out_channels`` maps, split into
    features and gate; the output is ``activation(features) ⊙ sigmoid(gate)``.

    In the reference code a layer "of cnum channels" is this layer with ``out_channels = cnum/2``.
    Zero "same" padding, as the reference. ``(B, in_channels, H, W) -> (B, out_channels, H/s, W/s)``.

    Initialisation (:meth:`reset_parameters`), not the reference's: He-normal weights on the
    feature half, Xavier-uniform on the gate half, zero feature biases and gate biases of
    :data:`GATE_BIAS`. With TensorFlow's defaults (Xavier, zero biases) every layer halves its
    input's variance and the gate halves it again, about ×0.4 in scale per layer: a 17-layer stage
    starts with activations of ~1e-7 and learns colour one direction at a time.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        activation: str = "elu",
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        padding = dilation * (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, 2 * out_channels, kernel_size, stride, padding, dilation)
        self.activation = _ACTIVATIONS[activation]()
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """He-normal features (the gain of a ReLU: ELU passes about as much), Xavier gates,
        feature biases 0, gate biases :data:`GATE_BIAS`, so activations keep their scale."""
        weight, bias = self.conv.weight, self.conv.bias
        half = weight.shape[0] // 2
        nn.init.kaiming_normal_(weight[:half], nonlinearity="relu")
        nn.init.xavier_uniform_(weight[half:])
        nn.init.zeros_(bias[:half])
        nn.init.constant_(bias[half:], GATE_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, gate = self.conv(x).chunk(2, dim=1)
        return self.activation(features) * torch.sigmoid(gate)


class GatedUpConv2d(nn.Module):
    """DeepFill v2's ``gen_deconv``: nearest-neighbour ×2, then a 3×3 :class:`GatedConv2d`.
    ``(B, in_channels, H, W) -> (B, out_channels, 2H, 2W)``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = GatedConv2d(in_channels, out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def _fuse_sources(index: torch.Tensor, height: int, width: int, fuse_k: int) -> torch.Tensor:
    """Where the reference's two-pass score fusion reads from, for positions ``index``.

    ``index`` ``(N,)``: positions of a ``height × width`` grid, flattened row-major (h-major).
    Returns ``(fuse_k², N)``, term ``t = i₂·fuse_k + i₁`` for offsets ``d₂ = i₂ − fuse_k//2``
    (second pass) and ``d₁ = i₁ − fuse_k//2`` (first pass): the h-major index each term reads,
    ``-1`` where it falls outside the grid (the fusion convolutions' zero padding).

    The reference fuses ``S`` (keys × queries, both flattened) with a ``fuse_k × fuse_k`` identity
    kernel, ``S1(k, q) = Σ_d₁ S(k + d₁, q + d₁)`` over the h-major flattening (``k + 1`` wraps from
    the end of one row to the start of the next), then the same over the w-major flattening of
    ``S1``. Keys and queries move together, so each term applies the same map to both sides.
    """
    n = height * width
    offsets = torch.arange(-(fuse_k // 2), fuse_k // 2 + 1, device=index.device)
    # Second pass: shift along the w-major (column-major) flattening.
    shifted = ((index % width) * height + index // width)[None, :] + offsets[:, None]  # (fuse_k, N)
    valid = (shifted >= 0) & (shifted < n)
    shifted = shifted.clamp(0, n - 1)
    middle = (shifted % height) * width + shifted // height  # back to h-major
    # First pass: shift along the h-major flattening.
    source = middle[:, None, :] + offsets[None, :, None]  # (fuse_k, fuse_k, N)
    valid = valid[:, None, :] & (source >= 0) & (source < n)
    return torch.where(valid, source, -1).reshape(fuse_k * fuse_k, -1)


def _fuse_offsets(fuse_k: int) -> list[tuple[int, int]]:
    """``(d₂, d₁)`` of each fusion term, in the order of :func:`_fuse_sources`."""
    r = fuse_k // 2
    return [(d2, d1) for d2 in range(-r, r + 1) for d1 in range(-r, r + 1)]


def _query_terms(start: int, stop: int, height: int, width: int, fuse_k: int, device) -> list[tuple]:
    """The fusion terms for the queries ``start:stop`` (h-major) of a ``height × width`` grid.

    Term ``(d₂, d₁)`` reads query ``q + d₂·width + d₁`` for the queries in ``[lo, hi)`` (a slice:
    those whose row ``+ d₂`` stays inside the grid); per term ``(shift, lo, hi, rows, sources)``
    with the remaining valid queries as chunk-local ``rows`` and the h-major ``sources`` they read
    (the wrap-around of the w-major flattening from the last grid row to the first)."""
    n = height * width
    index = torch.arange(start, stop, device=device)
    sources = _fuse_sources(index, height, width, fuse_k)
    terms = []
    for t, (d2, d1) in enumerate(_fuse_offsets(fuse_k)):
        shift = d2 * width + d1
        lo = max(start, max(0, -d2) * width, -shift)
        hi = max(lo, min(stop, (height - max(0, d2)) * width, n - shift))
        rest = ((index < lo) | (index >= hi)) & (sources[t] >= 0)
        terms.append((shift, lo, hi, rest.nonzero().squeeze(1), sources[t][rest]))
    return terms


def _key_terms(height: int, width: int, fuse_k: int, device) -> list[tuple]:
    """The fusion terms for all keys of a ``height × width`` grid, keys in **w-major** order.

    In that order term ``(d₂, d₁)`` reads key ``j + d₂ + d₁·height`` for ``j`` in ``[lo, hi)`` (the
    keys whose column ``+ d₁`` stays inside the grid); per term ``(shift, lo, hi, columns,
    sources)`` with the remaining valid keys and the (w-major) keys they read (the wrap-around of
    the h-major flattening from one grid row to the next)."""
    n = height * width
    index = torch.arange(n, device=device)
    sources = _fuse_sources((index % height) * width + index // height, height, width, fuse_k)
    sources = torch.where(sources >= 0, (sources % width) * height + sources // width, -1)
    terms = []
    for t, (d2, d1) in enumerate(_fuse_offsets(fuse_k)):
        shift = d2 + d1 * height
        lo = max(0, max(0, -d1) * height - d2)
        hi = max(lo, min(n, (width - max(0, d1)) * height - d2))
        rest = ((index < lo) | (index >= hi)) & (sources[t] >= 0)
        terms.append((shift, lo, hi, rest.nonzero().squeeze(1), sources[t][rest]))
    return terms


def _add_term_columns(target: torch.Tensor, source: torch.Tensor, term: tuple) -> None:
    """``target[..., j] += source[..., key read by term at j]`` for the valid keys, in place."""
    shift, lo, hi, columns, sources = term
    if hi > lo:
        target[..., lo:hi].add_(source[..., lo + shift : hi + shift])
    if columns.numel():
        target.index_add_(-1, columns, source.index_select(-1, sources))


def _pad_to_rate(x: torch.Tensor, rate: int) -> torch.Tensor:
    """Replicate-pad ``(B, C, H, W)`` at the bottom and right to multiples of ``rate``."""
    pad_h, pad_w = -x.shape[-2] % rate, -x.shape[-1] % rate
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else x


class ContextualAttention(nn.Module):
    """Contextual attention: fill the hole of ``foreground`` with patches copied from the known
    region of ``background``, weighted by patch similarity.

    Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018, as in DeepFill v2
    (Yu et al., ICCV 2019; ``contextual_attention`` of JiahuiYu/generative_inpainting, PyTorch port
    nipponjo/deepfillv2-pytorch). Per sample, with ``r = rate``:

    1. raw background patches, ``2r × 2r`` at stride ``r·stride``, are what gets pasted;
    2. foreground, background and mask are downsampled ×``r`` (nearest) for matching;
    3. the ``ksize × ksize`` background patches (stride ``stride``), each L2-normalised (norm
       clamped to ``eps``), are correlated with the foreground: scores ``S`` (keys × queries);
    4. a key is a valid source only if none of its mask pixels is a hole (``mm = 1``, else 0);
    5. ``fuse``: ``S`` is summed along its diagonal with a ``fuse_k`` identity kernel, once in the
       h-major and once in the w-major flattening, favouring coherent neighbourhoods;
    6. ``A = softmax(softmax_scale · S·mm) · mm`` over the keys, so invalid keys get exactly 0;
    7. output ``= conv_transpose2d(A, raw patches, stride=r) / 4`` (each pixel is covered by four
       ``2r × 2r`` patches), cropped so that the patch of downsampled pixel ``j`` starts at
       ``r·j − r//2`` (the reference's ``padding=1`` at ``r = 2``).

    Beyond the public ports: each sample uses its own mask (the ports use sample 0's for the whole
    batch), and the score matrix, ``(h·w)²`` per image, is computed ``chunk_size`` queries at a time
    (with the raw scores of the fusion's neighbours, about ``2·w`` more rows), so the memory of a
    forward pass grows linearly with the area. Chunking changes the result only by float rounding.
    Under autograd each block's attention is kept for the backward pass, so training still stores
    ``O((h·w)²)`` activations in all.

    Sizes: ``H, W`` need not be multiples of ``rate`` (the reference needs them to be): the
    features are replicate-padded at the bottom and right to multiples of ``rate`` and the output
    cropped back. With ``r = 2`` dividing ``H, W`` the result is the reference's; other rates
    (which the reference's fixed ``padding=1`` does not support) follow step 7's alignment.

    Holes everywhere (no valid key): the attention is all zero and so is the output.

    Args:
        ksize: matching patch size (odd).
        stride: stride of the background patches (in the downsampled grid). ``stride > 1``
            needs ``fuse=False`` (the reference's fusion assumes one key per position).
        rate: downsampling factor for matching; pasted patches are ``2·rate`` wide.
        fuse_k: fusion kernel size (odd).
        softmax_scale: inverse temperature of the softmax.
        fuse: whether to fuse the scores.
        chunk_size: query positions per score block (summed over the samples processed together);
            ``None`` computes every sample's full matrix at once.
        eps: lower bound of the background patch norms.
        return_flow: also return, per query, the displacement to its most attended key.
    """

    def __init__(
        self,
        ksize: int = 3,
        stride: int = 1,
        rate: int = 2,
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
        fuse: bool = True,
        chunk_size: int | None = 4096,
        eps: float = 1e-4,
        return_flow: bool = False,
    ):
        super().__init__()
        if ksize < 1 or ksize % 2 == 0:
            raise ValueError(f"ksize must be a positive odd integer, got {ksize}")
        if fuse_k < 1 or fuse_k % 2 == 0:
            raise ValueError(f"fuse_k must be a positive odd integer, got {fuse_k}")
        if stride < 1 or rate < 1:
            raise ValueError(f"stride and rate must be >= 1, got stride={stride}, rate={rate}")
        if fuse and stride != 1:
            raise ValueError("fuse=True needs stride=1 (the fusion pairs neighbouring queries with neighbouring keys)")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
        self.ksize, self.stride, self.rate, self.fuse_k = ksize, stride, rate, fuse_k
        self.softmax_scale, self.fuse, self.chunk_size, self.eps = softmax_scale, fuse, chunk_size, eps
        self.return_flow = return_flow

    def extra_repr(self) -> str:
        return (
            f"ksize={self.ksize}, stride={self.stride}, rate={self.rate}, fuse_k={self.fuse_k}, "
            f"softmax_scale={self.softmax_scale}, fuse={self.fuse}, chunk_size={self.chunk_size}"
        )

    def forward(
        self, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``foreground`` ``(B, C, H, W)``, ``background`` ``(B, C, H_b, W_b)``, ``mask``
        ``(B or 1, 1, H_m, W_m)`` (1 = hole, any resolution; resized to ``H_b × W_b``, nearest, and
        thresholded at 0.5; ``None``: no hole) -> ``(output, flow)``.

        ``output`` ``(B, C, H, W)``. ``flow`` is ``None`` unless ``return_flow``: then ``(B, 2, h, w)``
        int64, ``h × w`` the downsampled foreground grid (``h = ⌈H / rate⌉``): for each query the
        (row, column) displacement to its most attended key, in downsampled pixels (the key at
        index 0 where no key is valid).

        Under autocast the matching, softmax and pasting run in (at least) float32 (a score's bf16 rounding,
        ×``softmax_scale`` and summed over the fusion kernel, would reorder the attention); the
        output has ``foreground``'s dtype.
        """
        dtype = foreground.dtype
        with full_precision(foreground.device):
            out, flow = self._forward(at_least_float32(foreground), at_least_float32(background), mask)
        return out.to(dtype), flow

    def _forward(
        self, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        prep = self._prepare(foreground, background, mask)
        r, (h, w) = self.rate, prep["query_grid"]
        patches, best = [], []
        for start, stop, chunks in self._attention(prep):
            raw = prep["raw"][start:stop]
            group, group_best = [], []
            for attn in chunks:
                group.append(attn @ raw)  # (nb, n, C·(2r)²): the pasted patch of each query
                if self.return_flow:
                    group_best.append(attn.detach().argmax(dim=-1))
                del attn  # before the next block is computed
            patches.append(torch.cat(group, dim=1))
            best.append(torch.cat(group_best, dim=1) if self.return_flow else None)
        patches = torch.cat(patches, dim=0).transpose(1, 2)  # (B, C·(2r)², h·w)
        # The conv_transpose2d of the reference (stride r, patch 2r), as a fold: patch j covers
        # rows r·j − r//2 … r·j − r//2 + 2r − 1 of the (padded) output.
        out = F.fold(patches, (r * h + r, r * w + r), kernel_size=2 * r, stride=r)
        top = r // 2
        height, width = foreground.shape[-2:]
        out = out[..., top : top + height, top : top + width] / 4.0
        if not self.return_flow:
            return out, None
        best = torch.cat(best, dim=0).view(-1, h, w)
        if prep["order"] is not None:
            best = prep["order"][best]
        _key_h, key_w = prep["key_grid"]
        rows = torch.arange(h, device=out.device).view(1, h, 1)
        cols = torch.arange(w, device=out.device).view(1, 1, w)
        flow = torch.stack([(best // key_w) * self.stride - rows, (best % key_w) * self.stride - cols], dim=1)
        return out, flow

    def attention_scores(
        self, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The attention weights ``(B, L, h, w)`` of :meth:`forward` (same arguments): weight of
        key ``l`` (background patch at row ``l // w_k``, column ``l % w_k`` of the ``h_k × w_k``
        key grid, ``L = h_k·w_k``) for the query at ``(i, j)`` of the downsampled foreground.
        Dense: for inspection on small inputs. At least float32, as in :meth:`forward`."""
        with full_precision(foreground.device):
            prep = self._prepare(at_least_float32(foreground), at_least_float32(background), mask)
            attn = torch.cat([torch.cat(list(chunks), dim=1) for _, _, chunks in self._attention(prep)], dim=0)
        h, w = prep["query_grid"]
        if prep["order"] is not None:
            attn = attn[..., torch.argsort(prep["order"])]
        return attn.transpose(1, 2).reshape(attn.shape[0], -1, h, w)

    def _prepare(self, foreground: torch.Tensor, background: torch.Tensor, mask: torch.Tensor | None) -> dict:
        """Patch matrices of the batch: ``query`` ``(B, h·w, D)`` (``D = C·ksize²``), ``key``
        ``(B, L, D)`` L2-normalised, ``raw`` ``(B, L, C·(2·rate)²)``, ``valid`` ``(B, L)`` (1 where
        the key's patch is hole-free), and the ``query_grid`` ``(h, w)`` and ``key_grid``."""
        if foreground.dim() != 4 or background.dim() != 4:
            raise ValueError(
                f"foreground and background must be (B, C, H, W), got "
                f"{tuple(foreground.shape)} and {tuple(background.shape)}"
            )
        if foreground.shape[:2] != background.shape[:2]:
            raise ValueError(
                f"foreground and background need the same batch and channels, got "
                f"{tuple(foreground.shape)} and {tuple(background.shape)}"
            )
        batch, _channels, height_b, width_b = background.shape
        if mask is None:
            mask = background.new_zeros(batch, 1, height_b, width_b)
        elif mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch):
            raise ValueError(f"mask must be ({batch} or 1, 1, H, W), got {tuple(mask.shape)}")
        r, k, pad = self.rate, self.ksize, (self.ksize - 1) // 2

        mask = F.interpolate(mask.to(background), size=(height_b, width_b), mode="nearest")
        mask = hard_mask(mask.to(background.dtype)).expand(batch, -1, -1, -1)
        # Downsampling by r with nearest, as the reference's resize(scale=1/r), keeps pixel r·j;
        # the replicate padding is never sampled, it only completes the last raw patches.
        foreground, background, mask = (_pad_to_rate(x, r) for x in (foreground, background, mask))
        small_f, small_b, small_m = (x[..., ::r, ::r] for x in (foreground, background, mask))

        query = F.unfold(small_f, k, padding=pad).transpose(1, 2)
        key = F.unfold(small_b, k, padding=pad, stride=self.stride).transpose(1, 2)
        key = key / key.norm(dim=2, keepdim=True).clamp_min(self.eps)
        # The mask's zero padding counts as known, as in the reference.
        valid = F.max_pool2d(small_m, k, stride=self.stride, padding=pad) == 0
        top = r // 2
        raw = F.unfold(F.pad(background, (top, r - top, top, r - top)), 2 * r, stride=r * self.stride)
        key_grid = tuple(valid.shape[-2:])
        raw, valid = raw.transpose(1, 2), valid.flatten(1).to(key.dtype)
        order = None
        if self.fuse:
            # Keys in w-major order turn every fusion term into a shifted slice (see _key_terms).
            key_h, key_w = key_grid
            j = torch.arange(key_h * key_w, device=key.device)
            order = (j % key_h) * key_w + j // key_h  # h-major index of the j-th key
            key, raw, valid = key[:, order], raw[:, order], valid[:, order]
        return {
            "query": query,
            "key": key,
            "raw": raw,
            "valid": valid,
            "order": order,
            "query_grid": tuple(small_f.shape[-2:]),
            "key_grid": key_grid,
        }

    def _attention(self, prep: dict):
        """Yield ``(start, stop, chunks)`` per group of samples ``start:stop``; ``chunks`` yields the
        attention ``(stop − start, n, L)`` of consecutive blocks of ``n`` queries (h-major), keys
        in the order of ``prep["key"]``."""
        query, key, valid = prep["query"], prep["key"], prep["valid"]
        batch, n_query = query.shape[:2]
        if self.chunk_size is None:
            per_group, block = batch, n_query
        elif n_query <= self.chunk_size:
            per_group, block = max(1, self.chunk_size // n_query), n_query
        else:
            per_group, block = 1, self.chunk_size
        key_terms = _key_terms(*prep["key_grid"], self.fuse_k, key.device) if self.fuse else None
        for start in range(0, batch, per_group):
            stop = min(start + per_group, batch)
            args = (query[start:stop], key[start:stop].transpose(1, 2), valid[start:stop])
            if self.fuse:
                chunks = self._fused_blocks(*args, prep["query_grid"], key_terms, block)
            else:
                chunks = (
                    self._softmax(args[0][:, q0 : q0 + block] @ args[1], args[2]) for q0 in range(0, n_query, block)
                )
            yield start, stop, chunks

    def _fused_blocks(self, query, key_t, valid, grid, key_terms, block):
        """Fused attention of ``query`` ``(nb, h·w, D)`` against ``key_t`` ``(nb, D, L)`` (keys
        w-major), ``block`` queries at a time: each block needs the raw scores of its queries and
        of their fusion neighbours (±1 row and ±1 position, plus a few wrapped around)."""
        n_query = query.shape[1]
        centre = self.fuse_k**2 // 2  # the (0, 0) term
        for q0 in range(0, n_query, block):
            q1 = min(q0 + block, n_query)
            terms = _query_terms(q0, q1, *grid, self.fuse_k, query.device)
            spans = [(lo + shift, hi + shift) for shift, lo, hi, _, _ in terms if hi > lo]
            u0, u1 = min(a for a, _ in spans), max(b for _, b in spans)
            scores = query[:, u0:u1] @ key_t  # (nb, u1 − u0, L)
            fused = scores[:, q0 - u0 : q1 - u0].clone()
            wrapped = torch.cat([sources for *_, sources in terms])
            if wrapped.numel():
                wrapped, position = torch.unique(wrapped, return_inverse=True)
                wrapped_scores = query[:, wrapped] @ key_t
                position = position.split([rows.numel() for *_, rows, _ in terms])
            for t, ((shift, lo, hi, rows, _), key_term) in enumerate(zip(terms, key_terms)):
                if t == centre:
                    continue
                if hi > lo:
                    _add_term_columns(
                        fused[:, lo - q0 : hi - q0], scores[:, lo + shift - u0 : hi + shift - u0], key_term
                    )
                if rows.numel():
                    extra = torch.zeros_like(fused[:, : rows.numel()])
                    _add_term_columns(extra, wrapped_scores.index_select(1, position[t]), key_term)
                    fused.index_add_(1, rows, extra)
            del scores
            attn = self._softmax(fused, valid)
            del fused  # hold one block at a time
            yield attn
            del attn

    def _softmax(self, scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``softmax(scale · scores·valid) · valid`` over the keys (last dim), as the reference."""
        valid = valid[:, None, :]
        # In place where autograd allows: the softmax output is saved for its backward.
        attn = F.softmax(scores.mul_(valid * self.softmax_scale), dim=-1)
        attn = attn * valid if attn.requires_grad else attn.mul_(valid)
        # Far-off keys' weights underflow into subnormal floats, which x86 CPUs multiply many times
        # slower: the pasting matmul ran at a tenth of its speed. Below the smallest normal float
        # (1.2e-38) a weight changes no output, so it is zeroed.
        tiny = torch.finfo(attn.dtype).tiny
        return F.threshold(attn, tiny, 0.0) if attn.requires_grad else F.threshold_(attn, tiny, 0.0)
