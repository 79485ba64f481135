"""Tests of ipn/layers.py's ContextualAttention: agreement with a direct transcription of the
DeepFill v2 reference, copy reconstruction, zero attention on hole patches, per-sample masks,
chunked == unchunked, gradients, degenerate masks and odd / non-square sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ipn.layers import ContextualAttention


def reference(f, b, mask, ksize=3, stride=1, fuse_k=3, softmax_scale=10.0, fuse=True, eps=1e-4):
    """The reference algorithm (rate 2, sizes even) written out as in JiahuiYu/generative_inpainting
    and its PyTorch ports: a loop over samples, scores by convolution, the fusion as two identity
    convolutions on the reshaped (keys × queries) map, softmax, transposed convolution / 4.
    Differs from the ports only where this layer is meant to: each sample uses its own mask, and
    patch norms are clamped at ``eps`` (as the TensorFlow original)."""
    rate, pad = 2, (ksize - 1) // 2
    batch, channels = f.shape[:2]
    raw = F.unfold(b, 2 * rate, stride=rate * stride, padding=1)
    small_f = F.interpolate(f, scale_factor=1 / rate, mode="nearest")
    small_b = F.interpolate(b, scale_factor=1 / rate, mode="nearest")
    h, w = small_f.shape[-2:]
    hb, wb = small_b.shape[-2:]
    m = F.interpolate(F.interpolate(mask, size=b.shape[-2:], mode="nearest"), scale_factor=1 / rate, mode="nearest")
    key_patches = F.unfold(small_b, ksize, padding=pad, stride=stride)
    mask_patches = F.unfold(m, ksize, padding=pad, stride=stride)
    eye = torch.eye(fuse_k, dtype=f.dtype).view(1, 1, fuse_k, fuse_k)
    out = []
    for i in range(batch):
        wi = key_patches[i].t().reshape(-1, channels, ksize, ksize)
        wi = wi / wi.flatten(1).norm(dim=1).clamp_min(eps).view(-1, 1, 1, 1)
        yi = F.conv2d(small_f[i : i + 1], wi, padding=pad)  # (1, L, h, w)
        if fuse:
            yi = F.conv2d(yi.view(1, 1, hb * wb, h * w), eye, padding=fuse_k // 2)
            yi = yi.view(1, hb, wb, h, w).permute(0, 2, 1, 4, 3).reshape(1, 1, hb * wb, h * w)
            yi = F.conv2d(yi, eye, padding=fuse_k // 2)
            yi = yi.view(1, wb, hb, w, h).permute(0, 2, 1, 4, 3).reshape(1, hb * wb, h, w)
        mm = (mask_patches[i].mean(0) == 0).to(f.dtype).view(1, -1, 1, 1)
        yi = F.softmax(yi * mm * softmax_scale, dim=1) * mm
        raw_i = raw[i].t().reshape(-1, channels, 2 * rate, 2 * rate)
        out.append(F.conv_transpose2d(yi, raw_i, stride=rate, padding=1) / 4.0)
    return torch.cat(out)


def touches_hole(mask: torch.Tensor, ksize: int = 3) -> torch.Tensor:
    """``(h, w)`` bool: key patches (downsampled ×2 grid) with a hole pixel, by explicit loops."""
    small = mask[0, ::2, ::2] > 0.5
    h, w, r = *small.shape, ksize // 2
    return torch.tensor(
        [[bool(small[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1].any()) for j in range(w)] for i in range(h)]
    )


def random_masks(batch: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, 1, h, w)
    for i in range(batch):
        top, left = torch.randint(0, h // 2, (2,), generator=g).tolist()
        mask[i, :, top : top + h // 3 + i, left : left + w // 3 + 2 * i] = 1
    return mask


@pytest.mark.parametrize("fuse", [True, False])
@pytest.mark.parametrize(
    "shapes", [((16, 16), (16, 16)), ((12, 20), (12, 20)), ((18, 10), (10, 14)), ((2, 10), (2, 10))]
)
def test_matches_reference(fuse, shapes):
    """Float64, so only rounding separates them; includes f and b of different sizes and a 1-row grid
    (the fusion's wrap-around from row to row)."""
    torch.manual_seed(0)
    (hf, wf), (hb, wb) = shapes
    f, b = torch.randn(2, 3, hf, wf, dtype=torch.float64), torch.randn(2, 3, hb, wb, dtype=torch.float64)
    mask = random_masks(2, hb, wb).double()
    expected = reference(f, b, mask, fuse=fuse)
    for chunk_size in (None, 5):
        out, _ = ContextualAttention(fuse=fuse, chunk_size=chunk_size)(f, b, mask)
        assert (out - expected).abs().max() < 1e-12


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(ksize=5, fuse_k=3),
        dict(ksize=3, fuse_k=5),
        dict(ksize=1, fuse_k=1),
        dict(stride=2, fuse=False),
        dict(softmax_scale=1.0),
    ],
)
def test_matches_reference_other_settings(kwargs):
    torch.manual_seed(1)
    f = torch.randn(2, 3, 12, 16, dtype=torch.float64)
    mask = random_masks(2, 12, 16, seed=1).double()
    expected = reference(f, f, mask, **kwargs)
    out, _ = ContextualAttention(chunk_size=7, **kwargs)(f, f, mask)
    assert (out - expected).abs().max() < 1e-12


