"""The bundled sample photos (data/photos), their licences and the train-time augmentation."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

from data.corruption import Corruptor, transform_donor
from data.image_dataset import ColourJitter
from data.sample import PHOTO_DIR, SPLIT_PHOTOS, load_photo, sample

SIZE = 48


def _listed() -> list[str]:
    """File names in the table rows of LICENSES.md."""
    text = (PHOTO_DIR / "LICENSES.md").read_text()
    return re.findall(r"^\| `([^`]+\.jpg)` \|", text, flags=re.M)


def test_every_photo_is_listed_in_the_licences_and_vice_versa():
    listed = _listed()
    assert len(listed) == len(set(listed)) == 32
    assert set(listed) == {p.name for p in PHOTO_DIR.glob("*.jpg")}


def test_photos_are_rgb_and_at_most_512_px():
    for path in PHOTO_DIR.glob("*.jpg"):
        with Image.open(path) as image:
            assert image.mode == "RGB" and max(image.size) <= 512, path.name


def test_splits_are_disjoint_and_cover_every_photo():
    splits = {k: set(v) for k, v in SPLIT_PHOTOS.items()}
    assert sum(len(v) for v in SPLIT_PHOTOS.values()) == sum(len(v) for v in splits.values())  # no repeats
    assert not splits["train"] & splits["val"] and not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]
    assert set().union(*splits.values()) == {p.stem for p in PHOTO_DIR.glob("*.jpg")}
    assert len(splits["test"]) >= 4 and (len(splits["train"]), len(splits["val"])) == (22, 4)


def test_sources_kept_for_independent_evaluation_are_absent():
    text = (PHOTO_DIR / "LICENSES.md").read_text().lower()
    names = " ".join(p.name.lower() for p in PHOTO_DIR.iterdir())
    for source in ("mate", "matplotlib", "pywt", "pywavelets", "mahotas"):
        assert not re.search(rf"\b{source}\b", text) and source not in names, source


def test_load_photo_is_cached_rgb_float():
    photo = load_photo("skimage_camera")
    assert photo.dtype == torch.float32 and photo.shape[0] == 3 and photo.min() >= 0 and photo.max() <= 1
    assert load_photo("skimage_camera") is photo


def test_train_crops_are_reproducible_given_the_rng_and_vary_with_it():
    train = sample("train", SIZE, repeat=1)
    a = train.get(0, np.random.default_rng(3))
    assert torch.equal(a, train.get(0, np.random.default_rng(3)))
    assert not torch.equal(a, train.get(0, np.random.default_rng(4)))
    assert a.shape == (3, SIZE, SIZE) and a.min() >= 0 and a.max() <= 1
    assert train.jitter is not None and sample("val", SIZE, crops_per_photo=1).jitter is None
    assert sample("train", SIZE, jitter=False).jitter is None


def test_colour_jitter_stays_in_range_and_changes_the_image():
    image = load_photo("skimage_chelsea")[:, :64, :64]
    jitter = ColourJitter()
    outs = [jitter(image, np.random.default_rng(seed)) for seed in range(4)]
    for out in outs:
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        assert (out - image).abs().mean() > 1e-3
    assert torch.equal(outs[0], jitter(image, np.random.default_rng(0)))
    assert torch.equal(jitter(image, None), image)
    with pytest.raises(ValueError, match="contrast"):
        ColourJitter(contrast=(0.0, 1.0))


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 24, 40)])
def test_donor_transform_keeps_the_shape_and_is_reproducible(shape):
    donor = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    outs = [transform_donor(donor, np.random.default_rng(seed)) for seed in range(8)]
    for out in outs:
        assert out.shape == shape and out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    assert torch.equal(outs[0], transform_donor(donor, np.random.default_rng(0)))
    assert sum(not torch.equal(out, donor) for out in outs) >= 6


def test_image_fill_pastes_the_transformed_donor():
    image, donor = torch.zeros(3, 32, 32), torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(1))
    hole = torch.zeros(1, 32, 32)
    hole[:, 8:24, 8:24] = 1
    plain = Corruptor(fills={"image": 1.0}, soft_prob=0.0, alpha_prob=0.0, donor_transform=False)
    changed = Corruptor(fills={"image": 1.0}, soft_prob=0.0, alpha_prob=0.0)
    a, _ = changed(image, hole, np.random.default_rng(5), donor)
    assert torch.equal(a, changed(image, hole, np.random.default_rng(5), donor)[0])
    assert torch.equal(plain(image, hole, np.random.default_rng(5), donor)[0][:, 8:24, 8:24], donor[:, 8:24, 8:24])
    assert not torch.equal(a[:, 8:24, 8:24], donor[:, 8:24, 8:24])


def test_jittered_training_crops_spread_colour_over_green_magenta_too():
    """The bundled training photos hold 1.7 % of their colour variance on the green–magenta axis;
    the jittered crops (whole-circle hue, channel permutations) at least 5 %."""
    from data.image_dataset import colour_spread

    photos = colour_spread([load_photo(name)[:, ::4, ::4] for name in SPLIT_PHOTOS["train"]])
    assert abs(sum(photos.values()) - 1) < 1e-9 and photos["green-magenta"] < 0.03
    train, rng = sample("train", SIZE), np.random.default_rng(0)
    crops = colour_spread([train.get(i % len(train), rng) for i in range(120)])
    assert crops["green-magenta"] > 0.05


def test_channel_shuffle_permutes_the_colour_planes():
    image = load_photo("skimage_chelsea")[:, :32, :32]
    plain = ColourJitter(brightness=0, contrast=(1, 1), saturation=(1, 1), hue=0, gamma=(1, 1), channel_shuffle=1)
    outs = np.stack([plain(image, np.random.default_rng(seed))[:, 0, 0] for seed in range(12)])
    # The same three values in some order (to float rounding, which differs between CPUs) ...
    np.testing.assert_allclose(np.sort(outs, axis=1), np.sort(image[:, 0, 0])[None].repeat(12, 0), atol=1e-6)
    # ... in more than two orders.
    assert len({tuple(np.argsort(o)) for o in outs}) > 2
    with pytest.raises(ValueError, match="channel_shuffle"):
        ColourJitter(channel_shuffle=2)
