"""The test pairs: every test image × masks of the bucketed test-mask set, corrupted per pair, and
the hole-ratio buckets the report is grouped by.

A pair's inputs are a pure function of ``(seed, image, mask)``, so every method sees bit-identical
inputs (see :class:`EvaluationPairs`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, open_dict
from torch.utils.data import Dataset

from common.errors import ConfigError
from data.datamodule import build_datamodule
from data.datasets import ImageDataset
from data.masks import hole_ratio, resize_nearest
from data.test_masks import BucketedTestMasks

log = logging.getLogger(__name__)


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


# -- test pairs -----------------------------------------------------------------------------------


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


class EvaluationPairs(Dataset):
    """The evaluation inputs: pair ``n`` -> ``image`` ``(3, H, W)``, ``corrupted`` ``(3, H, W)``,
    true ``mask`` ``(1, H, W)`` (what the corruptor returned), its ``hole_ratio``, and the
    ``pair`` / ``image_index`` / ``mask_index`` it came from. A pure function of ``(seed, image,
    mask)``: the crop is the deterministic one, the corruption (and donor image, as in training)
    is drawn from ``numpy.random.default_rng([seed, image, mask])``."""

    def __init__(
        self,
        images: ImageDataset,
        masks: BucketedTestMasks,
        corruptor,
        pairs: list[tuple[int, int]],
        seed: int = 0,
        donor_fill: bool = True,
    ):
        self.images, self.masks, self.corruptor, self.pairs = images, masks, corruptor, pairs
        self.seed, self.donor_fill = seed, donor_fill

    def __len__(self) -> int:
        return len(self.pairs)

    def _donor(self, index: int, rng: np.random.Generator) -> torch.Tensor | None:
        """Another test image for the ``image`` fill, chosen as :class:`InpaintingSamples` does."""
        if not self.donor_fill or len(self.images) < 2:
            return None
        other = int(rng.integers(0, len(self.images) - 1))
        return self.images.get(other + (other >= index))

    def __getitem__(self, n: int) -> dict:
        image_index, mask_index = self.pairs[n]
        rng = np.random.default_rng([self.seed, image_index, mask_index])
        image = self.images.get(image_index)
        donor = self._donor(image_index, rng)
        hole = resize_nearest(self.masks[mask_index][0], *image.shape[-2:])
        corrupted, mask = self.corruptor(image, torch.from_numpy(np.ascontiguousarray(hole))[None], rng, donor)
        return {
            "pair": n,
            "image_index": image_index,
            "mask_index": mask_index,
            "image": image,
            "corrupted": corrupted,
            "mask": mask,
            "hole_ratio": hole_ratio(mask.numpy()),
        }


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


def build_test_pairs(cfg: DictConfig) -> EvaluationPairs:
    """The test pairs of ``cfg``: its data config's test split × the mask set, ``cfg.corruption``."""
    data_cfg = cfg.copy()
    with open_dict(data_cfg):
        data_cfg.masks = None  # the masks come from the test-mask set, not a training generator
    try:
        samples = build_datamodule(data_cfg).split("test")
    except ValueError as err:  # DatasetError, or a data.size the data module refuses
        raise ConfigError(str(err)) from None
    masks = load_mask_set(cfg)
    pairs = plan_pairs(len(samples.images), masks, cfg.masks_per_bucket, cfg.limit)
    return EvaluationPairs(
        samples.images, masks, samples.corruptor, pairs, seed=cfg.seed, donor_fill=samples.donor_fill
    )
