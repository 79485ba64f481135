"""Callbacks the training runs share."""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, Timer


class ResumableCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint whose ``last.ckpt`` is written at every validation, whatever the
    monitored metric did.

    Lightning writes ``last.ckpt`` only in a step where a best checkpoint was written, so a run
    killed after its metric stopped improving resumed from the last improvement, not the last
    validation (a killed smoke chain: ``last.ckpt`` at step 16, the log at step 162). Here a killed
    run loses at most one validation interval (``trainer.val_check_interval``).
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_regardless(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_regardless(trainer)

    def _save_last_regardless(self, trainer: L.Trainer) -> None:
        # Skipped when this step already saved (a new best, which wrote last.ckpt with it).
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class TimedSnapshots(L.Callback):
    """A weights-only checkpoint every ``every_minutes`` of training, ``<dirpath>/minute-<mmm>.ckpt``
    (``callbacks=curve``): the quality-against-time curve is read off them afterwards
    (``scripts/training_curve.py``). Lightning's own ``ModelCheckpoint(train_time_interval=...)``
    never fires under manual optimisation, which every stage uses. Time is the training time of the
    run, validation included; a resumed run goes on from the time its checkpoint had spent (read
    from the Trainer's ``Timer`` when ``max_time`` is set), so snapshot names stay true across a
    kill. ``dirpath`` None: the run's ``checkpoints/`` folder (set by ``pipeline.train``)."""

    def __init__(self, every_minutes: float = 20.0, dirpath: str | None = None):
        if every_minutes <= 0:
            raise ValueError(f"every_minutes must be positive, got {every_minutes}")
        self.every_minutes, self.dirpath = every_minutes, dirpath
        self._start: float | None = None
        self._timer: Timer | None = None
        self._taken: int | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._taken = time.monotonic(), None
        self._timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)

    def _minutes(self) -> float:
        seconds = self._timer.time_elapsed("train") if self._timer is not None else time.monotonic() - self._start
        return seconds / 60

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        minutes = self._minutes()
        if self._taken is None:  # a resumed run has already taken the snapshots before its offset
            self._taken = int(minutes // self.every_minutes)
        if minutes < (self._taken + 1) * self.every_minutes:
            return
        self._taken = int(minutes // self.every_minutes)
        folder = Path(self.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        trainer.save_checkpoint(
            folder / f"minute-{round(self._taken * self.every_minutes):03d}.ckpt", weights_only=True
        )


class ChannelsLast(L.Callback):
    """The module and the batches' 4-D tensors in channels-last memory format (NHWC, the layout
    cuDNN's tensor-core convolutions work in): ``trainer.channels_last=true``. The module is
    converted in ``setup``, before a DDP wrapper registers its parameters."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        to_channels_last(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        to_channels_last(batch)


def to_channels_last(batch: dict) -> None:
    """Convert ``batch``'s 4-D tensors to channels-last, in place (the step sees the same dict)."""
    for key, value in batch.items():
        if torch.is_tensor(value) and value.dim() == 4:
            batch[key] = value.contiguous(memory_format=torch.channels_last)


class TrainingSpeed(L.Callback):
    """Training throughput, peak memory and loss health of a run, written to
    ``<run>/speed.json`` at the end (``+callbacks.speed._target_=common.callbacks.TrainingSpeed``;
    ``scripts/gpu_check.sh`` uses it).

    Timed: the training steps after the first ``warmup_steps`` (kernel selection, allocator growth),
    validation excluded, the accelerator synchronised at both ends. ``samples_per_s`` counts every
    process's samples (batch × steps × world size). Peak memory: CUDA's
    ``max_memory_allocated`` (this process's device) or, on CPU, the process's peak RSS
    (``ru_maxrss``). ``finite``: every logged ``train/`` value was finite at the end and no step was
    skipped for a non-finite loss (``nonfinite_steps``).
    """

    def __init__(self, warmup_steps: int = 10):
        self.warmup_steps = warmup_steps
        self._batches = self._samples = 0
        self._start: float | None = None
        self._paused = 0.0
        self._validation_start: float | None = None

    def _sync(self, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)

    def on_fit_start(self, trainer, pl_module) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batches += 1
        if self._batches == self.warmup_steps:
            self._sync(pl_module)
            self._start = time.perf_counter()
        elif self._batches > self.warmup_steps:
            self._samples += len(batch["corrupted"])

    def on_validation_start(self, trainer, pl_module) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._sync(pl_module)
            self._validation_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validation_start is not None:
            self._sync(pl_module)
            self._paused += time.perf_counter() - self._validation_start
            self._validation_start = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync(pl_module)
        timed = self._batches - self.warmup_steps
        seconds = time.perf_counter() - self._start - self._paused if self._start is not None else None
        if pl_module.device.type == "cuda":
            peak, method = torch.cuda.max_memory_allocated(pl_module.device), "cuda max_memory_allocated"
        else:
            peak, method = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "peak RSS"
        logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        nonfinite = int(getattr(pl_module, "nonfinite_steps", 0))
        report = {
            "stage": getattr(pl_module, "stage_name", type(pl_module).__name__),
            "precision": str(trainer.precision),
            "device": torch.cuda.get_device_name(pl_module.device) if pl_module.device.type == "cuda" else "cpu",
            "world_size": trainer.world_size,
            "optimizer_steps": trainer.global_step,
            "batches": self._batches,
            "timed_batches": max(timed, 0),
            "seconds": seconds,
            "samples_per_s": self._samples * trainer.world_size / seconds if seconds and timed > 0 else None,
            "peak_memory_bytes": peak,
            "peak_memory_method": method,
            "nonfinite_steps": nonfinite,
            "last_logged": logged,
            "finite": nonfinite == 0 and all(math.isfinite(v) for v in logged.values()),
        }
        if trainer.is_global_zero:
            path = Path(trainer.default_root_dir) / "speed.json"
            path.write_text(json.dumps(report, indent=2) + "\n")
            pl_module.print(
                f"speed: {report['samples_per_s'] or 0:,.1f} samples/s over {report['timed_batches']} batches, "
                f"peak memory {peak / 2**20:,.0f} MiB, losses finite: {report['finite']} ({path})"
            )
