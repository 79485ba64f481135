import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

# Tests marked ``cuda`` need a CUDA GPU and are skipped without one. BLINDFILL_CUDA_STANDIN=cpu
# runs them on the CPU instead: a check of the tests' own wiring on a machine without a GPU
# (``scripts/gpu_check.sh`` with GPU_CHECK_DEVICE=cpu), which says nothing about CUDA.
CUDA_STANDIN = os.environ.get("BLINDFILL_CUDA_STANDIN", "")


def pytest_configure(config):
    """Every schema of conf/ registered, as the tests compose any command's config in-process (a
    command registers only the parts it names: the tests that run commands check that)."""
    from conf.schemas import register

    register()


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available() or CUDA_STANDIN == "cpu":
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (scripts/gpu_check.sh runs these on one)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cuda_device():
    """The device of the ``cuda`` tests: ``cuda``, or the CPU stand-in (``BLINDFILL_CUDA_STANDIN=cpu``)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else CUDA_STANDIN or "cuda")


def write_photo(path: Path, width: int = 80, height: int = 60, seed: int = 0, mode: str = "RGB") -> Path:
    """A smooth random colour image (real-photo-like gradients, so Canny finds some edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    arr = np.stack(
        [np.sin(6 * xx + rng.uniform(0, 6)) * 0.5 + 0.5, np.cos(5 * yy + rng.uniform(0, 6)) * 0.5 + 0.5, (xx + yy) / 2],
        axis=-1,
    )
    arr[height // 3 : height // 2, width // 4 : width // 2] = rng.uniform(0, 1, 3)
    img = Image.fromarray((arr * 255).astype(np.uint8), "RGB")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.convert(mode).save(path)
    return path


@pytest.fixture
def photo_folder(tmp_path):
    """Twelve small photos in nested folders (two extensions)."""
    root = tmp_path / "photos"
    for i in range(12):
        write_photo(root / f"sub{i % 3}" / f"img{i:02d}.{'png' if i % 2 else 'jpg'}", seed=i)
    return root


def run_module(*args, cwd=ROOT, timeout=300):
    import subprocess

    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def compose_config(name, *overrides):
    """The config ``name`` of ``conf/`` with ``overrides``, as its command composes it."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose(name, list(overrides))


def compose_train(run_dir, stage, *overrides):
    """The training config of ``stage`` with ``debug=smoke``, logging into ``run_dir``."""
    quiet = (f"logger.save_dir={run_dir}", "trainer.enable_progress_bar=false")
    return compose_config("train", f"stage={stage}", "debug=smoke", *quiet, *overrides)


def compose_chain(run_dir, *overrides):
    """The whole chain (``experiment=all``) with ``debug=smoke``, logging into ``run_dir``."""
    quiet = (f"logger.save_dir={run_dir}", "trainer.enable_progress_bar=false")
    return compose_config("train", "experiment=all", "debug=smoke", *quiet, *overrides)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """One tiny chain run (``experiment=all debug=smoke``: mpn → epn → ipn → joint), shared by the tests of
    joint training, inference and export: ``{"dir", "mpn", "epn", "ipn", "joint", "model"}``."""
    from pipeline.training.chain import train_chain

    run_dir = tmp_path_factory.mktemp("smoke_all")
    checkpoints = train_chain(compose_chain(run_dir, "chain.demo_rows=2"), run_dir)
    return {"dir": run_dir, **checkpoints, "model": run_dir / "model.safetensors"}


def pytest_addoption(parser):
    parser.addoption(
        "--screenshot",
        default=None,
        help="tests/test_browser.py also saves the page, repaired, to this path (the README's docs/web-page.png)",
    )
