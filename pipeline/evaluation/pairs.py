"""The test pairs of the two protocols and the report rows (groups) each pair counts in.

- ``protocol=damage`` (:class:`DamagePairs`): every test image × every named damage kind of
  :mod:`data.damage` × ``per_kind`` draws, plus every test image once clean (mask 0); rows per
  damage kind, per hole-ratio bucket of the true hole, ``all damaged`` and ``clean``.
- ``protocol=buckets`` (:class:`BucketPairs`): every test image × masks of the bucketed test-mask
  set, corrupted per pair by the configured corruption; rows per hole-ratio bucket and ``all``.

A pair's inputs are a pure function of the seed and the pair's identity, so every method sees
bit-identical inputs (see :class:`EvaluationPairs`).
"""

from __future__ import annotations

import abc
import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import Dataset

from common.errors import ConfigError
from data.damage import DAMAGE_KINDS, Damage
from data.datamodule import build_datamodule
from data.image_dataset import ImageDataset
from data.masks import hole_ratio, resize_nearest
from pipeline.evaluation.mask_set import DEFAULT_BUCKETS, BucketedTestMasks

log = logging.getLogger(__name__)

PROTOCOLS = ("damage", "buckets", "denoise")  # denoise: pipeline.evaluation.denoise
OVERALL = "all"  # the buckets protocol's overall row
ALL_DAMAGED, CLEAN = "all damaged", "clean"  # the damage protocol's overall rows


# -- buckets --------------------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{x * 100:g}"


def bucket_labels(buckets) -> list[str]:
    """Report rows in order for the ``(lo, hi)`` hole-ratio ``buckets``: ``<lo₀%``, one per
    bucket (``"1-10%"``), ``>=hi_last%``, and ``other`` (a ratio in a gap between buckets)."""
    return [
        f"<{_percent(buckets[0][0])}%",
        *(f"{_percent(lo)}-{_percent(hi)}%" for lo, hi in buckets),
        f">={_percent(buckets[-1][1])}%",
        "other",
    ]


def assign_bucket(ratio: float, buckets) -> str:
    """The report row of a pair whose true hole covers ``ratio`` of the image: the bucket with
    ``lo <= ratio < hi``, else below the first / above the last / ``other``."""
    labels = bucket_labels(buckets)
    for (lo, hi), label in zip(buckets, labels[1:]):
        if lo <= ratio < hi:
            return label
    if ratio < buckets[0][0]:
        return labels[0]
    if ratio >= buckets[-1][1]:
        return labels[-2]
    return labels[-1]


# -- the pairs, whatever the protocol -------------------------------------------------------------


