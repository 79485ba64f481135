"""The bundled ``sample`` set: real photos that ship inside scikit-image and scikit-learn.

Nothing is downloaded. The photos are split by photo, so no held-out picture is ever seen in
training: train photos give fresh random multi-scale crops with flips every epoch; val and test
are a fixed list of crops of their own photos, drawn once from a seed. The photos are public
domain or CC0 (see ``skimage.data`` and ``sklearn.datasets.load_sample_images``).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from data.datasets import DatasetError, ImageDataset, SquareCrop, _check_split

SPLIT_PHOTOS = {
    "train": (
        "astronaut",
        "rocket",
        "hubble_deep_field",
        "retina",
        "immunohistochemistry",
        "motorcycle",
        "china",
        "moon",
        "clock",
        "text",
        "page",
        "brick",
        "grass",
        "gravel",
    ),
    "val": ("coffee", "coins"),
    "test": ("chelsea", "flower", "camera"),
}


@functools.cache
def load_photo(name: str) -> torch.Tensor:
    """One bundled photo as ``(3, H, W)`` float32 in [0, 1] (grayscale ones repeated to RGB)."""
    import skimage.data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        array = load_sample_image(f"{name}.jpg")
    elif name == "motorcycle":
        array = skimage.data.stereo_motorcycle()[0]
    elif name in SPLIT_PHOTOS["train"] + SPLIT_PHOTOS["val"] + SPLIT_PHOTOS["test"]:
        array = getattr(skimage.data, name)()
    else:
        raise DatasetError(f"unknown sample photo {name!r}")
    array = np.asarray(array, dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3].transpose(2, 0, 1)))


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
    repeat: int = 64,
    scale: tuple[float, float] = (0.35, 1.0),
    crops_per_photo: int = 8,
    seed: int = 0,
) -> ImageDataset:
    """The sample set's ``split`` at ``size`` px.

    ``repeat``: train crops per photo per epoch (14 photos × 64 = 896 by default);
    ``crops_per_photo`` and ``seed`` fix the val (2 photos) and test (3 photos) crops.
    """
    _check_split(split)
    if split == "train":
        crop = SquareCrop(size, "random", scale=scale, flip=True, min_side=1)
        return ImageDataset(SPLIT_PHOTOS["train"], crop, reader=_read_item, repeat=repeat, name="sample:train")
    items = _fixed_crops(SPLIT_PHOTOS[split], crops_per_photo, scale, seed)
    return ImageDataset(
        items, SquareCrop(size, "centre", flip=False, min_side=1), reader=_read_item, name=f"sample:{split}"
    )
