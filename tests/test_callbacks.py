"""last.ckpt keeps up with training whatever the monitored metric does (a killed run loses at most
one validation interval)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from common.callbacks import ResumableCheckpoint


class FlatMetric(BoringModel):
    """Validation logs the same score every time: after the first, never a new best."""

    def validation_step(self, batch, batch_idx):
        self.log("val/score", 1.0)
        return super().validation_step(batch, batch_idx)


class LastStepRecorder(L.Callback):
    """At every epoch's end (before the checkpoint callback's turn): the global step stored in
    last.ckpt so far, and the trainer's."""

    def __init__(self, path):
        self.path, self.steps = path, []

    def on_train_epoch_end(self, trainer, pl_module):
        saved = torch.load(self.path, weights_only=False)["global_step"] if self.path.is_file() else None
        self.steps.append((saved, trainer.global_step))


def test_last_checkpoint_follows_every_validation_even_without_a_new_best(tmp_path):
    checkpoint = ResumableCheckpoint(dirpath=tmp_path, monitor="val/score", mode="max", save_top_k=1, save_last=True)
    recorder = LastStepRecorder(tmp_path / "last.ckpt")
    trainer = L.Trainer(
        max_epochs=4,
        accelerator="cpu",  # one process, whatever GPUs the machine has
        devices=1,
        limit_train_batches=3,
        limit_val_batches=1,
        callbacks=[recorder, checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(FlatMetric())
    # each epoch's last.ckpt is the previous epoch's end; Lightning's own stays at step 3
    assert recorder.steps == [(None, 3), (3, 6), (6, 9), (9, 12)]
    assert torch.load(tmp_path / "last.ckpt", weights_only=False)["global_step"] == 12
    assert torch.load(checkpoint.best_model_path, weights_only=False)["global_step"] == 3  # the only best