class EvaluationPairs(Dataset, abc.ABC):
    """The evaluation inputs: pair ``n`` -> ``image`` ``(3, H, W)``, ``corrupted`` ``(3, H, W)``,
    true ``mask`` ``(1, H, W)`` (continuous, 1 = destroyed), its ``hole_ratio`` (``mask > 0.5``),
    and the ``pair`` / ``image_index`` it came from. The crop is the test split's deterministic
    one; a subclass draws the damage (and the donor image, another test image) from a generator
    seeded by the seed and the pair's identity, so the inputs depend on nothing else.

    ``sections``: the report rows in order, in sections (a rule is drawn between them), of which
    ``bucket_rows`` are the hole-ratio buckets; :meth:`groups` says which rows a pair counts in,
    :meth:`describe` what ``pairs.csv`` says of it.
    """

    sections: list[list[str]]
    bucket_rows: list[str]

    def __init__(self, images: ImageDataset, pairs: list[tuple], seed: int = 0, donor_fill: bool = True, settings=None):
        self.images, self.pairs, self.seed, self.donor_fill = images, pairs, seed, donor_fill
        self._settings = settings or {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _donor(self, index: int, rng: np.random.Generator) -> torch.Tensor | None:
        """Another test image, chosen as :class:`~data.datamodule.InpaintingSamples` does."""
        if not self.donor_fill or len(self.images) < 2:
            return None
        other = int(rng.integers(0, len(self.images) - 1))
        return self.images.get(other + (other >= index))

    def _sample(self, n: int, image_index: int, image, corrupted, mask) -> dict:
        return {
            "pair": n,
            "image_index": image_index,
            "image": image,
            "corrupted": corrupted,
            "mask": mask,
            "hole_ratio": hole_ratio(mask.numpy()),
        }

    @property
    def labels(self) -> list[str]:
        """Every report row, in order."""
        return [label for section in self.sections for label in section]

    @abc.abstractmethod
    def groups(self, n: int, ratio: float) -> tuple[str, ...]:
        """The report rows pair ``n``, whose true hole covers ``ratio``, counts in."""

    @abc.abstractmethod
    def describe(self, n: int) -> dict:
        """Where pair ``n`` came from, as ``pairs.csv`` columns."""

    def settings(self) -> dict:
        """The protocol's settings, for ``metrics.json``."""
        return self._settings


# -- protocol=buckets -----------------------------------------------------------------------------


def plan_pairs(
    n_images: int, masks: BucketedTestMasks, masks_per_bucket: int, limit: int | None = None
) -> list[tuple[int, int]]:
    """``(image index, mask index)`` of every test pair: image-major, then bucket, then slot.
    Image ``i`` gets the masks ``i · masks_per_bucket + j`` (j < masks_per_bucket, cyclically) of
    each bucket's entries, so images see different masks of a large set; ``limit`` keeps the first."""
    per_bucket: dict[int, list[int]] = {}
    for k in range(len(masks)):
        per_bucket.setdefault(masks.key(k)[0], []).append(k)
    pairs = [
        (i, entries[(i * masks_per_bucket + j) % len(entries)])
        for i in range(n_images)
        for entries in per_bucket.values()
        for j in range(masks_per_bucket)
    ]
    return pairs[:limit] if limit else pairs


class BucketPairs(EvaluationPairs):
    """``protocol=buckets``: pair ``(image, mask)`` of the bucketed test-mask set, corrupted by
    ``corruptor`` with ``numpy.random.default_rng([seed, image, mask])`` (the donor first, as in
    training); the true mask is what the corruptor returned. Rows: the hole-ratio buckets of the
    mask set, then ``all``."""

    def __init__(self, images, masks: BucketedTestMasks, corruptor, pairs, seed=0, donor_fill=True, settings=None):
        super().__init__(images, pairs, seed, donor_fill, settings)
        self.masks, self.corruptor = masks, corruptor
        self.bucket_rows = bucket_labels(masks.buckets)
        self.sections = [self.bucket_rows, [OVERALL]]

    def __getitem__(self, n: int) -> dict:
        image_index, mask_index = self.pairs[n]
        rng = np.random.default_rng([self.seed, image_index, mask_index])
        image = self.images.get(image_index)
        donor = self._donor(image_index, rng)
        hole = resize_nearest(self.masks[mask_index][0], *image.shape[-2:])
        corrupted, mask = self.corruptor(image, torch.from_numpy(np.ascontiguousarray(hole))[None], rng, donor)
        return self._sample(n, image_index, image, corrupted, mask)

    def groups(self, n: int, ratio: float) -> tuple[str, ...]:
        return assign_bucket(ratio, self.masks.buckets), OVERALL

    def describe(self, n: int) -> dict:
        image_index, mask_index = self.pairs[n]
        return {
            "image": image_index,
            "image_name": self.images.describe(image_index),
            "mask_file": self.masks.filename(mask_index),
        }


# -- protocol=damage ------------------------------------------------------------------------------


def plan_damage_pairs(
    n_images: int, kinds, per_kind: int, limit: int | None = None
) -> list[tuple[int, str | None, int]]:
    """``(image index, damage kind, draw)`` of every test pair: image-major, then kind, then draw,
    then the image clean (kind None); ``limit`` keeps the first."""
    pairs = [
        pair
        for i in range(n_images)
        for pair in [*((i, kind, j) for kind in kinds for j in range(per_kind)), (i, None, 0)]
    ]
    return pairs[:limit] if limit else pairs


class DamagePairs(EvaluationPairs):
    """``protocol=damage``: pair ``(image, kind, draw)`` is the image damaged by
    :class:`data.damage.Damage` ``(kind)`` with ``numpy.random.default_rng([seed, image, k, draw])``
    (``k`` the kind's index in :data:`~data.damage.DAMAGE_KINDS`, so choosing fewer kinds does not
    change the others' draws; the donor is drawn first); kind None is the clean image (mask 0,
    corrupted = image). Rows: each kind, each hole-ratio bucket of the true hole
    (:data:`~pipeline.evaluation.mask_set.DEFAULT_BUCKETS`' labels), ``all damaged``, ``clean``."""

    def __init__(self, images, kinds, pairs, seed=0, donor_fill=True, settings=None, buckets=DEFAULT_BUCKETS):
        super().__init__(images, pairs, seed, donor_fill, settings)
        self.kinds, self.buckets = tuple(kinds), buckets
        self.damages = {kind: Damage(kind, donor_transform=False) for kind in self.kinds}  # real photos pasted
        self.bucket_rows = bucket_labels(buckets)
        self.sections = [list(self.kinds), self.bucket_rows, [ALL_DAMAGED], [CLEAN]]

    def __getitem__(self, n: int) -> dict:
        image_index, kind, draw = self.pairs[n]
        image = self.images.get(image_index)
        if kind is None:
            return self._sample(n, image_index, image, image.clone(), torch.zeros_like(image[:1]))
        rng = np.random.default_rng([self.seed, image_index, DAMAGE_KINDS.index(kind), draw])
        donor = self._donor(image_index, rng)
        corrupted, mask = self.damages[kind](image, rng, donor)
        return self._sample(n, image_index, image, corrupted, mask)

    def groups(self, n: int, ratio: float) -> tuple[str, ...]:
        kind = self.pairs[n][1]
        return (CLEAN,) if kind is None else (kind, assign_bucket(ratio, self.buckets), ALL_DAMAGED)

    def describe(self, n: int) -> dict:
        image_index, kind, draw = self.pairs[n]
        return {
            "image": image_index,
            "image_name": self.images.describe(image_index),
            "kind": kind or CLEAN,
            "draw": draw,
        }


# -- from the config ------------------------------------------------------------------------------


def load_mask_set(cfg: DictConfig) -> BucketedTestMasks:
    """``mask_set=DIR`` (a saved set), else the set generated at ``data.size`` from ``seed``."""
    if not cfg.mask_set:
        return BucketedTestMasks(size=cfg.data.size, per_bucket=cfg.mask_set_size, seed=cfg.seed)
    masks = BucketedTestMasks.load(Path(cfg.mask_set).expanduser())
    if masks.size != (cfg.data.size, cfg.data.size):
        log.warning(
            "the mask set is %dx%d, the images %dx%d: masks are resized (nearest); buckets follow the true masks",
            *masks.size,
            cfg.data.size,
            cfg.data.size,
        )
    return masks


def describe_mask_set(cfg: DictConfig, masks: BucketedTestMasks) -> dict:
    """The mask set for ``metrics.json``: its folder (None when generated) and its parameters."""
    return {"path": str(Path(cfg.mask_set).expanduser().resolve()) if cfg.mask_set else None, **masks.params()}


def damage_kinds(cfg: DictConfig) -> list[str]:
    """The damage kinds of ``damage_kinds=`` (null: all of :data:`~data.damage.DAMAGE_KINDS`)."""
    return list(DAMAGE_KINDS) if cfg.damage_kinds is None else [str(k) for k in cfg.damage_kinds]


def test_images(cfg: DictConfig):
    """The data config's test split (the images only: the damage comes from the protocol) and
    its data module."""
    data_cfg = cfg.copy()
    with open_dict(data_cfg):
        data_cfg.masks = None  # the holes come from the protocol, not a training generator
    try:
        data = build_datamodule(data_cfg)
        images = data.dataset(split="test", size=data.size)
    except ValueError as err:  # DatasetError, or a data.size the data module refuses
        raise ConfigError(str(err)) from None
    if len(images) == 0:
        raise ConfigError(f"{images.name}: the test split is empty")
    return images, data


def build_test_pairs(cfg: DictConfig) -> EvaluationPairs:
    """The test pairs of ``cfg``: its data config's test split, damaged as ``protocol=`` says."""
    images, data = test_images(cfg)
    if cfg.protocol == "damage":
        kinds = damage_kinds(cfg)
        pairs = plan_damage_pairs(len(images), kinds, cfg.per_kind, cfg.limit)
        settings = {"damage_kinds": kinds, "per_kind": cfg.per_kind}
        return DamagePairs(images, kinds, pairs, cfg.seed, data.donor_fill, settings)
    masks = load_mask_set(cfg)
    settings = {
        "mask_set": describe_mask_set(cfg, masks),
        "masks_per_bucket": cfg.masks_per_bucket,
        "corruption": OmegaConf.to_container(cfg.corruption, resolve=True),
    }
    pairs = plan_pairs(len(images), masks, cfg.masks_per_bucket, cfg.limit)
    return BucketPairs(images, masks, data.corruption, pairs, cfg.seed, data.donor_fill, settings)
