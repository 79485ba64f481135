"""Image datasets: any folder or file list, and the CelebA, Paris StreetView, Places2 and CIFAR-10 presets.

Every dataset yields ground-truth images ``(3, size, size)`` in [0, 1]; masks and corruption
are added on top by :class:`data.datamodule.InpaintingSamples`. A dataset is built per split by
a factory ``f(split, size) -> ImageDataset``; the Hydra ``data`` group picks the factory.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as TF

from common.errors import BlindfillError
from data.io import ImageReadError, is_image_file, list_images, load_image

SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


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


# --- file lists and splits ---------------------------------------------------------------------


MAX_FLIST_BYTES = 2**30  # Places2's largest list is ~80 MB


def read_flist(path: str | os.PathLike) -> list[Path]:
    """EdgeConnect-style file list: one image path per line (relative to the list's folder or
    absolute); blank lines and ``#`` comments skipped; a trailing label column (Places2) dropped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"file list {path} does not exist")
    if is_image_file(path):
        raise DatasetError(f"{path} is an image, not a folder of images or a file list")
    if path.stat().st_size > MAX_FLIST_BYTES:
        raise DatasetError(f"file list {path} is larger than {MAX_FLIST_BYTES // 2**20} MiB: not a file list")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DatasetError(f"file list {path} is not a UTF-8 text file (one image path per line)") from None
    files = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        file = Path(line if is_image_file(line) else line.split()[0])
        files.append(file if file.is_absolute() else path.parent / file)
    if not files:
        raise DatasetError(f"file list {path} lists no images")
    return files


def hash_split(files: Sequence[Path], split: str, root: Path, fractions=(0.9, 0.05, 0.05)) -> list[Path]:
    """A split that never changes as files are added: by a CRC of the path relative to ``root``."""
    fractions = np.asarray(list(fractions), dtype=np.float64)
    bounds = np.cumsum(fractions) / fractions.sum() * 1000
    index = SPLITS.index(split)
    lo, hi = (0 if index == 0 else bounds[index - 1]), bounds[index]
    chosen = []
    for file in files:
        key = zlib.crc32(str(Path(file).relative_to(root) if Path(file).is_relative_to(root) else file).encode())
        if lo <= key % 1000 < hi:
            chosen.append(file)
    return chosen


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {SPLITS}")


def _require_root(root, name: str, env: str | None = None) -> Path:
    if root in (None, "", "???"):
        hint = (
            f"set the {env} environment variable or pass data.dataset.root=/path"
            if env
            else "pass data.dataset.root=/path"
        )
        raise DatasetError(f"the {name} root folder is not set: {hint}")
    root = Path(os.path.expanduser(str(root)))
    if not root.exists():
        raise DatasetError(f"the {name} root {root} does not exist")
    return root


