"""The classical denoisers (common/denoise.py) and the pipeline's denoise step (pipeline/model.py)."""

import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

from common.denoise import classical_denoise, denoise_batch, estimate_noise, find_impulses, median, nlm


def _photo(size: int = 96) -> np.ndarray:
    """A bundled photo ``(size, size, 3)`` float32 in [0, 1], 8-bit valued."""
    image = Image.open(ROOT / "data" / "photos" / "lomiri_bridge.jpg").convert("RGB").resize((size, size))
    return np.asarray(image, np.float32) / 255


def _psnr(a, b) -> float:
    return float(10 * np.log10(1 / np.mean((a - b) ** 2)))


def _noisy(x, sigma, seed=0):
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32)
    return np.round(np.clip(x + sigma / 255 * noise, 0, 1) * 255).astype(np.float32) / 255


@pytest.mark.parametrize("sigma", [10, 25, 50])
def test_the_noise_level_is_estimated_within_a_fifth(sigma):
    assert estimate_noise(_noisy(_photo(), sigma)) == pytest.approx(sigma, rel=0.2)


def test_a_clean_photo_comes_back_bit_for_bit():
    x = _photo()
    assert estimate_noise(x) < 2.5 and not find_impulses(x).any()
    assert np.array_equal(classical_denoise(x), x)
    batch = torch.from_numpy(np.stack([x, x[::-1].copy()])).permute(0, 3, 1, 2)
    denoised, impulses = denoise_batch(batch)
    assert torch.equal(denoised, batch) and not impulses.any()


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_gaussian_noise_is_removed_as_well_as_nlm_does_at_the_true_level(sigma):
    x = _photo()
    y = _noisy(x, sigma)
    out = classical_denoise(y)
    assert _psnr(out, x) > _psnr(y, x) + 3
    assert _psnr(out, x) > _psnr(nlm(y, sigma), x) - 0.5


def test_impulses_are_found_and_replaced_by_the_median_of_their_intact_neighbours():
    x = _photo()
    rng = np.random.default_rng(1)
    hit = rng.random(x.shape[:2]) < 0.1
    y = np.where(hit[..., None], (rng.random(x.shape[:2]) < 0.5)[..., None].astype(np.float32), x)
    found = find_impulses(y)
    visible = hit & (np.abs(y - x).max(2) > 0.3)  # salt on white sky is no damage
    assert (found & visible).sum() > 0.9 * visible.sum() and (found & ~hit).sum() < 0.01 * hit.sum()
    out, replaced = classical_denoise(y, impulses=True)
    assert np.array_equal(replaced > 0, found)
    assert np.array_equal(out[~found], y[~found])  # the switching filter touches only impulses
    assert _psnr(out, x) > _psnr(median(y), x) > _psnr(y, x) + 10


def test_the_floor_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        classical_denoise(np.zeros((8, 8)))


@pytest.fixture(scope="module")
def shipped():
    from pipeline.model import load_pipeline

    return load_pipeline()


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def test_denoise_mode_blends_the_floor_by_the_mpns_mask_and_leaves_a_clean_photo(shipped):
    x = _tensor(_photo(64))
    with torch.no_grad():
        clean = shipped(x, shipped.corrupted_edge(x), mode="denoise")
        assert torch.equal(clean["output"], x)
        y = _tensor(_noisy(_photo(64), 25))
        noisy = shipped(y, shipped.corrupted_edge(y), mode="denoise")
    floor, _ = denoise_batch(y)
    m, alpha = noisy["predicted_mask"], shipped.denoiser_error
    w = m / (m + alpha * (1 - m))
    assert torch.allclose(noisy["mask"], w, atol=1e-6) and (w >= m).all()
    assert torch.allclose(noisy["output"], (1 - w) * y + w * floor, atol=1e-5)


def test_blind_mode_denoises_a_noisy_photo_first_and_a_clean_one_not(shipped):
    x, y = _tensor(_photo(64)), _tensor(_noisy(_photo(64), 25))
    with torch.no_grad():
        runs = {}
        for first in (True, False):
            shipped.blind_denoise = first
            runs[first] = [shipped(image, shipped.corrupted_edge(image)) for image in (x, y)]
        shipped.blind_denoise = True
    assert all(torch.equal(runs[True][0][k], runs[False][0][k]) for k in ("output", "mask", "edges"))
    assert not torch.equal(runs[True][1]["output"], runs[False][1]["output"])
    assert (runs[True][1]["mask"] > 0).float().mean() > 0.5  # the denoised pixels are in the mask


def test_denoise_mode_above_the_working_size_runs_at_full_resolution():
    from pipeline.inference.inpainter import BlindInpainter

    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64)
    clean = np.round(_photo(160) * 255).astype(np.uint8)
    noisy = np.round(_noisy(_photo(160), 25) * 255).astype(np.uint8)
    assert np.array_equal(inpainter.inpaint_array(clean, mode="denoise")["output"], clean)
    result = inpainter.inpaint_array(noisy, mode="denoise")
    m = result["mask"][..., None].astype(np.float32) / 255  # the weight used
    floor = classical_denoise(noisy.astype(np.float32) / 255)
    expected = noisy / 255 + m * (floor - noisy / 255)
    assert np.abs(result["output"] / 255 - expected).max() <= 1.5 / 255  # the 8-bit mask and output
    assert _psnr(result["output"] / 255, _photo(160)) > _psnr(noisy / 255, _photo(160))


def test_the_denoise_weight_trusts_the_denoiser_by_alpha_and_replaces_impulses_whole():
    from pipeline.model import BlindPipeline

    m = torch.tensor([0.0, 0.2, 0.5, 0.9, 1.0]).view(1, 1, 1, 5)
    none = torch.zeros_like(m)
    assert torch.allclose(BlindPipeline(denoiser_error=1.0).denoise_weight(m, none), m)
    w = BlindPipeline(denoiser_error=0.1).denoise_weight(m, none)
    assert torch.allclose(w, m / (m + 0.1 * (1 - m))) and w[0, 0, 0, 0] == 0 and w[0, 0, 0, -1] == 1
    impulses = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]).view(1, 1, 1, 5)
    assert BlindPipeline().denoise_weight(m, impulses)[0, 0, 0, 1] == 1
