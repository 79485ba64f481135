"""Training samples per the data contract, and the LightningDataModule that serves them.

A sample is a dict: ``image`` (3, H, W) ground truth, ``corrupted`` (3, H, W), ``mask``
(1, H, W) the true continuous m (1 = destroyed), and when edges are asked for ``edge`` (1, H, W),
Canny of the ground truth, and ``corrupted_edge`` (1, H, W), Canny of the corrupted image with the
same sigma (the EPN's known-region edges before masking). Each sample draws its own mask; a
``clean_share`` of the samples carries no damage at all (``corrupted`` = ``image``, ``mask`` = 0),
so the MPN learns that a photo may be intact and is validated on intact photos too.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
from collections.abc import Callable
from typing import Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.config import Annotated, Count, Field, NonNegative, NonNegativeInt, Share, checked
from common.ops import canny, image_edges, to_gray
from data.image_dataset import SPLITS, DatasetError, ImageDataset
from data.io import ImageReadError

log = logging.getLogger(__name__)

MaskGenerator = Callable[[int, int, np.random.Generator], np.ndarray]


class InpaintingSamples(Dataset):
    """Ground-truth images + a mask generator + a corruptor -> contract samples.

    ``train=True`` draws fresh randomness from torch's RNG (seeded per worker by the
    DataLoader and by ``seed_everything``) mixed with ``rank``, the process's rank in a distributed
    run (every rank starts from the same seed, and its damage must not repeat the others');
    otherwise sample ``i`` is a pure function of ``(seed, i)``, so validation and test see
    identical inputs every epoch, every run and on any number of processes.
    A file that cannot be read is reported once, counted in ``skipped``, and replaced by the
    next readable one; ``max_skips`` unreadable files in a row stop with a clear error.
    ``clean_share``: the probability that a sample is left undamaged (drawn from the sample's own
    generator, so the held-out splits have a fixed set of clean samples).
    """

    def __init__(
        self,
        images: ImageDataset,
        masks: MaskGenerator,
        corruptor: Callable,
        train: bool,
        seed: int = 0,
        edges: bool = False,
        edge_sigma: float = 2.0,
        donor_fill: bool = True,
        clean_share: float = 0.0,
        damage: Callable | None = None,
        max_skips: int = 50,
    ):
        if len(images) == 0:
            raise DatasetError(f"{images.name}: the dataset is empty")
        self.images, self.masks, self.corruptor = images, masks, corruptor
        self.train, self.seed, self.edges, self.edge_sigma = train, seed, edges, edge_sigma
        if not 0.0 <= clean_share < 1.0:
            raise DatasetError(f"clean_share must be in [0, 1), got {clean_share}")
        if damage is None and (masks is None or corruptor is None):
            raise DatasetError("give a damage model, or a mask generator and a corruptor")
        self.donor_fill, self.clean_share, self.max_skips = donor_fill, clean_share, max_skips
        self.damage, self.rank = damage, 0
        self.skipped = multiprocessing.get_context("spawn").Value("i", 0)
        self._reported: set[str] = set()

    def __len__(self) -> int:
        return len(self.images)

    def _rng(self, index: int) -> np.random.Generator:
        if self.train:
            return np.random.default_rng([int(torch.randint(0, 2**62, (1,)).item()), self.rank])
        return np.random.default_rng([self.seed, index])

    def _read(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        for attempt in range(self.max_skips):
            i = (index + attempt) % len(self.images)
            try:
                return self.images.get(i, rng if self.train else None)
            except ImageReadError as err:
                name = self.images.describe(i)
                if name not in self._reported:
                    self._reported.add(name)
                    with self.skipped.get_lock():
                        self.skipped.value += 1
                    log.warning("skipping unreadable image: %s", err)
        raise DatasetError(
            f"{self.images.name}: {self.max_skips} unreadable images in a row from index {index} "
            f"(last: {self.images.describe(index + self.max_skips - 1)}); check the data folder"
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng(index)
        clean = rng.random() < self.clean_share
        image = self._read(index, rng)
        if clean:
            corrupted, mask = image.clone(), torch.zeros_like(image[:1])
        else:
            corrupted, mask = self._damage(index, image, rng)
        sample = {"image": image, "corrupted": corrupted, "mask": mask}
        if self.edges:
            sigma = self.edge_sigma if self.edge_sigma > 0 else float(rng.uniform(1.0, 4.0))
            sample["edge"] = image_edges(image, sigma)
            sample["corrupted_edge"] = image_edges(corrupted, sigma)
        return sample

    def _damage(self, index: int, image: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(corrupted, mask)``: the damage model's, or a drawn hole corrupted with a fill; both may
        paste a donor photo."""
        donor = None
        if self.donor_fill and len(self.images) > 1:
            other = int(rng.integers(0, len(self.images) - 1))
            donor = self._read(other + (other >= index), rng)
        if self.damage is not None:
            return self.damage(image, rng, donor)
        h, w = image.shape[-2:]
        hole = torch.from_numpy(np.ascontiguousarray(self.masks(h, w, rng), dtype=np.float32))[None]
        return self.corruptor(image, hole, rng, donor)


@checked
class InpaintingDataModule(L.LightningDataModule):
    """Train / val / test loaders of :class:`InpaintingSamples`.

    ``dataset`` is a factory ``f(split=..., size=...) -> ImageDataset`` (a Hydra partial);
    ``damage`` (:class:`data.damage.DamageMix`: the named kinds users meet, the family evaluation
    scores) draws each sample's damage; without it, ``masks`` and ``corruption`` (a mask generator
    and a corruptor, e.g. the denoising or the classic masked set-ups) do. ``edges`` adds the
    ground-truth Canny (EdgeConnect's sigma 2; 0 draws sigma in [1, 4] per sample).
    ``clean_share``: share of undamaged samples in every split (the stage config sets it: the MPN
    and the joint run learn and are selected on clean photos too; the EPN and IPN need holes).

    ``num_workers``: loader processes per training process; None takes the CPUs this process may
    use, shared by the node's training processes, one left to each of them, at most 8
    (:func:`default_workers`). Pinned memory is on when CUDA is. ``edge_device``: where the
    batches' Canny edges are computed: ``worker`` (OpenCV in the loader workers) or
    ``accelerator`` (kornia on the batch's device after transfer, the Canny GPU inference uses;
    frees the workers of the two Canny passes per sample). In a distributed run each rank
    validates its own share of the held-out split, no sample repeated (the means are then taken
    over all of them, :class:`common.metrics.EpochMeans`).
    """

    def __init__(
        self,
        dataset: Callable[..., ImageDataset],
        masks: MaskGenerator | None,
        corruption: Callable | None,
        damage: Callable | None = None,
        size: Annotated[int, Field(ge=16, multiple_of=8)] = 256,  # the networks downsample by 8
        batch_size: Count = 8,
        num_workers: NonNegativeInt | None = None,
        edges: bool = False,
        edge_sigma: NonNegative = 2.0,
        donor_fill: bool = True,
        clean_share: Share = 0.0,
        seed: int = 0,
        pin_memory: bool | None = None,
        edge_device: Literal["worker", "accelerator"] = "worker",
    ):
        super().__init__()
        self.dataset, self.masks, self.corruption, self.damage = dataset, masks, corruption, damage
        self.size, self.batch_size, self.num_workers = size, batch_size, num_workers
        self.edges, self.edge_sigma, self.donor_fill, self.seed = edges, edge_sigma, donor_fill, seed
        self.clean_share, self.edge_device = clean_share, edge_device
        if edges and edge_device == "accelerator" and edge_sigma == 0:
            raise DatasetError("edge_device=accelerator computes one Canny per batch: it needs a fixed edge_sigma > 0")
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.splits: dict[str, InpaintingSamples] = {}

    def split(self, name: str) -> InpaintingSamples:
        """The samples of split ``name`` ("train", "val", "test"), built on first use."""
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; expected one of {SPLITS}")
        if name not in self.splits:
            images = self.dataset(split=name, size=self.size)
            self.splits[name] = InpaintingSamples(
                images,
                self.masks,
                self.corruption,
                train=name == "train",
                seed=self.seed + SPLITS.index(name),
                edges=self.edges and self.edge_device == "worker",
                edge_sigma=self.edge_sigma,
                donor_fill=self.donor_fill,
                clean_share=self.clean_share,
                damage=self.damage,
            )
        return self.splits[name]

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for name in wanted.get(stage, SPLITS):
            self.split(name).rank = self._rank()

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    @property
    def workers(self) -> int:
        """Loader workers per training process (``num_workers``, or :func:`default_workers`)."""
        if self.num_workers is not None:
            return self.num_workers
        return default_workers(self.trainer.num_devices if self.trainer is not None else 1)

    @property
    def skipped_files(self) -> int:
        """Unreadable files skipped so far, over all splits and workers."""
        return sum(s.skipped.value for s in self.splits.values())

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        split, sampler, workers = self.split(name), None, self.workers
        if not shuffle and self._world_size() > 1:
            # Lightning's sampler pads the ranks' shares with repeated samples; this one does not
            # (the shares may differ by one; the epoch means are taken over all of them).
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

            if len(split) < self._world_size():
                raise DatasetError(
                    f"the {name} split has {len(split)} image(s) for {self._world_size()} processes: every "
                    "process needs at least one"
                )
            sampler = UnrepeatedDistributedSampler(split, self._world_size(), self._rank(), shuffle=False)
        return DataLoader(
            split,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
            worker_init_fn=functools.partial(init_worker, rank=self._rank()) if workers > 0 else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """With ``edge_device=accelerator``, the batch's Canny edges, computed on its device."""
        if self.edges and self.edge_device == "accelerator" and "edge" not in batch:
            batch["edge"] = canny(to_gray(batch["image"]), self.edge_sigma)
            batch["corrupted_edge"] = canny(to_gray(batch["corrupted"]), self.edge_sigma)
        return batch

    def teardown(self, stage: str | None = None) -> None:
        if self.skipped_files:
            log.warning(
                "%d unreadable image(s) were skipped; see the warnings above for their names", self.skipped_files
            )


def default_workers(processes_per_node: int = 1) -> int:
    """Loader workers for each of ``processes_per_node`` training processes: the CPUs this process
    may use, shared among them, one left to each training process, at most 8 (beyond that a
    256² sample pipeline outruns any one GPU; ``pipeline.benchmark`` measures both)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cpus // max(1, processes_per_node) - 1))


def init_worker(worker_id: int, rank: int = 0) -> None:
    """Start of a loader worker: OpenCV single-threaded (the workers are the parallelism; its own
    thread pool in each would oversubscribe the CPUs), then Lightning's per-worker seeding when
    ``seed_everything(workers=True)`` asked for it (a ``worker_init_fn`` replaces Lightning's)."""
    import cv2

    cv2.setNumThreads(0)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id, rank=rank)


def build_datamodule(cfg) -> InpaintingDataModule:
    """The DataModule from a composed config with ``data``, ``damage`` (or ``masks`` and
    ``corruption``) and ``seed``."""
    from common.config import instantiate

    def part(name):
        return instantiate(cfg[name], _convert_="all") if cfg.get(name) is not None else None

    damage = part("damage")
    masks, corruption = (None, None) if damage is not None else (part("masks"), part("corruption"))
    return instantiate(
        cfg.data, masks=masks, corruption=corruption, damage=damage, seed=cfg.get("seed", 0), _convert_="all"
    )
