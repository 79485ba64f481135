"""Callbacks the training runs share."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


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