def copy_scene(channels: int = 8, size: int = 32):
    """Random features where block A (rows/cols 4..15) is copied to B (16..27); the hole is A.
    Full-resolution pixels 7..12 are covered only by queries whose 3×3 neighbourhoods and 4×4
    pasted patches lie inside A, so attending to the exact copy reproduces them."""
    torch.manual_seed(0)
    x = torch.randn(1, channels, size, size)
    x[..., 16:28, 16:28] = x[..., 4:16, 4:16]
    mask = torch.zeros(1, 1, size, size)
    mask[..., 4:16, 4:16] = 1
    return x, mask


@pytest.mark.parametrize("fuse", [True, False])
def test_copy_reconstruction(fuse):
    """Measured max abs error: 0 (float32) at softmax scales 10, 50 and 100, fused or not (the
    exact copy takes all the weight); the bound leaves room for other BLAS kernels."""
    x, mask = copy_scene()
    out, flow = ContextualAttention(softmax_scale=50.0, fuse=fuse, return_flow=True)(x, x, mask)
    assert (out[..., 7:13, 7:13] - x[..., 19:25, 19:25]).abs().max() < 1e-4
    # The queries of A's interior attend, above all, to their copy 6 downsampled pixels away.
    assert (flow[0, :, 3:7, 3:7] == 6).all()


def test_hole_patches_get_zero_attention():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 20, 24)
    mask = random_masks(2, 20, 24)
    attn = ContextualAttention(chunk_size=17).attention_scores(x, x, mask)  # (B, L, h, w)
    assert attn.shape == (2, 10 * 12, 10, 12)
    for i in range(2):
        touching = touches_hole(mask[i]).flatten()
        assert 0 < touching.sum() < touching.numel()
        assert torch.equal(attn[i, touching], torch.zeros_like(attn[i, touching]))
        assert (attn[i, ~touching].sum(dim=0) > 0.5).all()  # every query draws on the valid keys
    # Each query spreads at most all of its weight (the reference's softmax also counts hole keys).
    assert (attn.sum(dim=1) <= 1 + 1e-6).all()


