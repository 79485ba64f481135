"""The Hydra configs compose, every group option instantiates, and bad input gets a clear error."""

import inspect
import os

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from PIL import Image

from data.datamodule import build_datamodule
from data.datasets import DatasetError
from tests.conftest import ROOT, run_module

GROUPS = {
    g: sorted(p.stem for p in (ROOT / "conf" / g).glob("*.yaml"))
    for g in ("data", "mask", "corruption", "trainer", "logger")
}


def _compose(*overrides, config="train"):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def test_groups_are_filled():
    assert set(GROUPS["data"]) >= {"sample", "folder", "celeba", "psv", "places2"}
    assert set(GROUPS["mask"]) >= {"freeform", "irregular", "rect", "mixed"}
    assert set(GROUPS["corruption"]) >= {"blind", "denoise", "none"}
    assert set(GROUPS["trainer"]) >= {"cpu", "gpu", "ddp", "smoke"}
    assert set(GROUPS["logger"]) >= {"csv", "wandb", "tensorboard"}


@pytest.mark.parametrize("name", GROUPS["mask"])
def test_every_mask_option_instantiates(name, tmp_path):
    import cv2
    import numpy as np

    overrides = [f"mask={name}"]
    if name == "irregular":
        mask = np.zeros((64, 64), np.uint8)
        mask[10:40, 20:30] = 255
        cv2.imwrite(str(tmp_path / "m.png"), mask)
        overrides.append(f"mask.root={tmp_path}")
    gen = instantiate(_compose(*overrides).mask)
    out = gen(40, 48, np.random.default_rng(0))
    assert out.shape == (40, 48)


@pytest.mark.parametrize("name", GROUPS["corruption"])
def test_every_corruption_option_instantiates(name):
    import numpy as np

    corrupt = instantiate(_compose(f"corruption={name}").corruption)
    image, hole = torch.rand(3, 32, 32), torch.zeros(1, 32, 32)
    hole[:, 8:20, 8:20] = 1
    corrupted, mask = corrupt(image, hole, np.random.default_rng(0), torch.rand(3, 32, 32))
    assert corrupted.shape == (3, 32, 32) and mask.shape == (1, 32, 32)


@pytest.mark.parametrize("name", GROUPS["trainer"])
def test_every_trainer_option_is_valid_trainer_arguments(name):
    cfg = _compose(f"trainer={name}")
    accepted = set(inspect.signature(L.Trainer.__init__).parameters)
    assert set(cfg.trainer) <= accepted
    if cfg.trainer.accelerator == "cpu":
        L.Trainer(**{**cfg.trainer, "enable_progress_bar": False}, logger=False, enable_checkpointing=False)


@pytest.mark.parametrize("name", GROUPS["logger"])
def test_every_logger_option_instantiates_offline(name, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = _compose(f"logger={name}", f"logger.save_dir={tmp_path}")
    logger = instantiate(cfg.logger)
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    if name == "wandb":
        assert cfg.logger.offline is True
        import wandb

        wandb.finish()


def test_smoke_trainer_shrinks_the_data_and_a_batch_comes_out():
    cfg = _compose("trainer=smoke")
    assert cfg.data.size == 32 and cfg.trainer.limit_train_batches == 4 and cfg.trainer.max_epochs == 1
    dm = build_datamodule(cfg)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    "name,env",
    [("celeba", "CELEBA_ROOT"), ("psv", "PSV_ROOT"), ("places2", "PLACES2_ROOT"), ("folder", "BLINDFILL_DATA")],
)
def test_presets_read_their_root_from_the_environment(name, env, monkeypatch, tmp_path):
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(DatasetError, match="not set"):
        build_datamodule(_compose(f"data={name}")).split("train")
    monkeypatch.setenv(env, str(tmp_path))
    assert _compose(f"data={name}").data.dataset.root == str(tmp_path)


def test_preview_writes_a_grid(tmp_path):
    proc = run_module("data.preview", f"out={tmp_path / 'p'}", "n=3", "data.size=64", "data.num_workers=0")
    assert proc.returncode == 0, proc.stderr
    grid = Image.open(tmp_path / "p" / "preview.png")
    assert grid.size == (4 * 66 + 2, 3 * 66 + 2 + 14)  # 4 columns, 3 rows, 2-px padding, header
    assert "wrote" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.nonsense=1", "Could not override 'data.nonsense'"),
        ("data=nowhere", "Could not find 'data/nowhere'"),
        ("mask=nowhere", "Could not find 'mask/nowhere'"),
        ("data=celeba", "the CelebA root folder is not set: set the CELEBA_ROOT"),
        ("data=folder", "the image folder root folder is not set"),
    ],
)
def test_bad_config_is_a_clear_error_not_a_traceback(override, message, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("CELEBA_ROOT", "BLINDFILL_DATA", "HYDRA_FULL_ERROR")}
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "data.preview", override, f"out={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_preview_never_writes_into_the_data_root(photo_folder):
    proc = run_module(
        "data.preview", "data=folder", f"data.dataset.root={photo_folder}", f"out={photo_folder / 'x'}", "data.size=32"
    )
    assert proc.returncode != 0 and "inside the data root" in proc.stderr
    assert not (photo_folder / "x").exists()
