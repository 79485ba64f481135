"""The bundled ``sample`` set: 32 natural photos that ship in ``data/photos/`` (nothing is downloaded).

The photos come from scikit-image, scikit-learn and two Debian wallpaper packages, all licensed
for redistribution; ``data/photos/LICENSES.md`` lists each one's author and licence, and
``scripts/curate_photos.py`` rebuilds them (RGB, long side at most 512 px). They are split by photo,
so no held-out picture is ever seen in training: the 22 train photos give fresh random multi-scale
crops with flips and colour jitter every epoch; val (4 photos) and test (6 photos) are a fixed
list of crops of their own photos, drawn once from a seed, without jitter.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from data.image_dataset import ColourJitter, DatasetError, ImageDataset, SquareCrop, check_split
from data.io import load_image

PHOTO_DIR = Path(__file__).parent / "photos"

SPLIT_PHOTOS = {
    "train": (
        "skimage_rocket",
        "skimage_camera",
        "sklearn_china",
        "plasma_bythewater",
        "plasma_coldripple",
        "plasma_darkesthour",
        "plasma_fallenleaf",
        "plasma_grey",
        "plasma_kite",
        "plasma_onestandsout",
        "plasma_summer_1am",
        "lomiri_aitzgorri",
        "lomiri_bridge",
        "lomiri_dragonfly",
        "lomiri_free",
        "lomiri_greentock",
        "lomiri_kleiber",
        "lomiri_life",
        "lomiri_picture0b",
        "lomiri_picture1a",
        "lomiri_seeding",
        "lomiri_wine",
    ),
    "val": ("skimage_coffee", "lomiri_friends", "lomiri_sunset", "plasma_colorfulcups"),
    "test": (
        "skimage_astronaut",
        "skimage_chelsea",
        "sklearn_flower",
        "lomiri_picosdeeuropa",
        "plasma_eveningglow",
        "plasma_path",
    ),
}
ALL_PHOTOS = SPLIT_PHOTOS["train"] + SPLIT_PHOTOS["val"] + SPLIT_PHOTOS["test"]


@functools.cache
def load_photo(name: str) -> torch.Tensor:
    """One bundled photo, ``data/photos/<name>.jpg``, as ``(3, H, W)`` float32 in [0, 1]."""
    if name not in ALL_PHOTOS:
        raise DatasetError(f"unknown sample photo {name!r}")
    return load_image(PHOTO_DIR / f"{name}.jpg")


class _FixedCrop:
    """A held-out item: ``(photo, top, left, side)``, a square cut once from a seed."""

    def __init__(self, photo: str, top: int, left: int, side: int):
        self.photo, self.top, self.left, self.side = photo, top, left, side

    def __repr__(self) -> str:
        return f"sample:{self.photo}[{self.top}:{self.top + self.side}, {self.left}:{self.left + self.side}]"


def _read_item(item) -> torch.Tensor:
    if isinstance(item, _FixedCrop):
        photo = load_photo(item.photo)
        return photo[:, item.top : item.top + item.side, item.left : item.left + item.side]
    return load_photo(item)


def _fixed_crops(photos, per_photo: int, scale: tuple[float, float], seed: int) -> list[_FixedCrop]:
    crops = []
    for p, name in enumerate(photos):
        rng = np.random.default_rng([seed, p])
        h, w = load_photo(name).shape[-2:]
        for _ in range(per_photo):
            side = round(min(h, w) * rng.uniform(*scale))
            crops.append(_FixedCrop(name, int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side))
    return crops


def sample(
    split: str,
    size: int = 128,
    repeat: int = 40,
    scale: tuple[float, float] = (0.35, 1.0),
    crops_per_photo: int = 8,
    seed: int = 0,
    jitter: bool = True,
) -> ImageDataset:
    """The sample set's ``split`` at ``size`` px.

    ``repeat``: train crops per photo per epoch (22 photos × 40 = 880 by default); ``jitter``:
    colour jitter (:class:`~data.datasets.ColourJitter`) on the train crops; ``crops_per_photo``
    and ``seed`` fix the val (4 photos) and test (6 photos) crops.
    """
    check_split(split)
    if split == "train":
        crop = SquareCrop(size, "random", scale=scale, flip=True, min_side=1)
        colour = ColourJitter() if jitter else None
        return ImageDataset(
            SPLIT_PHOTOS["train"], crop, reader=_read_item, repeat=repeat, name="sample:train", jitter=colour
        )
    items = _fixed_crops(SPLIT_PHOTOS[split], crops_per_photo, scale, seed)
    return ImageDataset(
        items, SquareCrop(size, "centre", flip=False, min_side=1), reader=_read_item, name=f"sample:{split}"
    )
