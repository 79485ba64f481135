"""MPN: learning on a fixed batch, and `python -m pipeline.train stage=mpn` end to end."""

import csv

import pytest
import torch
from lightning import seed_everything

from common.checkpoint import CheckpointError, read_model_file
from common.metrics import mask_iou
from data.corruption import Corruptor
from data.datamodule import InpaintingSamples
from data.masks import FreeFormMasks
from data.sample import sample
from mpn.module import MPNModule
from pipeline.training.stage import train
from tests.conftest import compose_train, run_module
from tests.test_checkpoint import Exploit


def test_overfits_a_fixed_batch():
    """Measured (seed 0, 4 samples 32², base 8, depth 3, lr 1e-3): loss 1.29 -> 0.34 and IoU
    0.22 -> 0.975 in 80 steps. The thresholds leave room for platform differences."""
    seed_everything(0)
    samples = InpaintingSamples(sample("val", 32, crops_per_photo=2), FreeFormMasks(), Corruptor(), train=False)
    batch = {k: torch.stack([samples[i][k] for i in range(4)]) for k in ("corrupted", "mask")}
    module = MPNModule(generator=dict(base_channels=8, depth=3), lr=1e-3)
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(80):
        loss, _ = module.generator_loss(batch, module.generate(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    module.eval()
    with torch.no_grad():
        iou = mask_iou(module(batch["corrupted"])["predicted_mask"], batch["mask"]).item()
    assert losses[-1] < 0.4 * losses[0]
    assert iou > 0.85


def test_prediction_is_a_continuous_mask_of_the_input_size():
    module = MPNModule(generator=dict(base_channels=8, depth=3)).eval()
    with torch.no_grad():
        m = module(torch.rand(1, 3, 37, 45))["predicted_mask"]
    assert m.shape == (1, 1, 37, 45) and m.min() >= 0 and m.max() <= 1


def test_fast_dev_run_through_hydra(tmp_path):
    proc = run_module("pipeline.train", "stage=mpn", "debug=fast_dev_run", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "config.yaml").exists()


def _cfg(run_dir, *overrides):
    return compose_train(run_dir, "mpn", *overrides)


def _logged_steps(run_dir):
    with open(run_dir / "logs" / "version_0" / "metrics.csv") as f:
        return sorted({int(r["step"]) for r in csv.DictReader(f) if r.get("train/loss")})


def test_resume_continues_the_global_step_and_init_from_loads_weights(tmp_path):
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    train(_cfg(first, "trainer.max_steps=2", "trainer.max_epochs=3"), first)
    last = first / "checkpoints" / "last.ckpt"
    assert read_model_file(last, "mpn").checkpoint["global_step"] == 2

    train(_cfg(second, f"ckpt_path={last}", "trainer.max_steps=6", "trainer.max_epochs=3"), second)
    assert read_model_file(second / "checkpoints" / "last.ckpt").checkpoint["global_step"] == 6
    assert _logged_steps(second) and min(_logged_steps(second)) >= 2  # no step was trained twice
    assert list((second / "samples").glob("val_mpn_*.png")), "the epoch's validation grid is written"

    trainer = train(_cfg(third, f"init_from={last}", "trainer.max_steps=1"), third)
    assert trainer.global_step == 1  # weights only: a fresh optimizer and step count


def test_incompatible_init_from_is_a_clear_error(tmp_path):
    first = tmp_path / "a"
    train(_cfg(first, "trainer.max_steps=1"), first)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        train(
            _cfg(tmp_path / "b", f"init_from={first / 'checkpoints' / 'last.ckpt'}", "width_mult=0.25"), tmp_path / "b"
        )


def test_hostile_checkpoint_is_refused_by_the_cli(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "payload": Exploit(marker)}, evil)
    proc = run_module(
        "pipeline.train", "stage=mpn", "debug=smoke", f"ckpt_path={evil}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert proc.returncode != 0
    assert "refusing to load" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


def test_no_stage_is_a_clear_error(tmp_path):
    env_free = run_module("pipeline.train", f"hydra.run.dir={tmp_path}")
    assert env_free.returncode != 0 and "error: choose a stage" in env_free.stderr
    wrong = run_module("pipeline.train", "stage=nope", f"hydra.run.dir={tmp_path}")
    assert "Could not find 'stage/nope'" in wrong.stderr and "Traceback" not in wrong.stderr


def test_bf16_on_a_cpu_without_fast_kernels_is_warned_about(caplog, monkeypatch):
    import logging

    from omegaconf import OmegaConf

    from pipeline.training.stage import warn_if_slow_precision

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with caplog.at_level(logging.WARNING):
        warn_if_slow_precision(OmegaConf.create({"accelerator": "cpu", "precision": "bf16-mixed"}))
        warn_if_slow_precision(OmegaConf.create({"accelerator": "cpu", "precision": "32-true"}))
    assert len(caplog.records) == 1 and "32-true" in caplog.records[0].getMessage()
