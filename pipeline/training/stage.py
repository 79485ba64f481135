"""One stage's training run (``python -m pipeline.train stage=<name>``): the Lightning Trainer of
the ``trainer``, ``logger`` and ``callbacks`` groups, the stage's module and data, resume
(``ckpt_path=``) and fine-tuning (``init_from=``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf, open_dict

from common.checkpoint import ModelFile, load_weights, read_model_file
from common.config import instantiate
from common.errors import ConfigError
from data.datamodule import build_datamodule

log = logging.getLogger("pipeline.training")


# trainer.precision=bf16-where-fast: bf16-mixed where the hardware has fast bf16 kernels, else 32-true.
WHERE_FAST = "bf16-where-fast"


def fast_bf16(accelerator: str | None) -> bool:
    """Whether bf16 autocast is fast here: a CUDA GPU with bf16, or a CPU with oneDNN's bf16
    kernels (AVX-512 BF16 or AMX; without them bf16 convolutions are many times slower)."""
    if accelerator != "cpu" and torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def warn_if_slow_precision(trainer_cfg: DictConfig) -> None:
    """bf16 on a CPU without oneDNN bf16 kernels falls back to slow convolutions (many times
    slower; README, "Benchmark"), so say so before hours are lost."""
    cpu = trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available()
    precision = str(trainer_cfg.get("precision", ""))
    if cpu and precision.startswith("bf16") and precision != WHERE_FAST and not fast_bf16("cpu"):
        log.warning(
            "precision=%s on this CPU has no fast bf16 kernels (oneDNN bf16 unsupported): "
            "convolutions will be many times slower; use trainer.precision=32-true",
            precision,
        )


def build_callbacks(cfg: DictConfig, run_dir: Path) -> list[L.Callback]:
    """The ``callbacks`` group's entries; checkpoints go to ``<run_dir>/checkpoints``."""
    callbacks = []
    for name, node in (cfg.get("callbacks") or {}).items():
        if node is None:
            continue
        callback = instantiate(node)
        if isinstance(callback, ModelCheckpoint):
            callback.dirpath = str(run_dir / "checkpoints")
        if name == "progress_bar" and not cfg.trainer.get("enable_progress_bar", True):
            continue
        callbacks.append(callback)
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        raise ConfigError("the callbacks group must keep model_checkpoint: runs resume and chains continue from it")
    return callbacks


def trainer_arguments(cfg: DictConfig) -> dict:
    """The ``trainer`` group as Lightning Trainer arguments, after the settings that are ours:
    ``float32_matmul_precision`` (``torch.set_float32_matmul_precision``: ``high`` lets fp32
    matmuls use TF32 tensor cores; convolutions already do by cuDNN's default) and
    ``channels_last`` (:class:`common.callbacks.ChannelsLast`). SyncBatchNorm exists on GPUs
    only, so a CPU run (the DDP test on gloo) leaves it off."""
    arguments = OmegaConf.to_container(cfg.trainer, resolve=True)
    if arguments.get("precision") == WHERE_FAST:
        arguments["precision"] = "bf16-mixed" if fast_bf16(arguments.get("accelerator")) else "32-true"
        log.info("precision %s: %s on this machine", WHERE_FAST, arguments["precision"])
    matmul = arguments.pop("float32_matmul_precision", None)
    if matmul:
        torch.set_float32_matmul_precision(matmul)
    arguments.pop("channels_last", None)
    if arguments.get("accelerator") == "cpu" and arguments.get("sync_batchnorm"):
        arguments["sync_batchnorm"] = False
    return arguments


