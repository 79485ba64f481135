"""Classical inpainting baselines: shared contract, fill quality against leaving the hole, the
PatchMatch nearest-neighbour field and exemplar-based copying on textures they must get exactly."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from pipeline.methods.classical import BASELINES, get_baseline, inpaint_batch
from pipeline.methods.classical.exemplar import exemplar
from pipeline.methods.classical.patchmatch import nnf, patchmatch

NAMES = ["telea", "navier_stokes", "biharmonic", "telea_pull_push", "exemplar", "patchmatch"]


def hole_psnr(result, truth, hole):
    err = np.mean((result[hole].astype(np.float64) - truth[hole]) ** 2)
    return 10 * np.log10(1.0 / max(err, 1e-12))


@pytest.fixture(scope="module")
def photo():
    """64x64 astronaut (skin, suit and flat background) and a 14x14 hole over the suit edge,
    filled with random garbage."""
    clean = cv2.resize(data.astronaut(), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    hole = np.zeros((64, 64), bool)
    hole[38:52, 6:20] = True
    corrupted = clean.copy()
    corrupted[hole] = np.random.default_rng(0).random((hole.sum(), 3))
    return clean, corrupted, hole


def stripes(size=64, period=8):
    """A periodic RGB texture: vertical sinusoidal stripes plus a horizontal colour ramp period."""
    yy, xx = np.mgrid[0:size, 0:size]
    phase = 2 * np.pi * xx / period
    return np.stack(
        [0.5 + 0.4 * np.sin(phase), 0.5 + 0.4 * np.cos(phase), 0.3 + 0.2 * ((yy % period) >= period // 2)], axis=-1
    ).astype(np.float32)


def test_registry_and_unknown_name():
    assert sorted(BASELINES) == sorted(NAMES)
    assert get_baseline("telea") is BASELINES["telea"]
    with pytest.raises(ValueError) as info:
        get_baseline("nope")
    message = str(info.value)
    assert "nope" in message and all(name in message for name in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_fill_beats_leaving_the_hole(name, photo):
    clean, corrupted, hole = photo
    result = get_baseline(name)(corrupted, hole)
    assert result.shape == (64, 64, 3) and result.dtype == np.float32
    assert np.isfinite(result).all() and result.min() >= 0 and result.max() <= 1
    assert np.array_equal(result[~hole], corrupted[~hole])
    zeros = np.where(hole[..., None], 0, corrupted)
    score = hole_psnr(result, clean, hole)
    # the weakest (exemplar, ~12.5 dB here) still clears the garbage (8.4) and zeros (5.1) by 3 dB
    assert score > hole_psnr(corrupted, clean, hole) + 3
    assert score > hole_psnr(zeros, clean, hole) + 3


@pytest.mark.parametrize("name", NAMES)
def test_empty_mask_float_mask_and_nan_garbage(name, photo):
    clean, corrupted, hole = photo
    fill = get_baseline(name)
    assert np.array_equal(fill(clean, np.zeros((64, 64), bool)), clean)
    # a float mask: only values above 0.5 are holes, so 0.4 marks known pixels
    soft = np.where(hole, 0.9, 0.0).astype(np.float32)
    soft[:5, :5] = 0.4
    with_nan = corrupted.copy()
    with_nan[hole] = np.nan
    result = fill(with_nan, soft)
    assert np.array_equal(result, fill(corrupted, hole))
    assert np.array_equal(result[:5, :5], corrupted[:5, :5])


@pytest.mark.parametrize("name", ["exemplar", "patchmatch"])
def test_hole_on_the_border(name):
    texture = stripes()
    hole = np.zeros((64, 64), bool)
    hole[:12, 50:] = True  # top-right corner
    hole[40:, :6] = True  # left edge
    result = get_baseline(name)(texture, hole)
    assert np.array_equal(result[~hole], texture[~hole])
    assert hole_psnr(result, texture, hole) > 30


def test_exemplar_copies_periodic_texture_exactly():
    texture = stripes()
    hole = np.zeros((64, 64), bool)
    hole[24:42, 20:38] = True
    corrupted = texture.copy()
    corrupted[hole] = 1.0
    assert hole_psnr(exemplar(corrupted, hole), texture, hole) > 40
    # a window still holding a copy shifted by whole periods (hole half-width + patch + period)
    assert hole_psnr(exemplar(corrupted, hole, search_radius=24), texture, hole) > 40


@pytest.mark.parametrize("slope", [0.0, 1.0, 0.5])
def test_exemplar_continues_a_straight_edge(slope):
    """Criminisi's data term fills along the isophote first, so an edge crossing the hole is
    continued sharply, where diffusion blurs it."""
    yy, xx = np.mgrid[0:64, 0:64]
    left = xx < 30 + slope * (yy - 32)
    picture = np.where(left[..., None], [0.8, 0.2, 0.1], [0.1, 0.3, 0.9]).astype(np.float32)
    hole = np.zeros((64, 64), bool)
    hole[22:42, 20:40] = True
    score = hole_psnr(exemplar(picture, hole), picture, hole)
    assert score > 40
    assert score > hole_psnr(get_baseline("telea")(picture, hole), picture, hole) + 15


def test_patchmatch_nnf_finds_the_exact_shift():
    rng = np.random.default_rng(0)
    size, half, (dy, dx) = 64, 3, (5, -9)
    source = rng.random((size, size, 3)).astype(np.float32)
    target = np.roll(source, (dy, dx), axis=(0, 1))
    field, dist = nnf(source, target, patch_size=7, iterations=5, rng=1)
    assert field.shape == (size, size, 2) and dist.shape == (size, size)
    ys, xs = np.indices((size, size))
    true_y, true_x = ys - dy, xs - dx
    # patches that lie, in both images, inside the image and not across the roll's seam
    interior = np.ones((size, size), bool)
    for coord in (ys, xs, true_y, true_x):
        interior &= (coord >= half) & (coord < size - half)
    exact = (field[..., 0] == true_y) & (field[..., 1] == true_x)
    assert exact[interior].mean() >= 0.95
    assert np.allclose(dist[interior & exact], 0, atol=1e-6)


def test_patchmatch_nnf_respects_valid_and_seed():
    rng = np.random.default_rng(1)
    source = rng.random((48, 48)).astype(np.float32)
    valid = np.zeros((48, 48), bool)
    valid[10:30, 5:40] = True
    first, _dist = nnf(source, source, patch_size=5, iterations=3, rng=7, valid=valid)
    again, _ = nnf(source, source, patch_size=5, iterations=3, rng=7, valid=valid)
    assert np.array_equal(first, again)
    assert valid[first[..., 0], first[..., 1]].all()
    # inside the valid band the best match of a patch is itself
    ys, xs = np.indices((48, 48))
    inner = valid & (ys >= 2) & (ys < 46) & (xs >= 2) & (xs < 46)
    assert ((first[..., 0] == ys) & (first[..., 1] == xs))[inner].mean() >= 0.95


def test_patchmatch_reproducible_and_textured(photo):
    _, corrupted, hole = photo
    assert np.array_equal(patchmatch(corrupted, hole, seed=3), patchmatch(corrupted, hole, seed=3))
    texture = stripes()
    square = np.zeros((64, 64), bool)
    square[24:42, 20:38] = True
    assert hole_psnr(patchmatch(texture, square), texture, square) > 40


def test_inpaint_batch_matches_single_calls(photo):
    clean, corrupted, hole = photo
    images = torch.from_numpy(np.stack([corrupted, clean[::-1].copy()])).permute(0, 3, 1, 2)
    masks = torch.from_numpy(np.stack([hole, hole.T.copy()])).float().unsqueeze(1)
    result = inpaint_batch("telea", images, masks)
    assert result.shape == (2, 3, 64, 64) and result.dtype == torch.float32
    for i in range(2):
        single = get_baseline("telea")(images[i].permute(1, 2, 0).numpy(), masks[i, 0].numpy())
        assert np.array_equal(result[i].permute(1, 2, 0).numpy(), single)
    known = masks.expand_as(images) <= 0.5
    assert torch.equal(result[known], images[known])
    assert torch.equal(inpaint_batch("exemplar", images, masks[:, 0]), inpaint_batch("exemplar", images, masks))
    with pytest.raises(ValueError, match="masks"):
        inpaint_batch("telea", images, masks[:1])
