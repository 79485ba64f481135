"""``python -m pipeline.train stage=<mpn|...> [data=...] [trainer=cpu|gpu|ddp|smoke] [logger=...]``

Trains one stage with Lightning. A run writes to ``runs/<stage>/<timestamp>/``: the resolved
``config.yaml``, ``checkpoints/`` (``last.ckpt`` and the best by the stage's monitored metric),
logger output and ``samples/`` grids. ``ckpt_path=.../last.ckpt`` resumes a killed run
(optimizer and step state); ``init_from=...ckpt`` loads weights only (fine-tuning).
``last.ckpt`` is written at every validation and when training stops on an exception or Ctrl-C;
``trainer.val_check_interval=1000`` validates (and so checkpoints) every 1000 steps of long epochs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from common.checkpoint import CheckpointError, load_checkpoint, load_weights
from common.module import NonFiniteLossError
from data.datamodule import build_datamodule
from data.datasets import DatasetError
from data.io import ImageReadError
from data.masks import MaskSourceError
from pipeline.stages import load_stage

log = logging.getLogger("pipeline.train")

# Failures that are the user's input, not our bug: reported in one line, without a traceback.
USER_ERRORS = (CheckpointError, DatasetError, ImageReadError, MaskSourceError, NonFiniteLossError)


def warn_if_slow_precision(trainer_cfg: DictConfig) -> None:
    """bf16 on a CPU without oneDNN bf16 kernels falls back to slow convolutions (measured 33×
    slower for the EPN generator on a CPU without AVX-512), so say so before hours are lost."""
    cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    if cpu and str(trainer_cfg.get("precision", "")).startswith("bf16") and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        log.warning("precision=%s on this CPU has no fast bf16 kernels (oneDNN bf16 unsupported): "
                    "convolutions will be many times slower; use trainer.precision=32-true", trainer_cfg.precision)


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """The Lightning Trainer of a run: checkpoints, loggers and progress bar wired to ``run_dir``."""
    stage = cfg.stage
    callbacks = [
        ModelCheckpoint(
            dirpath=run_dir / "checkpoints",
            filename="best-{epoch:03d}-{step:07d}",
            monitor=stage.monitor,
            mode=stage.monitor_mode,
            save_top_k=1,
            save_last=True,  # at every validation: trainer.val_check_interval sets how often
            save_on_exception=True,  # Ctrl-C or a crash leaves a checkpoint to resume from
            auto_insert_metric_name=False,
        )
    ]
    loggers = [instantiate(cfg.logger)] if cfg.get("logger") else []
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if cfg.trainer.get("enable_progress_bar", True):
        callbacks.append(RichProgressBar())
    warn_if_slow_precision(cfg.trainer)
    return L.Trainer(**cfg.trainer, default_root_dir=str(run_dir), logger=loggers or False, callbacks=callbacks)


def _frozen_stage(stage: DictConfig, role: str, name: str):
    """The frozen ``name`` network for ``<role>_source=<name>``, from ``stage.<name>_checkpoint``."""
    source = stage.get(f"{role}_source", "truth")
    if source == "truth":
        return None
    if source != name:
        raise CheckpointError(f"stage.{role}_source must be 'truth' or '{name}', got {source!r}")
    if not stage.get(f"{name}_checkpoint"):
        raise CheckpointError(f"stage.{role}_source={name} needs stage.{name}_checkpoint=path/to/{name}.ckpt")
    return load_stage(name, stage[f"{name}_checkpoint"])


def build_module(stage: DictConfig) -> L.LightningModule:
    """The stage's LightningModule. ``mask_source=mpn`` / ``edge_source=epn`` attach frozen
    earlier stages from their checkpoints, so a stage learns on the inputs it will really see."""
    extra = {}
    if "mask_source" in stage:
        extra["mask_predictor"] = _frozen_stage(stage, "mask", "mpn")
    if "edge_source" in stage:
        extra["edge_predictor"] = _frozen_stage(stage, "edge", "epn")
    return instantiate(stage.module, **extra)


def train(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """Train ``cfg.stage`` and return the finished Trainer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    L.seed_everything(cfg.seed, workers=True)

    stage_name = cfg.stage.name
    if cfg.ckpt_path:
        load_checkpoint(cfg.ckpt_path, stage_name)  # clear errors before Lightning touches it
    module = build_module(cfg.stage)
    if getattr(module, "needs_edges", False):
        cfg.data.edges = True
    datamodule = build_datamodule(cfg)
    if cfg.init_from:
        load_weights(module, cfg.init_from, stage_name)
        log.info("initialised %s weights from %s", stage_name, cfg.init_from)

    trainer = build_trainer(cfg, run_dir)
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path or None, weights_only=True)
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and not trainer.interrupted:
        # Lightning skips this write when a validation already saved a last.ckpt; the steps
        # after that validation must not be lost.
        trainer.save_checkpoint(Path(checkpoint.dirpath) / "last.ckpt")
    log.info("run folder: %s", run_dir)
    log.info("best checkpoint (%s = %s): %s", cfg.stage.monitor, checkpoint.best_model_score, checkpoint.best_model_path)
    return trainer


@hydra.main(config_path="pkg://conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.get("stage") is None:
        sys.exit("error: choose a stage, e.g. `python -m pipeline.train stage=mpn` (see conf/stage/)")
    try:
        train(cfg, Path(HydraConfig.get().runtime.output_dir))
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
