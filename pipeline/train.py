"""``python -m pipeline.train stage=<mpn|epn|ipn|joint|all> [data=...] [trainer=cpu|gpu|ddp|smoke] [logger=...]``

Trains one stage with Lightning; ``stage=all`` trains mpn → epn → ipn → joint in one run folder
and ends with the inference model (``model.safetensors``) and a blind-inpainting grid of the test
split; ``experiment=quickstart`` is that on the bundled sample set in under 30 CPU minutes. A run writes to ``runs/<stage>/<timestamp>/``: the resolved
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
from omegaconf import DictConfig, OmegaConf, open_dict

from common.checkpoint import CheckpointError, load_checkpoint, load_weights
from common.module import ConfigError, NonFiniteLossError
from data.datamodule import build_datamodule
from data.datasets import DatasetError
from data.io import ImageReadError
from data.masks import MaskSourceError
from pipeline.stages import load_stage

log = logging.getLogger("pipeline.train")

# Failures that are the user's input, not our bug: reported in one line, without a traceback.
USER_ERRORS = (CheckpointError, ConfigError, DatasetError, ImageReadError, MaskSourceError, NonFiniteLossError)


def warn_if_slow_precision(trainer_cfg: DictConfig) -> None:
    """bf16 on a CPU without oneDNN bf16 kernels falls back to slow convolutions (measured 33×
    slower for the EPN generator on a CPU without AVX-512), so say so before hours are lost."""
    cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    if (
        cpu
        and str(trainer_cfg.get("precision", "")).startswith("bf16")
        and not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    ):
        log.warning(
            "precision=%s on this CPU has no fast bf16 kernels (oneDNN bf16 unsupported): "
            "convolutions will be many times slower; use trainer.precision=32-true",
            trainer_cfg.precision,
        )


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


def build_joint(stage: DictConfig, resume_from: str | None = None) -> L.LightningModule:
    """The joint module from the three stage checkpoints, or, when resuming, rebuilt from the
    stage configurations stored in the joint checkpoint (Lightning then restores the weights)."""
    from pipeline.joint import JointModule

    kwargs = OmegaConf.to_container(stage.module, resolve=True)
    kwargs.pop("_target_"), kwargs.pop("_convert_", None)
    if resume_from:
        return JointModule(stages=load_checkpoint(resume_from, "joint")["hyper_parameters"]["stages"], **kwargs)
    paths = {name: stage.get(f"{name}_checkpoint") for name in ("mpn", "epn", "ipn")}
    return JointModule.from_stage_checkpoints(paths, **kwargs)


def build_module(stage: DictConfig, resume_from: str | None = None) -> L.LightningModule:
    """The stage's LightningModule. ``mask_source=mpn`` / ``edge_source=epn`` attach frozen
    earlier stages from their checkpoints, so a stage learns on the inputs it will really see."""
    if stage.name == "joint":
        return build_joint(stage, resume_from)
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
    module = build_module(cfg.stage, cfg.ckpt_path)
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
        trainer.save_checkpoint(Path(checkpoint.dirpath) / "last.ckpt", weights_only=False)  # resumable
    log.info("run folder: %s", run_dir)
    log.info(
        "best checkpoint (%s = %s): %s", cfg.stage.monitor, checkpoint.best_model_score, checkpoint.best_model_path
    )
    return trainer


def best_checkpoint(trainer: L.Trainer) -> Path:
    """The best checkpoint of a finished run, or its ``last.ckpt`` when no validation ran."""
    callback = trainer.checkpoint_callback
    return Path(callback.best_model_path or Path(callback.dirpath) / "last.ckpt")


def step_config(cfg: DictConfig, step: str, checkpoints: dict[str, Path], step_dir: Path) -> DictConfig:
    """The config of one step of ``stage=all``: that stage's config, the trainer with the step's
    overrides, logs in the step's folder, and (for joint) the earlier steps' checkpoints."""
    sub = cfg.copy()
    with open_dict(sub):
        if sub.get("logger") and "save_dir" in sub.logger:
            sub.logger.save_dir = str(step_dir)
        sub.stage = cfg.stage[step].copy()
        trainer = cfg.trainer.copy()
        OmegaConf.set_struct(trainer, False)  # a step may add Trainer arguments (max_time, ...)
        sub.trainer = OmegaConf.merge(trainer, cfg.stage.trainer.get(step) or {})
        if step == "joint":
            for name in ("mpn", "epn", "ipn"):
                sub.stage[f"{name}_checkpoint"] = str(checkpoints[name])
    return sub


def inpainter_from_steps(checkpoints: dict[str, Path]):
    """The inference model of a ``stage=all`` run: the joint checkpoint, or the three stages."""
    from pipeline.inference import BlindInpainter

    if "joint" in checkpoints:
        return BlindInpainter.from_pretrained(checkpoints["joint"])
    return BlindInpainter.from_stage_modules({n: load_stage(n, checkpoints[n]) for n in ("mpn", "epn", "ipn")})


@torch.no_grad()
def test_split_grid(cfg: DictConfig, inpainter, path: Path, rows: int) -> dict[str, float]:
    """Blind inpainting of ``rows`` corrupted test-split samples (held-out photos, seeded
    corruption) as a grid *corrupted / true mask / predicted mask / edges / output / truth*;
    returns the PSNR / SSIM of the corrupted input and of the output on them."""
    from common.images import labelled_grid, save_grid
    from common.metrics import psnr, ssim

    data_cfg = cfg.copy()
    with open_dict(data_cfg):
        data_cfg.data.edges, data_cfg.data.batch_size, data_cfg.data.num_workers = False, rows, 0
    datamodule = build_datamodule(data_cfg)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    result = inpainter.inpaint(batch["corrupted"])
    save_grid(
        labelled_grid(
            {
                "corrupted": batch["corrupted"],
                "true mask": batch["mask"],
                "predicted mask": result["mask"],
                "edges": result["edges"],
                "output": result["output"],
                "truth": batch["image"],
            },
            max_rows=rows,
        ),
        path,
    )
    image = batch["image"]
    return {
        "psnr_corrupted": psnr(batch["corrupted"], image).item(),
        "psnr_output": psnr(result["output"], image).item(),
        "ssim_corrupted": ssim(batch["corrupted"], image).item(),
        "ssim_output": ssim(result["output"], image).item(),
    }


def train_all(cfg: DictConfig, run_dir: Path) -> dict[str, Path]:
    """``stage=all``: each step of ``stage.steps`` in ``<run>/<step>/``, then ``model.safetensors``
    and ``blind_inpainting.png`` in ``<run>``. A step with a ``DONE`` file is skipped and one with
    a ``last.ckpt`` resumes, so re-running in the same folder continues an interrupted run."""
    from pipeline.inference import write_safetensors

    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    checkpoints: dict[str, Path] = {}
    for step in cfg.stage.steps:
        step_dir = run_dir / step
        done = step_dir / "DONE"
        if done.is_file():
            checkpoints[step] = Path(done.read_text().strip())
            log.info("step %s already finished: %s", step, checkpoints[step])
            continue
        sub = step_config(cfg, step, checkpoints, step_dir)
        last = step_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            sub.ckpt_path = str(last)
            log.info("step %s resumes from %s", step, last)
        log.info("step %s of %s", step, list(cfg.stage.steps))
        trainer = train(sub, step_dir)
        if trainer.interrupted:
            sys.exit(f"interrupted in step {step}; continue with the same command and hydra.run.dir={run_dir}")
        checkpoints[step] = best_checkpoint(trainer)
        done.write_text(f"{checkpoints[step]}\n")

    inpainter = inpainter_from_steps(checkpoints)
    model_path = write_safetensors(inpainter, run_dir / "model.safetensors")
    log.info("inference model: %s", model_path)
    if cfg.stage.demo_rows:
        scores = test_split_grid(cfg, inpainter, run_dir / "blind_inpainting.png", cfg.stage.demo_rows)
        log.info(
            "blind inpainting of the test split: %s -> %s",
            run_dir / "blind_inpainting.png",
            ", ".join(f"{k} {v:.3f}" for k, v in scores.items()),
        )
    return checkpoints


@hydra.main(config_path="pkg://conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    if cfg.get("stage") is None:
        sys.exit("error: choose a stage, e.g. `python -m pipeline.train stage=mpn` (see conf/stage/)")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.stage.name == "all":
            train_all(cfg, run_dir)
        else:
            train(cfg, run_dir)
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