@pytest.mark.parametrize("grad", [False, True])
def test_no_attention_weight_is_a_subnormal_float(grad):
    """Weights that underflow below the smallest normal float are zero (x86 CPUs multiply subnormals
    many times slower); the output stays the reference's."""
    torch.manual_seed(1)
    # smooth, unrelated foreground and background: scores spread over the range where the
    # softmax's weights fall between 1e-45 and 1e-38 (thousands of them without the zeroing)
    f, b = (F.avg_pool2d(torch.randn(1, 8, 28, 28), 5, 1) * 3 for _ in range(2))
    f.requires_grad_(grad)
    mask = torch.zeros(1, 1, 24, 24)
    attention = ContextualAttention()
    with torch.set_grad_enabled(grad):
        weights = attention.attention_scores(f, b, mask)
        out, _ = attention(f, b, mask)
    tiny = torch.finfo(torch.float32).tiny
    assert (weights == 0).sum() > 1000 and not ((weights > 0) & (weights < tiny)).any()
    assert torch.allclose(out, reference(f.detach(), b, mask), atol=1e-5)
    if grad:
        out.sum().backward()
        assert torch.isfinite(f.grad).all()


def test_masks_are_per_sample():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 20)
    mask = random_masks(2, 16, 20)
    assert not torch.equal(mask[0], mask[1])
    for chunk_size in (None, 4096, 30):
        layer = ContextualAttention(chunk_size=chunk_size)
        both, _ = layer(x, x, mask)
        for i in range(2):
            alone, _ = layer(x[i : i + 1], x[i : i + 1], mask[i : i + 1])
            torch.testing.assert_close(both[i : i + 1], alone, rtol=0, atol=1e-5)
    # Not a vacuous check: sample 1 under sample 0's mask (what the public ports do) differs.
    wrong, _ = ContextualAttention()(x[1:], x[1:], mask[:1])
    assert (wrong - both[1:]).abs().max() > 1e-2


@pytest.mark.parametrize("fuse", [True, False])
def test_chunked_equals_unchunked(fuse):
    """18×26 features: a 9×13 grid of 117 queries; chunk sizes that do not divide it, one query,
    one short of all, and several samples per block (300: two of the three, 4096: all three)."""
    torch.manual_seed(0)
    x = torch.randn(3, 4, 18, 26)
    mask = random_masks(3, 18, 26)
    expected, _ = ContextualAttention(fuse=fuse, chunk_size=None)(x, x, mask)
    for chunk_size in (1, 7, 50, 116, 117, 300, 4096):
        out, _ = ContextualAttention(fuse=fuse, chunk_size=chunk_size)(x, x, mask)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fuse", [True, False])
def test_chunked_gradients_equal_unchunked(fuse):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 14)
    mask = random_masks(2, 12, 14)
    grads = []
    for chunk_size in (None, 5):
        f = x.clone().requires_grad_()
        out, _ = ContextualAttention(fuse=fuse, chunk_size=chunk_size)(f, f, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        grads.append(f.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-5)


def test_gradcheck():
    torch.manual_seed(0)
    f = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 2, 6, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(1, 1, 6, 8, dtype=torch.float64)
    mask[..., :2, :2] = 1
    layer = ContextualAttention(softmax_scale=2.0, chunk_size=5)
    assert torch.autograd.gradcheck(lambda f, b: layer(f, b, mask)[0], (f, b))


def test_shape_and_gradients_flow():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 16, 24, requires_grad=True)
    b = torch.randn(2, 4, 20, 12, requires_grad=True)
    out, flow = ContextualAttention()(f, b, random_masks(2, 20, 12))
    assert out.shape == f.shape and flow is None
    out.square().sum().backward()
    for t in (f, b):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_all_known_and_all_hole_masks():
    torch.manual_seed(0)
    f = torch.randn(2, 4, 16, 16, requires_grad=True)
    known, _ = ContextualAttention()(f, f, torch.zeros(2, 1, 16, 16))
    assert torch.isfinite(known).all()
    none, _ = ContextualAttention()(f, f, None)
    torch.testing.assert_close(none, known, rtol=0, atol=0)
    # No valid source patch anywhere: zero attention, zero output, finite gradients.
    layer = ContextualAttention(chunk_size=10, return_flow=True)
    hole, flow = layer(f, f, torch.ones(2, 1, 16, 16))
    assert torch.equal(hole, torch.zeros_like(hole)) and flow.shape == (2, 2, 8, 8)
    assert torch.equal(layer.attention_scores(f, f, torch.ones(2, 1, 16, 16)), torch.zeros(2, 64, 8, 8))
    hole.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_zero_features_do_not_give_nan():
    """Background patch norms are clamped at eps, so all-zero features stay finite."""
    f = torch.zeros(1, 4, 16, 16, requires_grad=True)
    out, _ = ContextualAttention()(f, f, random_masks(1, 16, 16))
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(f.grad).all()


