import pickle
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data.corruption import FILL_KINDS, Corruptor, smooth_random_field, soften_mask  # noqa: E402

SIZE = 64


def _image(seed=0, size=SIZE):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def _rect_hole(size=SIZE, y0=16, y1=40, x0=20, x1=48):
    hole = torch.zeros(1, size, size)
    hole[:, y0:y1, x0:x1] = 1
    return hole


def _check_contract(image, corrupted, m):
    assert corrupted.shape == image.shape and corrupted.dtype == torch.float32
    assert m.shape == (1, *image.shape[1:]) and m.dtype == torch.float32
    assert torch.isfinite(corrupted).all() and torch.isfinite(m).all()
    assert m.min() >= 0 and m.max() <= 1
    assert corrupted.min() >= 0 and corrupted.max() <= 1
    keep = m[0] == 0
    assert torch.equal(corrupted[:, keep], image[:, keep])  # bitwise


@pytest.mark.parametrize("kind", FILL_KINDS)
def test_each_fill_kind(kind):
    # The donor goes in as it is here, so that the image fill can be compared with it pixel for
    # pixel; tests/test_sample_photos.py covers the transformed donor.
    corrupt = Corruptor(fills={kind: 1.0}, soft_prob=0.0, alpha_prob=0.0, donor_transform=False)
    image, hole = _image(), _rect_hole()
    for seed in range(4):
        donor = _image(100 + seed)
        corrupted, m = corrupt(image, hole, np.random.default_rng(seed), donor=donor)
        _check_contract(image, corrupted, m)
        if kind != "text":
            assert torch.equal(m, hole)
        destroyed = m[0] == 1
        assert destroyed.any()
        diff = (corrupted - image).abs()[:, destroyed].mean()
        assert diff > 0.05, f"{kind}: corrupted too close to the image inside the hole ({diff:.3f})"
        if kind == "image":
            assert torch.equal(corrupted[:, destroyed], donor[:, destroyed])


def test_each_fill_kind_with_soft_borders_and_alpha():
    image, hole = _image(), _rect_hole()
    for kind in FILL_KINDS:
        corrupt = Corruptor(fills={kind: 1.0}, soft_prob=1.0, alpha_prob=1.0)
        for seed in range(2):
            corrupted, m = corrupt(image, hole, np.random.default_rng(seed), donor=_image(7))
            _check_contract(image, corrupted, m)


def test_soft_borders():
    size = 128
    image, hole = _image(size=size), _rect_hole(size, 40, 72, 40, 72)
    corrupt = Corruptor(fills={"constant": 1.0}, soft_prob=1.0, alpha_prob=0.0)
    corrupted, m = corrupt(image, hole, np.random.default_rng(0))
    _check_contract(image, corrupted, m)
    assert (m[hole.bool()] == 1).all()
    ring = m[0, 36:40, 44:68]  # just above the hole
    assert ((ring > 0) & (ring < 1)).all()
    assert m[0, 39, 56] > m[0, 36, 56]  # ramps down away from the hole
    assert m[0, :8, :8].max() == 0  # far from the hole
    assert ((m > 0) & (m < 1)).sum() > 0.5 * hole.sum()


def test_soften_mask_keeps_hole():
    hole = np.zeros((32, 32), np.float32)
    hole[10:20, 8:24] = 1
    soft = soften_mask(hole, 15, 4)
    assert soft.dtype == np.float32
    assert (soft[hole == 1] == 1).all() and (soft >= hole).all() and soft.max() <= 1
    assert np.array_equal(soften_mask(np.zeros((16, 16), np.float32)), np.zeros((16, 16), np.float32))