def build_trainer(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """The Lightning Trainer of a run: callbacks and loggers wired to ``run_dir``."""
    loggers = [instantiate(cfg.logger)] if cfg.get("logger") else []
    callbacks = build_callbacks(cfg, run_dir)
    if not loggers:
        callbacks = [c for c in callbacks if type(c).__name__ != "LearningRateMonitor"]  # it needs a logger
    if cfg.trainer.get("channels_last"):
        from common.callbacks import ChannelsLast

        callbacks.append(ChannelsLast())
    warn_if_slow_precision(cfg.trainer)
    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator=gpu but this machine has no CUDA GPU: use trainer=cpu")
    arguments = trainer_arguments(cfg)
    try:
        return L.Trainer(**arguments, default_root_dir=str(run_dir), logger=loggers or False, callbacks=callbacks)
    except (ValueError, TypeError, MisconfigurationException) as error:  # a trainer value Lightning refuses
        raise ConfigError(f"trainer: {str(error).splitlines()[0]}") from error


def check_launch() -> None:
    """Under an outside launcher (torchrun, SLURM's srun) every process composes its own config,
    and a run folder named by the time could differ between them, so such a run names its folder
    (Lightning's own launcher hands the children the parent's folder)."""
    launched = int(os.environ.get("WORLD_SIZE", 1)) > 1 or int(os.environ.get("SLURM_NTASKS", 1)) > 1
    named = any(o.startswith("hydra.run.dir=") for o in HydraConfig.get().overrides.hydra)
    if launched and not named:
        raise ConfigError(
            "this is one of several processes started by torchrun or srun: give them one run folder "
            "on a shared disk, e.g. hydra.run.dir=runs/ipn/celeba-ddp (README, Multi-GPU and multi-node)"
        )


# Groups that a set group makes unused: damage draws masks and corruption together.
OVERRIDDEN_BY = {"masks": "damage", "corruption": "damage"}


def check_used(cfg: DictConfig, overrides: list[str], choices: dict) -> None:
    """Refuse a command-line override of a group or key that the composed run will not use (e.g.
    ``masks=irregular`` while ``damage=mix`` draws the masks), naming what overrides it;
    ``choices``: the composed groups' choices (Hydra's ``runtime.choices``)."""
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0].split(".", 1)[0].split("@", 1)[0]
        owner = OVERRIDDEN_BY.get(key)
        if owner and cfg.get(owner) is not None and not override.startswith("~"):
            raise ConfigError(
                f"{override} is not used: {owner}={choices.get(owner)} draws the "
                f"{' and '.join(k for k, v in OVERRIDDEN_BY.items() if v == owner)} itself; add ~{owner} to use {key}"
            )


def build_module(stage: DictConfig, resumed: ModelFile | None = None) -> L.LightningModule:
    """The stage's LightningModule from its config. A joint module starts from the three stage
    checkpoints, or, when resuming, from the stage configurations its checkpoint stores
    (Lightning then restores the weights)."""
    if stage.name != "joint":
        return instantiate(stage.module, _convert_="all")
    from pipeline.training.joint import JointModule

    kwargs = OmegaConf.to_container(stage.module, resolve=True)
    kwargs.pop("_target_"), kwargs.pop("stages", None)
    if resumed is not None:
        return JointModule(**{**kwargs, "stages": resumed.config["stages"]})
    paths = {name: stage.get(f"{name}_checkpoint") for name in ("mpn", "epn", "ipn")}
    return JointModule.from_stage_checkpoints(paths, **kwargs)


def stage_datamodule(cfg: DictConfig):
    """The run's DataModule with what its stage asks of the data (edges, the share of intact
    photos); ``cfg.data`` is updated to say so."""
    with open_dict(cfg):
        cfg.data.edges = bool(cfg.stage.edges)
        cfg.data.clean_share = float(cfg.stage.get("clean_share", 0.0))
    return build_datamodule(cfg)


def train(cfg: DictConfig, run_dir: Path) -> L.Trainer:
    """Train ``cfg.stage`` and return the finished Trainer."""
    run_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(cfg.seed, workers=True)

    # Read once here: clear errors before Lightning touches it, and the joint rebuilds from it.
    resumed = read_model_file(cfg.ckpt_path, cfg.stage.name) if cfg.ckpt_path else None
    module = build_module(cfg.stage, resumed)
    datamodule = stage_datamodule(cfg)
    if cfg.init_from:
        load_weights(module, cfg.init_from)
        log.info("initialised %s weights from %s", cfg.stage.name, cfg.init_from)

    trainer = build_trainer(cfg, run_dir)
    if trainer.is_global_zero:
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
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