def test_mask_any_resolution_and_soft_values():
    """The mask is resized (nearest) to the background size and thresholded at 0.5."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 16, 16)
    mask = random_masks(2, 16, 16)
    expected, _ = ContextualAttention()(x, x, mask)
    big = F.interpolate(mask, scale_factor=4, mode="nearest")
    out, _ = ContextualAttention()(x, x, big * 0.5 + 0.2)  # 0.2 known, 0.7 hole
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    shared, _ = ContextualAttention()(x, x, mask[:1])  # one mask for the whole batch
    alone, _ = ContextualAttention()(x[1:], x[1:], mask[:1])
    torch.testing.assert_close(shared[1:], alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize("size", [(17, 23), (18, 26), (5, 3)])
def test_odd_and_non_square_sizes(size):
    """Sizes not divisible by ``rate`` are replicate-padded at the bottom/right to a multiple of
    it and the output cropped: exactly running the padded input and cropping."""
    torch.manual_seed(0)
    h, w = size
    x = torch.randn(2, 4, h, w, requires_grad=True)
    mask = random_masks(2, h, w)
    layer = ContextualAttention(chunk_size=13)
    out, _ = layer(x, x, mask)
    assert out.shape == x.shape and torch.isfinite(out).all()
    padded = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    padded_mask = F.pad(mask, (0, w % 2, 0, h % 2), mode="replicate")
    expected, _ = layer(padded, padded, padded_mask)
    torch.testing.assert_close(out, expected[..., :h, :w], rtol=0, atol=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("rate", [1, 3])
def test_other_rates(rate):
    """Rates other than the reference's 2: output of the input's size, chunking exact, and with no
    hole and identical f, b a copy of the input away from the borders (attention ~ the identity;
    each pixel then averages the four 2r×2r patches that cover it, all from their own place)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 19, 22)
    mask = random_masks(2, 19, 22)
    expected, _ = ContextualAttention(rate=rate, chunk_size=None)(x, x, mask)
    out, _ = ContextualAttention(rate=rate, chunk_size=9)(x, x, mask)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    same, _ = ContextualAttention(rate=rate, softmax_scale=200.0, fuse=False)(x, x, None)
    inner = slice(2 * rate, -2 * rate - 1)
    torch.testing.assert_close(same[..., inner, inner], x[..., inner, inner], rtol=0, atol=1e-4)


def test_invalid_arguments():
    for kwargs in (dict(ksize=2), dict(fuse_k=4), dict(stride=2, fuse=True), dict(rate=0), dict(chunk_size=0)):
        with pytest.raises(ValueError):
            ContextualAttention(**kwargs)
    layer, x = ContextualAttention(), torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match="mask"):
        layer(x, x, torch.zeros(2, 2, 8, 8))
    with pytest.raises(ValueError, match="same batch and channels"):
        layer(x, torch.randn(2, 3, 8, 8))


def test_autocast_matches_float32_on_the_same_inputs():
    """Under bf16 autocast the scores, softmax and pasting run in float32: the result is the
    float32 attention of the bf16 inputs, returned in bf16."""
    torch.manual_seed(0)
    f, b = (torch.rand(2, 8, 16, 16).bfloat16() for _ in range(2))
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    layer = ContextualAttention(return_flow=True)
    expected, expected_flow = layer(f.float(), b.float(), mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, flow = layer(f, b, mask)
        scores = layer.attention_scores(f, b, mask)
    assert out.dtype == torch.bfloat16 and scores.dtype == torch.float32
    assert torch.equal(out, expected.bfloat16())
    assert torch.equal(flow, expected_flow)
    assert torch.equal(scores, layer.attention_scores(f.float(), b.float(), mask))
