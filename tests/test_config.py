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
from data.image_dataset import DatasetError
from tests.conftest import ROOT, run_module

GROUPS = {
    g: sorted(p.stem for p in (ROOT / "conf" / g).glob("*.yaml"))
    for g in ("data", "masks", "corruption", "trainer", "logger", "callbacks", "debug", "stage")
}


def _compose(*overrides, config="train"):
    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(config_name=config, overrides=list(overrides))


def test_groups_are_filled():
    assert set(GROUPS["data"]) >= {"sample", "folder", "celeba", "psv", "places2", "cifar10"}
    assert set(GROUPS["masks"]) >= {"freeform", "irregular", "rect", "mixed"}
    assert set(GROUPS["corruption"]) >= {"blind", "denoise", "none"}
    assert set(GROUPS["trainer"]) >= {"cpu", "gpu", "ddp"}
    assert set(GROUPS["logger"]) >= {"csv", "wandb", "tensorboard"}
    assert set(GROUPS["callbacks"]) >= {"default", "ema", "early_stopping"}
    assert set(GROUPS["debug"]) >= {"smoke", "fast_dev_run"}
    assert set(GROUPS["stage"]) == {
        "mpn",
        "epn",
        "ipn",
        "pconv",
        "glcic",
        "dcgan",
        "cifar_gan",
        "joint",
    }  # the chain is an experiment, not a stage


@pytest.mark.parametrize("name", GROUPS["masks"])
def test_every_mask_option_instantiates(name, tmp_path):
    import cv2
    import numpy as np

    overrides = [f"masks={name}"]
    if name == "irregular":
        mask = np.zeros((64, 64), np.uint8)
        mask[10:40, 20:30] = 255
        cv2.imwrite(str(tmp_path / "m.png"), mask)
        overrides.append(f"masks.root={tmp_path}")
    gen = instantiate(_compose(*overrides).masks)
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
    from pipeline.training.stage import trainer_arguments

    cfg = _compose(f"trainer={name}", "trainer.accelerator=cpu", "trainer.devices=1")
    arguments = trainer_arguments(cfg)  # without our own settings (matmul precision, channels-last)
    assert set(arguments) <= set(inspect.signature(L.Trainer.__init__).parameters)
    assert not arguments.get("sync_batchnorm")  # GPU-only in torch: a CPU run leaves it off
    L.Trainer(**{**arguments, "enable_progress_bar": False}, logger=False, enable_checkpointing=False)


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_where_fast_picks_the_precision_by_the_hardware(fast, monkeypatch):
    """trainer.precision=bf16-where-fast: bf16-mixed on a CPU with oneDNN's bf16 kernels (AMX or
    AVX-512 BF16), 32-true elsewhere, where bf16 convolutions are many times slower."""
    import pipeline.training.stage as train_module

    monkeypatch.setattr(train_module, "fast_bf16", lambda accelerator: fast)
    cfg = _compose("trainer=cpu", "trainer.precision=bf16-where-fast")
    assert train_module.trainer_arguments(cfg)["precision"] == ("bf16-mixed" if fast else "32-true")


def test_the_curve_callbacks_take_timed_snapshots(tmp_path, monkeypatch):
    """callbacks=curve: the default callbacks and a weights-only checkpoint every 20 minutes of
    training (``minute-<mmm>.ckpt``; Lightning's own timed ModelCheckpoint never fires under the
    stages' manual optimisation)."""
    import time
    from types import SimpleNamespace

    from common.callbacks import TimedSnapshots
    from pipeline.training.stage import build_callbacks

    cfg = _compose("callbacks=curve", "stage=ipn")
    snapshots = [c for c in build_callbacks(cfg, tmp_path) if isinstance(c, TimedSnapshots)]
    assert len(snapshots) == 1 and snapshots[0].every_minutes == 20
    clock = iter([0.0, 5 * 60, 21 * 60, 22 * 60, 65 * 60, 0.0])
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    saved = []
    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path), callbacks=[], save_checkpoint=lambda p, weights_only: saved.append(p)
    )
    callback = snapshots[0]
    callback.on_train_start(trainer, None)
    for _ in range(4):
        callback.on_train_batch_end(trainer, None, None, None, 0)
    assert [p.name for p in saved] == ["minute-020.ckpt", "minute-060.ckpt"]
    assert saved[0].parent == tmp_path / "checkpoints"

    # Resumed after a kill at minute 54 (max_time's Timer restores the time spent): the count goes on.
    from lightning.pytorch.callbacks import Timer

    timer = Timer(duration="00:02:00:00")
    spent = iter([54 * 60, 58 * 60, 61 * 60])
    monkeypatch.setattr(timer, "time_elapsed", lambda stage="train": next(spent))
    saved.clear()
    trainer.callbacks = [timer]
    callback.on_train_start(trainer, None)
    for _ in range(3):
        callback.on_train_batch_end(trainer, None, None, None, 0)
    assert [p.name for p in saved] == ["minute-060.ckpt"]


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


