"""Distributed data parallel training on two CPU processes (gloo): each trainable stage and the
joint run, launched as users launch them (``pipeline.train ... trainer=ddp trainer.devices=2``),
with a NaN loss on one rank only. Afterwards both ranks hold the same weights, and the logged
validation metric is the mean over every validation sample of both ranks: what one process
scores on the union of their shares."""

from __future__ import annotations

import csv
import math

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from common.checkpoint import load_weights, read_model_file
from pipeline.training.stage import build_module, stage_datamodule
from tests.conftest import compose_train, run_module

STAGES = ("mpn", "epn", "ipn", "pconv", "glcic", "parallel_attention", "dcgan", "cifar_gan", "joint")
STAGE_OF = {"parallel_attention": "glcic"}  # systems trained by another system's stage (stage/generator=)
# Batches of one image: the epoch means are then exactly the per-image means, however the
# validation samples are shared among the ranks.
SMALL = ("data.batch_size=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2")
RANKS = 2


def stage_overrides(stage: str, runs: dict) -> list[str]:
    if stage == "parallel_attention":
        return ["stage/generator=parallel_attention", *stage_overrides("glcic", runs)]
    if stage == "glcic":  # all three phases in four batches; D's last maps 2×2 at 32² (batch norm, batches of one)
        return ["stage.module.completion_steps=1", "stage.module.discriminator_steps=1",
                "stage.discriminator.global_layers=4", "stage.discriminator.local_layers=3"]  # fmt: skip
    if stage == "dcgan":  # a short latent search per validation batch
        return ["stage.module.val_search_steps=2"]
    if stage != "joint":
        return []
    return [f"stage.{name}_checkpoint={runs[name] / 'checkpoints' / 'last.ckpt'}" for name in ("mpn", "epn", "ipn")]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """The four stages trained with ``trainer=ddp`` on 2 CPU processes: ``{stage: run folder}``
    and each run's standard output under ``"<stage>_stdout"``."""
    root, runs = tmp_path_factory.mktemp("ddp"), {}
    for stage in STAGES:
        run_dir = root / stage
        proc = run_module(
            "pipeline.train", f"stage={STAGE_OF.get(stage, stage)}", "debug=smoke", *SMALL,
            *stage_overrides(stage, runs),
            "trainer=ddp", "trainer.accelerator=cpu", f"trainer.devices={RANKS}",
            f"hydra.run.dir={run_dir}", f"logger.save_dir={run_dir}", "trainer.enable_progress_bar=false",
            "+callbacks.probe._target_=tests.ddp_probe.RankProbe", f"+callbacks.probe.folder={run_dir / 'ranks'}",
            timeout=240,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[stage], runs[f"{stage}_stdout"] = run_dir, proc.stdout + proc.stderr
    return runs


@pytest.mark.parametrize("stage", STAGES)
def test_both_ranks_end_with_the_same_weights(ddp_runs, stage):
    states = [load_file(ddp_runs[stage] / "ranks" / f"rank{r}.safetensors") for r in range(RANKS)]
    assert states[0].keys() == states[1].keys() and len(states[0]) > 10
    differ = [k for k in states[0] if not torch.equal(states[0][k], states[1][k])]
    assert not differ, differ[:5]


@pytest.mark.parametrize("stage", STAGES)
def test_a_nan_loss_on_one_rank_skips_the_step_on_both(ddp_runs, stage):
    # Rank 1's second batch is poisoned: rank 0 reports the skip it made with it (a rank that
    # skipped alone would have left the other waiting in all-reduce, and the run would not end).
    assert "not finite on another rank" in ddp_runs[f"{stage}_stdout"]


def logged(run_dir, name: str) -> float:
    rows = list(csv.DictReader((run_dir / "logs" / "version_0" / "metrics.csv").open()))
    values = [float(row[name]) for row in rows if row.get(name)]
    assert values, f"{name} was not logged"
    return values[-1]


@pytest.mark.parametrize("stage", STAGES)
def test_the_logged_validation_metric_is_the_mean_over_all_ranks(ddp_runs, stage, tmp_path):
    run_dir = ddp_runs[stage]
    cfg = compose_train(tmp_path, STAGE_OF.get(stage, stage), *SMALL, *stage_overrides(stage, ddp_runs))
    last = run_dir / "checkpoints" / "last.ckpt"
    module = build_module(cfg.stage, read_model_file(last, stage) if stage == "joint" else None)
    load_weights(module, last)
    one_process = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=RANKS * cfg.trainer.limit_val_batches, default_root_dir=str(tmp_path),
    )  # fmt: skip
    (scores,) = one_process.validate(module, datamodule=stage_datamodule(cfg), verbose=False)
    monitor = cfg.stage.monitor
    assert math.isclose(logged(run_dir, monitor), scores[monitor], rel_tol=1e-5, abs_tol=1e-6), (
        logged(run_dir, monitor),
        scores[monitor],
    )
