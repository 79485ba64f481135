"""The image data set every data set is (:class:`ImageDataset`: items read and cropped to a square),
its crops (:class:`SquareCrop`) and colour changes (:class:`ColourJitter`), and the split names."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from common.errors import BlindfillError
from data.io import ImageReadError, load_image

SPLITS = ("train", "val", "test")


class DatasetError(BlindfillError):
    """A dataset cannot be built: a missing or empty root, a bad file list, an unknown split."""


class SquareCrop:
    """Crop a square and resize it to ``size``: the one geometric transform every dataset uses.

    ``mode="random"`` takes a square of side ``s · short_side`` with ``s ~ U(scale)`` at a random
    place (multi-scale crops) and flips horizontally with p 0.5 when ``flip``; ``mode="centre"``
    takes the centred square of the short side. ``box=(top, left, height, width)`` first cuts a
    fixed box (CelebA's 178×178 face crop). Images whose short side is below ``min_side`` px are
    refused with an :class:`~data.io.ImageReadError`: upscaling them would teach blur.
    """

    def __init__(
        self,
        size: int,
        mode: str = "random",
        scale: tuple[float, float] = (0.5, 1.0),
        flip: bool = True,
        box: tuple[int, int, int, int] | None = None,
        min_side: int | None = None,
    ):
        if mode not in ("random", "centre"):
            raise ValueError(f"crop mode must be 'random' or 'centre', got {mode!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {tuple(scale)}")
        self.size, self.mode, self.scale, self.flip, self.box = size, mode, tuple(scale), flip, box
        self.min_side = size // 4 if min_side is None else min_side

    def __call__(self, image: torch.Tensor, rng: np.random.Generator | None, name: str = "") -> torch.Tensor:
        """``(3, H, W)`` -> ``(3, size, size)``; ``rng=None`` means deterministic (centre, no flip)."""
        if self.box is not None:
            top, left, height, width = self.box
            if image.shape[1] >= top + height and image.shape[2] >= left + width:
                image = image[:, top : top + height, left : left + width]
        h, w = image.shape[-2:]
        short = min(h, w)
        if short < self.min_side:
            raise ImageReadError(f"{name}: {w}×{h} px is too small for {self.size}-px training crops")
        if self.mode == "random" and rng is not None:
            side = max(1, round(short * rng.uniform(*self.scale)))
            top = int(rng.integers(0, h - side + 1))
            left = int(rng.integers(0, w - side + 1))
        else:
            side = short
            top, left = (h - side) // 2, (w - side) // 2
        crop = image[:, top : top + side, left : left + side]
        crop = TF.resize(crop, [self.size, self.size], antialias=True).clamp_(0.0, 1.0)
        if self.flip and rng is not None and rng.random() < 0.5:
            crop = crop.flip(-1)
        return crop


class ColourJitter:
    """Random photometric change of a training crop: brightness, contrast, saturation, hue, gamma,
    and a permutation of the colour channels.

    Factors are drawn from the ``rng`` given to each call: brightness ``1 + U(±brightness)``
    (multiplies), contrast and saturation ``U(range)`` (blend with the mean grey / the grey
    image), hue shift ``U(±hue)`` of a full turn, gamma log-uniform in ``gamma``. The first four
    are applied in a random order, then, with probability ``channel_shuffle``, the RGB channels in
    a random order (one of the six), gamma last. ``rng=None`` returns the image unchanged.

    The defaults turn the hue over the whole circle and permute channels half the time: natural
    photos hold little green–magenta variance (1.7 % of the bundled training photos' colour
    variance, against 13 % red–blue and 85 % luminance; :func:`colour_spread`), so a generator
    trained on them unaltered learns that axis last, and fills a green lawn in tan. The crop is
    changed before any damage is drawn, so the damage is the same kind of damage on any colours.
    """

    def __init__(
        self,
        brightness: float = 0.15,
        contrast: tuple[float, float] = (0.8, 1.25),
        saturation: tuple[float, float] = (0.6, 1.5),
        hue: float = 0.5,
        gamma: tuple[float, float] = (0.8, 1.25),
        channel_shuffle: float = 0.5,
    ):
        if not (0 <= brightness < 1 and 0 <= hue <= 0.5 and 0 <= channel_shuffle <= 1):
            raise ValueError(
                f"brightness must be in [0, 1), hue in [0, 0.5] and channel_shuffle in [0, 1], got "
                f"{brightness}, {hue}, {channel_shuffle}"
            )
        for name, (lo, hi) in {"contrast": contrast, "saturation": saturation, "gamma": gamma}.items():
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < lo <= hi, got {(lo, hi)}")
        self.brightness, self.contrast, self.saturation = brightness, tuple(contrast), tuple(saturation)
        self.hue, self.gamma, self.channel_shuffle = hue, tuple(gamma), channel_shuffle

    def __call__(self, image: torch.Tensor, rng: np.random.Generator | None) -> torch.Tensor:
        """``(3, H, W)`` in [0, 1] -> ``(3, H, W)`` in [0, 1]."""
        if rng is None:
            return image
        changes = [
            (TF.adjust_brightness, 1 + rng.uniform(-self.brightness, self.brightness)),
            (TF.adjust_contrast, rng.uniform(*self.contrast)),
            (TF.adjust_saturation, rng.uniform(*self.saturation)),
            (TF.adjust_hue, rng.uniform(-self.hue, self.hue)),
        ]
        gamma = float(np.exp(rng.uniform(np.log(self.gamma[0]), np.log(self.gamma[1]))))
        for k in rng.permutation(len(changes)):
            adjust, factor = changes[k]
            image = adjust(image, float(factor))
        if rng.random() < self.channel_shuffle:
            image = image[torch.from_numpy(rng.permutation(3))]
        return TF.adjust_gamma(image.clamp(0.0, 1.0), gamma).clamp_(0.0, 1.0)


# Orthonormal opponent axes of RGB: luminance, red–blue, green–magenta.
OPPONENT_AXES = ("luminance", "red-blue", "green-magenta")
_OPPONENT = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 2.0, -1.0]])
_OPPONENT = _OPPONENT / _OPPONENT.norm(dim=1, keepdim=True)


def colour_spread(images: Sequence[torch.Tensor]) -> dict[str, float]:
    """How the colour variance of ``images`` (each ``(3, H, W)`` in [0, 1], pixels pooled) splits
    over the opponent axes: luminance, red–blue (R − B) and green–magenta (2G − R − B), as shares
    that sum to 1."""
    pixels = torch.cat([image.reshape(3, -1) for image in images], dim=1).double()
    centred = pixels - pixels.mean(dim=1, keepdim=True)
    variance = (_OPPONENT.double() @ centred).pow(2).mean(dim=1)
    return dict(zip(OPPONENT_AXES, (variance / variance.sum()).tolist()))


class ImageDataset(Dataset):
    """Ground-truth images from ``items`` read by ``reader`` and cropped by ``crop``.

    ``items`` are usually file paths (``reader=load_image``); the bundled sample set passes
    in-memory photos. ``repeat`` lists every item that many times per epoch (small sets).
    ``get(i, rng)`` draws the random crop (and the ``jitter`` colour change, when given) from
    ``rng``; ``self[i]`` is the deterministic one, never jittered.
    """

    def __init__(
        self,
        items: Sequence,
        crop: SquareCrop,
        reader: Callable[[object], torch.Tensor] = load_image,
        repeat: int = 1,
        name: str = "images",
        jitter: ColourJitter | None = None,
    ):
        self.items, self.crop, self.reader, self.repeat, self.name = list(items), crop, reader, repeat, name
        self.jitter = jitter

    def __len__(self) -> int:
        return len(self.items) * self.repeat

    def describe(self, index: int) -> str:
        return str(self.items[index % len(self.items)])

    def get(self, index: int, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Image ``index`` as ``(3, size, size)``; raises ImageReadError naming the file."""
        item = self.items[index % len(self.items)]
        image = self.crop(self.reader(item), rng, name=str(item))
        return image if self.jitter is None else self.jitter(image, rng)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.get(index, None)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")