@pytest.mark.parametrize("name", GROUPS["callbacks"])
@pytest.mark.parametrize("stage", ["mpn", "ipn"])
def test_every_callbacks_option_instantiates_for_the_stages_metric(name, stage, tmp_path):
    from pipeline.training.stage import build_callbacks

    cfg = _compose(f"stage={stage}", f"callbacks={name}")
    callbacks = build_callbacks(cfg, tmp_path)
    checkpoint = next(c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint))
    assert checkpoint.monitor == cfg.stage.monitor and checkpoint.dirpath == str(tmp_path / "checkpoints")
    if name == "ema":
        assert any(type(c).__name__ == "EMAWeightAveraging" for c in callbacks)


def _shown(group: str, key: str) -> bool:
    """Whether ``key`` of a ``group`` option is one the YAML shows as the code has it: a stage's
    module arguments and network widths (learning rates, loss weights, widths: the values users
    tune most), not its feed (what a stage is fed differs by stage)."""
    return group == "stage" and key.startswith("module.") and not key.startswith("module.feed.")


def test_defaults_are_written_once_and_shown_values_are_the_codes(tmp_path):
    """A group option's YAML states what differs from the code's defaults (the schemas of
    conf/schemas.py carry those), and shows the values users tune most (:func:`_shown`), which must
    be exactly the code's defaults: a value written in both places cannot drift apart."""
    from omegaconf import OmegaConf

    repeated, drifted, shown = [], [], 0
    for group in ("data", "masks", "corruption", "stage"):
        for name in GROUPS[group]:
            raw = OmegaConf.load(ROOT / "conf" / group / f"{name}.yaml")
            schema = OmegaConf.create()
            for entry in raw.get("defaults", []):
                if OmegaConf.is_dict(entry):  # {"/schema/module@module": "ipn"}: schema/module/ipn at module
                    ((where, choice),) = entry.items()
                    entry = f"{where.split('@')[0]}/{choice}@{where.split('@')[1]}" if "@" in where else where
                if isinstance(entry, str) and entry.startswith("/schema/") and "@" in entry:
                    path, package = entry[1:].split("@")
                    node = _compose_schema(path)
                    schema = OmegaConf.merge(schema, node if package == "_here_" else OmegaConf.create({}))
                    if package != "_here_":
                        OmegaConf.update(schema, package, node, force_add=True)
            for key, mine in _leaves(OmegaConf.to_container(raw)):
                if key.startswith("defaults") or str(mine).startswith("${"):
                    continue
                theirs = OmegaConf.select(schema, key, default="<absent>", throw_on_resolution_failure=False)
                if isinstance(theirs, (list, tuple)) or OmegaConf.is_list(theirs):
                    theirs = list(theirs)
                if _shown(group, key) and key.count(".") <= 2 and theirs != "<absent>":
                    shown += 1
                    if mine != theirs:
                        drifted.append(f"{group}/{name}: {key}={mine}, the code's {theirs}")
                elif mine == theirs:
                    repeated.append(f"{group}/{name}: {key}={mine}")
    assert not repeated, repeated
    assert not drifted, drifted
    assert shown >= 20  # the three stages' rates, loss weights and widths at least


def _compose_schema(path):
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    node = ConfigStore.instance().load(f"{path}.yaml").node
    return OmegaConf.create(OmegaConf.to_container(node))


def _leaves(tree, prefix=""):
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], tree


def test_smoke_debug_shrinks_the_data_and_a_batch_comes_out():
    cfg = _compose("debug=smoke")
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
        ("masks=nowhere", "Could not find 'masks/nowhere'"),
        ("data.size=abc", "could not be converted to Integer"),
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


@pytest.mark.parametrize("n", ["-1", "0"])
def test_preview_refuses_a_count_below_one_in_one_line(n, tmp_path):
    proc = run_module("data.preview", f"out={tmp_path / 'p'}", f"n={n}", "data.size=32", "data.num_workers=0")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: n= is the number of samples to show, at least 1; got {n}"


@pytest.mark.parametrize(
    "overrides, unused",
    [
        (("masks=irregular", "masks.root=/nonexistent"), "masks=irregular"),
        (("corruption=denoise",), "corruption=denoise"),
    ],
)
def test_a_group_the_run_does_not_use_is_refused_in_one_line(overrides, unused, tmp_path):
    """``damage=mix`` (the default) draws the masks and the corruption itself: overriding either
    would train happily on something else than asked, so it is refused, naming what overrides it;
    with ``~damage`` the same overrides are used."""
    quiet = (f"hydra.run.dir={tmp_path / 'run'}", "debug=smoke", "trainer.enable_progress_bar=false")
    proc = run_module("pipeline.train", "stage=mpn", *overrides, *quiet)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {unused} is not used: damage=mix draws the masks and corruption itself; add ~damage to use "
        f"{unused.split('=')[0]}"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_preview_never_writes_into_the_data_root(photo_folder):
    proc = run_module(
        "data.preview", "data=folder", f"data.dataset.root={photo_folder}", f"out={photo_folder / 'x'}", "data.size=32"
    )
    assert proc.returncode != 0 and "inside the data root" in proc.stderr
    assert not (photo_folder / "x").exists()