def test_hard_mask_when_soft_and_alpha_off():
    corrupt = Corruptor(fills={"gaussian": 1, "constant": 1, "graffiti": 1}, soft_prob=0.0, alpha_prob=0.0)
    image, hole = _image(), _rect_hole()
    for seed in range(6):
        corrupted, m = corrupt(image, hole, np.random.default_rng(seed))
        assert torch.equal(m, hole)
        assert torch.equal(corrupted[:, ~hole[0].bool()], image[:, ~hole[0].bool()])


def test_alpha():
    lo, hi = 0.6, 0.8
    corrupt = Corruptor(fills={"uniform": 1.0}, soft_prob=0.0, alpha_prob=1.0, alpha_range=(lo, hi))
    image, hole = _image(), _rect_hole()
    alphas = []
    for seed in range(8):
        corrupted, m = corrupt(image, hole, np.random.default_rng(seed))
        _check_contract(image, corrupted, m)
        a = m.max().item()
        assert lo - 1e-6 <= a <= hi + 1e-6
        assert torch.equal(torch.unique(m), torch.tensor([0.0, a]))
        alphas.append(a)
    assert len(set(alphas)) > 1


def test_text_replaces_hole_with_thin_glyphs():
    corrupt = Corruptor(fills={"text": 1.0}, soft_prob=0.0, alpha_prob=0.0)
    size = 128
    image, empty = _image(size=size), torch.zeros(1, size, size)
    for seed in range(8):
        corrupted, m = corrupt(image, empty, np.random.default_rng(seed))
        _check_contract(image, corrupted, m)
        glyphs = (m[0] > 0).numpy()
        ratio = glyphs.mean()
        assert 0 < ratio < 0.5, ratio
        assert set(torch.unique(m).tolist()) <= {0.0, 1.0}
        # strokes narrower than 9 px (7 % of the image): erosion leaves at most stroke crossings
        core = cv2.erode(glyphs.astype(np.uint8), np.ones((9, 9), np.uint8))
        assert core.sum() <= 0.1 * glyphs.sum(), "text strokes should be thin"


def test_denoise_spread():
    lo, hi = 0.05, 0.4
    corrupt = Corruptor(
        fills={"gaussian": 1, "uniform": 1}, soft_prob=0, alpha_prob=0, spread=True, level_range=(lo, hi)
    )
    image, empty = _image(), torch.zeros(1, SIZE, SIZE)
    for seed in range(6):
        corrupted, m = corrupt(image, empty if seed % 2 else _rect_hole(), np.random.default_rng(seed))
        _check_contract(image, corrupted, m)
        assert lo - 1e-6 <= m.mean() <= hi + 1e-6
        assert (m > 0).float().mean() > 0.9
        assert m.max() <= hi + 1e-6
        assert m[0].diff(dim=1).abs().mean() < 0.02  # smooth, not per-pixel noise


def test_denoise_use_hole():
    corrupt = Corruptor(fills={"gaussian": 1}, soft_prob=0, alpha_prob=0, spread=True, use_hole=True)
    image, hole = _image(), _rect_hole()
    corrupted, m = corrupt(image, hole, np.random.default_rng(0))
    _check_contract(image, corrupted, m)
    assert (m[hole.bool()] == 1).all()
    assert m[~hole.bool()].max() <= 0.4 + 1e-6 and m[~hole.bool()].min() > 0


def test_smooth_random_field():
    field = smooth_random_field((40, 56), np.random.default_rng(0))
    assert field.shape == (40, 56) and field.dtype == np.float32
    assert field.min() == 0 and field.max() == 1


def test_determinism():
    corrupt = Corruptor()
    image, hole, donor = _image(), _rect_hole(), _image(1)
    for seed in range(6):
        a = corrupt(image, hole, np.random.default_rng(seed), donor)
        b = corrupt(image, hole, np.random.default_rng(seed), donor)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    outs = [corrupt(image, hole, np.random.default_rng(seed), donor) for seed in range(4)]
    assert any(not torch.equal(outs[0][0], o[0]) for o in outs[1:])