def _images_in(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{what}: folder {folder} does not exist")
    files = list_images(folder)
    if not files:
        raise DatasetError(f"{what}: no images under {folder} (extensions: .jpg .png .bmp .tif .webp ...)")
    return files


def _first_dir(root: Path, names: Sequence[str]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def _crop_for(split: str, size: int, scale=(0.5, 1.0), box=None) -> SquareCrop:
    train = split == "train"
    return SquareCrop(size, "random" if train else "centre", scale=scale, flip=train, box=box)


# --- presets -------------------------------------------------------------------------------------


def image_folder(
    split: str,
    size: int,
    root: str | None = None,
    train_flist=None,
    val_flist=None,
    test_flist=None,
    scale: tuple[float, float] = (0.5, 1.0),
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
) -> ImageDataset:
    """Any folder of images (searched recursively) or EdgeConnect-style file lists.

    The split comes from, in order: the ``<split>_flist`` file; a ``train/``, ``val/``, ``test/``
    sub-folder of ``root``; ``root`` itself when it is a file list; else a stable hash split of
    all images under ``root`` with ``fractions``.
    """
    _check_split(split)
    flist = {"train": train_flist, "val": val_flist, "test": test_flist}[split]
    if flist:
        files = read_flist(flist)
    else:
        root = _require_root(root, "image folder")
        if root.is_file():
            files = read_flist(root)
        elif (root / split).is_dir():
            files = _images_in(root / split, f"{split} split")
        else:
            all_files = _images_in(root, "image folder")
            files = hash_split(all_files, split, root, fractions)
            if not files:
                raise DatasetError(f"image folder {root}: the {split} split is empty ({len(all_files)} images in all)")
    return ImageDataset(files, _crop_for(split, size, scale), name=f"folder:{split}")


def celeba(split: str, size: int, root: str | None = None) -> ImageDataset:
    """CelebA aligned faces (178×218): the 178×178 face crop (top 20 px), resized to ``size``.

    Images in ``root/img_align_celeba/`` (or ``root`` itself); the official split from
    ``list_eval_partition.txt`` (0 train, 1 val, 2 test) in ``root`` or ``root/Eval`` when
    present, else a stable hash split.
    """
    _check_split(split)
    root = _require_root(root, "CelebA", "CELEBA_ROOT")
    image_dir = _first_dir(root, ["img_align_celeba"]) or root
    partition = next(
        (p for p in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt") if p.is_file()), None
    )
    if partition is not None:
        code = str(SPLITS.index(split))
        names = [
            ln.split()[0] for ln in partition.read_text().splitlines() if len(ln.split()) == 2 and ln.split()[1] == code
        ]
        files = [image_dir / n for n in names]
    else:
        files = hash_split(_images_in(image_dir, "CelebA"), split, image_dir)
    if not files:
        raise DatasetError(f"CelebA at {root}: the {split} split is empty")
    # (178×218) -> centre 178×178: the box starts 20 px down, as in the usual aligned-face crop.
    crop = SquareCrop(size, "centre", flip=split == "train", box=(20, 0, 178, 178))
    return ImageDataset(files, crop, name=f"celeba:{split}")


def paris_streetview(
    split: str, size: int, root: str | None = None, scale: tuple[float, float] = (0.5, 1.0)
) -> ImageDataset:
    """Paris StreetView (Pathak et al. 2016): 936×537 photos.

    Train: ``root/paris_train_original`` (or ``root/train``), random multi-scale square crops.
    Val and test: ``root/paris_eval_gt`` (the 100 standard evaluation images; or ``root/val``,
    ``root/test``), centre square crop resized to ``size``.
    """
    _check_split(split)
    root = _require_root(root, "Paris StreetView", "PSV_ROOT")
    names = ["paris_train_original", "train"] if split == "train" else ["paris_eval_gt", split, "test", "val"]
    folder = _first_dir(root, names)
    if folder is None:
        raise DatasetError(f"Paris StreetView at {root}: none of {names} exists for the {split} split")
    return ImageDataset(
        _images_in(folder, f"Paris StreetView {split}"), _crop_for(split, size, scale), name=f"psv:{split}"
    )


def places2(split: str, size: int, root: str | None = None, scale: tuple[float, float] = (0.5, 1.0)) -> ImageDataset:
    """Places365-Standard (256×256 release): ``data_256/`` with ``places365_train_standard.txt``
    for train, ``val_256/`` with ``places365_val.txt`` for val and test (the test labels are
    unpublished, so papers evaluate on val). Without the list files the folders are scanned."""
    _check_split(split)
    root = _require_root(root, "Places2", "PLACES2_ROOT")
    folder_name, list_name = (
        ("data_256", "places365_train_standard.txt") if split == "train" else ("val_256", "places365_val.txt")
    )
    folder = root / folder_name
    split_file = next((p for p in (root / list_name, root / "filelist" / list_name) if p.is_file()), None)
    if split_file is not None:
        names = [ln.split()[0].lstrip("/") for ln in split_file.read_text().splitlines() if ln.strip()]
        files = [folder / n for n in names]
    else:
        files = _images_in(folder, f"Places2 {split}")
    if not files:
        raise DatasetError(f"Places2 at {root}: the {split} split is empty")
    return ImageDataset(files, _crop_for(split, size, scale), name=f"places2:{split}")


CIFAR10_BATCHES = {
    "train": ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"],
    "test": ["test_batch.bin"],
}
CIFAR10_VAL = 5000  # the last images of the training batches are the val split
CIFAR10_RECORD = 1 + 3 * 32 * 32  # a label byte, then the red, green and blue planes


def read_cifar10(folder: Path, names: Sequence[str]) -> np.ndarray:
    """The images of CIFAR-10's binary batches ``names`` in ``folder``: ``(N, 3, 32, 32)`` uint8.
    The binary version is raw bytes; the Python version's pickles are never read."""
    arrays = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"CIFAR-10 at {folder}: {name} is missing (the binary version, cifar-10-batches-bin)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % CIFAR10_RECORD:
            raise DatasetError(f"CIFAR-10 batch {path} is not a whole number of {CIFAR10_RECORD}-byte records")
        arrays.append(raw.reshape(-1, CIFAR10_RECORD)[:, 1:].reshape(-1, 3, 32, 32))
    return np.concatenate(arrays)


def _cifar_image(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def cifar10(split: str, size: int = 32, root: str | None = None, val_images: int = CIFAR10_VAL) -> ImageDataset:
    """CIFAR-10 (32×32) from a local copy of its binary version (``root/cifar-10-batches-bin/`` or
    ``root`` itself; never downloaded, and the pickled Python version is not read): train = the
    five training batches but their last ``val_images`` (5,000), val = those, test = ``test_batch.bin``;
    flips in training, resized to ``size`` when it is not 32. Without a root (``CIFAR10_ROOT``
    unset), 32×32 crops of the bundled sample photos stand in (:func:`data.sample.sample`), with a
    warning."""
    _check_split(split)
    if root in (None, "", "???"):
        from data.sample import sample

        log.warning("CIFAR10_ROOT is not set: %s² crops of the bundled photos stand in for CIFAR-10", size)
        return sample(split, size)
    root = _require_root(root, "CIFAR-10", "CIFAR10_ROOT")
    folder = _first_dir(root, ["cifar-10-batches-bin"]) or root
    images = read_cifar10(folder, CIFAR10_BATCHES["test" if split == "test" else "train"])
    if split != "test":
        if not 0 < val_images < len(images):
            raise DatasetError(f"CIFAR-10 at {folder}: val_images={val_images} leaves no train or no val images")
        images = images[:-val_images] if split == "train" else images[-val_images:]
    crop = SquareCrop(size, "random" if split == "train" else "centre", scale=(1.0, 1.0), flip=split == "train")
    return ImageDataset(list(images), crop, reader=_cifar_image, name=f"cifar10:{split}")
