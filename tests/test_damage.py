"""The named damage kinds (data/damage.py): deterministic, well-formed, scaled with the image."""

import pickle

import numpy as np
import pytest
import torch

from data.damage import DAMAGE_KINDS, KINDS, Damage, DamageMix
from data.masks import hole_ratio


def _photo(size: int, seed: int = 0) -> torch.Tensor:
    """A smooth random colour image ``(3, size, size)`` in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(6 * xx + rng.uniform(0, 6)), np.cos(5 * yy + rng.uniform(0, 6)), np.sin(4 * (xx + yy))]
    return torch.from_numpy(np.stack(channels).astype(np.float32) * 0.5 + 0.5)


def test_the_kinds_in_order():
    assert DAMAGE_KINDS == ("scratch", "text", "pasted_photo", "noise_blotch", "graffiti")


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_each_kind_is_deterministic_given_the_generator(kind):
    image, donor = _photo(48), _photo(48, seed=1)
    damage = Damage(kind)
    a = damage(image, np.random.default_rng([7, 1]), donor)
    b = damage(image, np.random.default_rng([7, 1]), donor)
    c = damage(image, np.random.default_rng([7, 2]), donor)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    copy = pickle.loads(pickle.dumps(damage))  # DataLoader workers get a pickled copy
    d = copy(image, np.random.default_rng([7, 1]), donor)
    assert torch.equal(a[0], d[0]) and torch.equal(a[1], d[1])


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
@pytest.mark.parametrize("size", [32, 64])
def test_masks_are_continuous_non_empty_and_the_rest_is_untouched(kind, size):
    image, donor = _photo(size), _photo(size, seed=3)
    for seed in range(4):
        corrupted, mask = Damage(kind)(image, np.random.default_rng(seed), donor if seed % 2 else None)
        assert corrupted.shape == (3, size, size) and mask.shape == (1, size, size)
        assert corrupted.dtype == mask.dtype == torch.float32
        assert mask.min() >= 0 and mask.max() <= 1 and corrupted.min() >= 0 and corrupted.max() <= 1
        assert (mask > 0.5).any(), (kind, size, seed)  # the true hole is never empty
        intact = mask[0] == 0
        assert intact.any() and torch.equal(corrupted[:, intact], image[:, intact])
        assert not torch.equal(corrupted, image)


def test_only_pasted_photo_uses_the_donor_and_it_falls_back_to_the_image_itself():
    image, donor = _photo(48), _photo(48, seed=5)
    for kind in DAMAGE_KINDS:
        with_donor = Damage(kind)(image, np.random.default_rng(0), donor)
        without = Damage(kind)(image, np.random.default_rng(0), None)
        assert torch.equal(with_donor[1], without[1])  # the shape does not depend on the donor
        assert torch.equal(with_donor[0], without[0]) == (kind != "pasted_photo"), kind


@pytest.mark.parametrize("kind", DAMAGE_KINDS)
def test_sizes_scale_with_the_image(kind):
    """The same draws at 128 and 256 px cover about the same share of the image."""
    ratios = {
        size: np.mean([hole_ratio(Damage(kind)(_photo(size), np.random.default_rng(s))[1].numpy()) for s in range(6)])
        for size in (128, 256)
    }
    assert 0.6 < ratios[128] / ratios[256] < 1.6, ratios


def test_the_mix_draws_only_the_kinds_it_is_given_and_is_picklable():
    image = _photo(32)
    mix = DamageMix({"text": 1, "scratch": 3, "graffiti": 0})
    assert list(mix.probs) == ["scratch", "text"] and mix.probs["scratch"] == pytest.approx(0.75)
    kinds = {mix.choose(np.random.default_rng(s)) for s in range(40)}
    assert kinds == {"scratch", "text"}
    a = mix(image, np.random.default_rng(3))
    b = pickle.loads(pickle.dumps(mix))(image, np.random.default_rng(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert set(DamageMix().probs) == set(KINDS) == {*DAMAGE_KINDS, "noise"}


@pytest.mark.parametrize(
    "probs, message",
    [
        ({"smudge": 1}, "unknown damage kind"),
        ({"text": -1}, "finite and >= 0"),
        ({"text": float("nan")}, "finite and >= 0"),
        ({"text": 0, "scratch": 0}, "must not all be zero"),
        ({"text": "a lot"}, "must be a number"),
        ({}, "non-empty mapping"),
    ],
)
def test_bad_mixes_are_refused(probs, message):
    with pytest.raises(ValueError, match=message):
        DamageMix(probs)


def test_bad_kinds_and_images_are_refused():
    with pytest.raises(ValueError, match="unknown damage kind 'smudge'; valid kinds are scratch, text"):
        Damage("smudge")
    with pytest.raises(ValueError, match=r"image must be a \(3, H, W\) tensor"):
        Damage("text")(torch.rand(1, 32, 32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="donor must have the image's shape"):
        Damage("pasted_photo")(torch.rand(3, 32, 32), np.random.default_rng(0), torch.rand(3, 16, 16))


def test_evaluation_pastes_real_photos_and_training_transforms_them():
    """donor_transform=False (evaluation) pastes the donor's own pixels where the photo is fully
    destroyed; the default (training) flips / re-tones it first."""
    image = torch.zeros(3, 64, 64)
    donor = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    for seed in range(6):
        corrupted, mask = Damage("pasted_photo", donor_transform=False)(image, np.random.default_rng(seed), donor)
        full = (mask[0] == 1).expand(3, -1, -1)
        assert full.any() and torch.equal(corrupted[full], donor[full])
    transformed = [Damage("pasted_photo")(image, np.random.default_rng(s), donor) for s in range(6)]
    assert any(
        not torch.equal(c[(m[0] == 1).expand(3, -1, -1)], donor[(m[0] == 1).expand(3, -1, -1)]) for c, m in transformed
    )