def test_does_not_touch_global_rngs():
    corrupt = Corruptor()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    for seed in range(6):
        corrupt(_image(), _rect_hole(), np.random.default_rng(seed), _image(1))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_missing_donor_falls_back():
    image, hole = _image(), _rect_hole()
    corrupt = Corruptor(fills={"image": 1.0}, soft_prob=0.0, alpha_prob=0.0)
    for seed in range(3):
        corrupted, m = corrupt(image, hole, np.random.default_rng(seed), donor=None)
        _check_contract(image, corrupted, m)
        assert torch.equal(m, hole)
        assert not torch.equal(corrupted, image)
    # with other kinds configured, the fallback is drawn among them
    corrupt = Corruptor(fills={"image": 0.9, "constant": 0.1}, soft_prob=0.0, alpha_prob=0.0, fill_value=0.25)
    corrupted, m = corrupt(image, hole, np.random.default_rng(0), donor=None)
    assert torch.equal(corrupted[:, hole[0].bool()], torch.full_like(corrupted[:, hole[0].bool()], 0.25))


def test_picklable():
    corrupt = Corruptor(fills={"graffiti": 1, "text": 1, "gaussian": 1})
    clone = pickle.loads(pickle.dumps(corrupt))
    image, hole = _image(), _rect_hole()
    for seed in range(3):
        a = corrupt(image, hole, np.random.default_rng(seed))
        b = clone(image, hole, np.random.default_rng(seed))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert "Corruptor(" in repr(clone)


@pytest.mark.parametrize("name", ["blind", "denoise", "none"])
def test_yaml_presets(name):
    from hydra.utils import instantiate

    from tests.conftest import compose_config

    corrupt = instantiate(compose_config("train", f"corruption={name}").corruption)
    assert isinstance(corrupt, Corruptor)
    pickle.dumps(corrupt)
    image, hole = _image(), _rect_hole()
    for seed in range(4):
        corrupted, m = corrupt(image, hole, np.random.default_rng(seed), donor=_image(5) if seed % 2 else None)
        _check_contract(image, corrupted, m)
        if name == "none":
            assert torch.equal(m, hole)
            inside = corrupted[:, hole[0].bool()]
            assert torch.equal(inside, torch.ones_like(inside))
        if name == "denoise":
            assert (m > 0).all() and m.max() <= 0.4 + 1e-6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fills": {"blur": 1.0}}, r"unknown fill kind.*'blur'.*graffiti"),
        ({"fills": {}}, "non-empty"),
        ({"fills": {"constant": -1.0, "uniform": 1.0}}, ">= 0"),
        ({"fills": {"constant": 0.0, "uniform": 0.0}}, "all be zero"),
        ({"soft_prob": 1.5}, "soft_prob"),
        ({"alpha_prob": -0.1}, "alpha_prob"),
        ({"alpha_range": (0.5, 1.5)}, "alpha_range"),
        ({"alpha_range": (0.8, 0.2)}, "alpha_range"),
        ({"alpha_range": (0.5,)}, "alpha_range"),
        ({"level_range": (-0.1, 0.3)}, "level_range"),
        ({"soft_kernel": 4}, "soft_kernel"),
        ({"soft_iters": 0}, "soft_iters"),
        ({"fill_value": 2.0}, "fill_value"),
        ({"spread": True}, "text"),
    ],
)
def test_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Corruptor(**kwargs)


def test_bad_call_shapes():
    corrupt = Corruptor(fills={"constant": 1})
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="image"):
        corrupt(torch.rand(1, 3, 8, 8), torch.zeros(1, 8, 8), rng)
    with pytest.raises(ValueError, match="hole"):
        corrupt(torch.rand(3, 8, 8), torch.zeros(1, 8, 9), rng)
    with pytest.raises(ValueError, match="donor"):
        corrupt(torch.rand(3, 8, 8), torch.zeros(1, 8, 8), rng, donor=torch.rand(3, 4, 4))
