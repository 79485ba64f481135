"""Photo noise as damage (data/noise.py): the kinds, and the soft mask of how much each pixel lost."""

import pickle

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT
from PIL import Image

from data.damage import Damage
from data.noise import NOISE_KINDS, WINDOW_SIGMA, Noise, add_noise, noise_mask


def _photo(size: int = 64) -> np.ndarray:
    """A bundled photo ``(3, size, size)`` float32 in [0, 1]: flat sky and textured ground."""
    image = Image.open(ROOT / "data" / "photos" / "lomiri_bridge.jpg").convert("RGB").resize((size, size))
    return np.asarray(image, np.float32).transpose(2, 0, 1) / 255


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_each_kind_is_8_bit_in_range_and_deterministic(kind):
    x = _photo(48)
    y, hits = add_noise(x, kind, np.random.default_rng(3))
    again, _ = add_noise(x, kind, np.random.default_rng(3))
    assert y.shape == x.shape and y.dtype == np.float32 and np.array_equal(y, again)
    assert y.min() >= 0 and y.max() <= 1 and np.allclose(y * 255, np.round(y * 255), atol=1e-3)
    assert np.abs(y - x).mean() > 1 / 255  # it is noise a user sees
    assert (hits is not None) == (kind == "salt_pepper")


def test_the_wiener_mask_grows_with_the_noise_and_is_highest_where_the_signal_is_flat():
    x = _photo(64)
    rng = np.random.default_rng(0)
    means = []
    for sigma in (5, 15, 30, 60):
        y = np.clip(x + sigma / 255 * rng.standard_normal(x.shape, dtype=np.float32), 0, 1)
        means.append(float(noise_mask(x, y).mean()))
    assert means == sorted(means) and means[0] > 0.05 and means[-1] > 0.8
    flat = np.full_like(x, 0.5)
    flat[:, :, 32:] = np.random.default_rng(1).random((3, 64, 32), dtype=np.float32)  # texture on the right
    y = flat + 15 / 255 * np.random.default_rng(2).standard_normal(flat.shape, dtype=np.float32)
    m = noise_mask(flat, y)
    assert m[:, 4:28].mean() > 0.9 and m[:, 36:60].mean() < 0.2


def test_the_mask_is_the_wiener_weight_so_its_composite_beats_the_noisy_photo_and_the_local_mean():
    x = _photo(64)
    y = np.clip(x + 25 / 255 * np.random.default_rng(4).standard_normal(x.shape, dtype=np.float32), 0, 1)
    m = noise_mask(x, y)
    mean = np.stack([cv2.GaussianBlur(c, (0, 0), WINDOW_SIGMA, borderType=cv2.BORDER_REFLECT) for c in x])
    wiener = (1 - m) * y + m * mean

    def error(a):
        return float(((a - x) ** 2).mean())

    assert error(wiener) < 0.5 * error(y) and error(wiener) < error(mean)


def test_impulses_are_wholly_destroyed_and_nothing_else_is():
    x = _photo(48)
    for seed in range(4):
        y, hits = add_noise(x, "salt_pepper", np.random.default_rng(seed))
        m = noise_mask(x, y, hits)
        changed = np.abs(y - x).max(0) > 0.5 / 255
        assert set(np.unique(m)) <= {0.0, 1.0} and np.array_equal(m == 1, changed)


@pytest.mark.parametrize("seed", range(6))
def test_the_damage_call_keeps_untouched_pixels_and_masks_only_changed_ones(seed):
    x = torch.from_numpy(_photo(48))
    noise = pickle.loads(pickle.dumps(Noise(regional=1.0 if seed % 2 else 0.0)))
    y, m = noise(x, np.random.default_rng(seed))
    assert y.shape == (3, 48, 48) and m.shape == (1, 48, 48) and m.min() >= 0 and m.max() <= 1
    untouched = m[0] == 0
    assert torch.equal(y[:, untouched], x[:, untouched])
    if seed % 2:  # regional: some of the photo is left alone
        assert untouched.float().mean() > 0.1
    a, b = Damage("noise")(x, np.random.default_rng(seed)), Damage("noise")(x, np.random.default_rng(seed))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_luminance_noise_is_the_same_in_every_channel():
    x = np.full((3, 32, 32), 0.5, np.float32)
    grey = [s for s in range(20) if np.ptp(add_noise(x, "gaussian", np.random.default_rng(s))[0], axis=0).max() == 0]
    colour = [s for s in range(20) if s not in grey]
    assert grey and colour  # both drawn, about half each


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="unknown noise kind"):
        add_noise(_photo(16), "rain", np.random.default_rng(0))
    with pytest.raises(ValueError, match="noise kinds"):
        Noise(kinds=["gaussian", "rain"])
    with pytest.raises(ValueError, match="regional"):
        Noise(regional=2)
