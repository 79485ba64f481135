"""A test instrument for distributed runs, added to a real ``pipeline.train`` command as
``+callbacks.probe._target_=tests.ddp_probe.RankProbe +callbacks.probe.folder=...``."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from safetensors.torch import save_file


class RankProbe(L.Callback):
    """Poisons the images of training batch ``poison_batch`` on rank ``poison_rank`` with NaN (a
    non-finite loss on one rank only), and writes each rank's weights and buffers at the end of
    training to ``<folder>/rank<r>.safetensors``."""

    def __init__(self, folder: str, poison_rank: int = 1, poison_batch: int = 1):
        self.folder, self.poison_rank, self.poison_batch = Path(folder), poison_rank, poison_batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == self.poison_rank and batch_idx == self.poison_batch:
            for key in ("image", "corrupted"):  # what each stage learns from (the DCGAN: the images alone)
                batch[key] = batch[key] * float("nan")

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in pl_module.state_dict().items()}
        save_file(state, self.folder / f"rank{trainer.global_rank}.safetensors")
