"""Image datasets: any folder or file list, and the CelebA, Paris StreetView, Places2 and CIFAR-10 presets.

Every dataset yields ground-truth images ``(3, size, size)`` in [0, 1]; masks and corruption
are added on top by :class:`data.datamodule.InpaintingSamples`. A dataset is built per split by
a factory ``f(split, size) -> ImageDataset``; the Hydra ``data`` group picks the factory.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from data.image_dataset import SPLITS, DatasetError, ImageDataset, SquareCrop, check_split
from data.io import is_image_file, list_images

log = logging.getLogger(__name__)


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
    check_split(split)
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
    check_split(split)
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
    check_split(split)
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
    check_split(split)
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
    check_split(split)
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
