"""What only a GPU can show (marker ``cuda``; skipped without one, run by ``scripts/gpu_check.sh``):
the stages and the shipped pipeline compute on CUDA what they compute on the CPU, bf16 autocast
keeps spectral norm and attention in float32 there too (CUDA's autocast casts ``mv``, the CPU's
does not), every stage and the whole chain train on the GPU in fp32 and bf16, DDP runs on NCCL,
Canny runs on the GPU in training, and the inference CLI runs on the GPU."""

from __future__ import annotations

import contextlib
import functools
import json
from copy import deepcopy
from unittest import mock

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from common.layers import sn
from common.ops import canny
from ipn.layers import ContextualAttention
from tests.conftest import compose_train, run_module, write_photo

pytestmark = pytest.mark.cuda

STAGES = ("mpn", "epn", "ipn")


@contextlib.contextmanager
def exact_float32():
    """No TF32 (cuDNN uses it for convolutions by default), so CUDA and the CPU differ by rounding only."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = conv
        torch.set_float32_matmul_precision(matmul)


def _batch(size: int = 64, batch: int = 2) -> dict[str, torch.Tensor]:
    from pipeline.benchmarking.measure import synthetic_batch

    return synthetic_batch(batch, size, torch.device("cpu"))


@pytest.mark.parametrize("stage", STAGES)
def test_stage_forward_and_gradients_match_the_cpu(tmp_path, cuda_device, stage):
    torch.manual_seed(0)
    module = instantiate(compose_train(tmp_path, stage, "width_mult=0.25").stage.module, _convert_="all")
    batch = _batch()
    key = {"mpn": "mask_logits", "epn": "predicted_edges", "ipn": "output"}[stage]
    results = []
    with exact_float32():
        for device in (torch.device("cpu"), cuda_device):
            copy = deepcopy(module).to(device)  # the same state each time (spectral norm's u, v move)
            out = copy.generate({k: v.to(device) for k, v in batch.items()})[key]
            out.float().square().mean().backward()
            grads = [p.grad.detach().cpu() for p in copy.generator.parameters() if p.grad is not None]
            results.append((out.detach().cpu(), grads))
    (cpu_out, cpu_grads), (dev_out, dev_grads) = results
    torch.testing.assert_close(dev_out, cpu_out, rtol=1e-3, atol=1e-4)
    assert len(dev_grads) == len(cpu_grads) > 0
    for dev, cpu in zip(dev_grads, cpu_grads):
        assert torch.isfinite(dev).all()
        torch.testing.assert_close(dev, cpu, rtol=1e-2, atol=1e-5)


def test_bf16_autocast_keeps_spectral_norm_and_attention_in_float32(cuda_device):
    torch.manual_seed(0)
    conv = sn(torch.nn.Conv2d(8, 16, 3)).to(cuda_device).eval()
    expected = conv.weight
    f, b = (torch.rand(2, 8, 32, 32, device=cuda_device).bfloat16() for _ in range(2))
    mask = torch.zeros(2, 1, 32, 32, device=cuda_device)
    mask[..., 8:24, 8:24] = 1
    attention = ContextualAttention()
    with exact_float32():
        reference, _ = attention(f.float(), b.float(), mask)
        with torch.autocast(cuda_device.type, dtype=torch.bfloat16):
            weight = conv.weight
            conv.train()
            conv.weight  # noqa: B018 (a power iteration under autocast)
            out, _ = attention(f, b, mask)
    assert weight.dtype == torch.float32 and torch.equal(weight, expected)
    assert conv.parametrizations.weight[0]._u.dtype == torch.float32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), reference, rtol=1e-2, atol=1e-2)


def test_the_shipped_pipeline_on_the_device_matches_the_cpu(cuda_device):
    from data.io import load_image
    from pipeline import BlindInpainter
    from tests.conftest import ROOT

    photo = load_image(sorted((ROOT / "data" / "photos").glob("*.jpg"))[0])[None, :, :256, :256]
    damaged = photo.clone()
    damaged[..., 100:108, 20:230] = 1.0  # a white scratch
    opencv = functools.partial(canny, backend="opencv")  # the same edges on both (kornia's differ slightly)
    with exact_float32(), mock.patch("pipeline.model.canny", opencv):
        cpu = BlindInpainter.from_pretrained(device="cpu").inpaint(damaged)
        dev = BlindInpainter.from_pretrained(device=cuda_device).inpaint(damaged)
    cpu_mask, dev_mask = cpu["mask"] > 0.5, dev["mask"].cpu() > 0.5
    assert cpu_mask.any() and (cpu_mask == dev_mask).float().mean() > 0.999
    assert (dev["output"].cpu() - cpu["output"]).abs().mean() < 1e-3


def _train(tmp_path, cuda_device, *overrides) -> dict:
    """A smoke training run on the device; its speed.json (common.callbacks.TrainingSpeed)."""
    run_dir = tmp_path / "run"
    result = run_module(
        "pipeline.train",
        "debug=smoke",
        *overrides,
        f"trainer.accelerator={'gpu' if cuda_device.type == 'cuda' else 'cpu'}",
        "+callbacks.speed._target_=common.callbacks.TrainingSpeed",
        "+callbacks.speed.warmup_steps=1",
        "data.size=64",  # (32² gives the discriminator 1×1 maps, where oneDNN's bf16 convolution gradients fail)
        f"hydra.run.dir={run_dir}",
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_trains_on_the_device(tmp_path, cuda_device, stage, precision):
    run_dir = _train(tmp_path, cuda_device, f"stage={stage}", "trainer=gpu", f"trainer.precision={precision}")
    speed = json.loads((run_dir / "speed.json").read_text())
    assert speed["finite"] and speed["precision"] == precision and speed["samples_per_s"] > 0
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_the_chain_trains_and_ships_on_the_device(tmp_path, cuda_device):
    run_dir = _train(tmp_path, cuda_device, "experiment=all", "trainer=gpu")
    assert (run_dir / "model.safetensors").is_file() and (run_dir / "selection.json").is_file()
    assert all((run_dir / step / "DONE").is_file() for step in ("mpn", "epn", "ipn", "joint"))


def test_ddp_on_one_device_and_canny_on_the_device(tmp_path, cuda_device):
    run_dir = _train(tmp_path / "ddp", cuda_device, "stage=epn", "trainer=ddp", "trainer.devices=1")
    assert json.loads((run_dir / "speed.json").read_text())["finite"]
    run_dir = _train(tmp_path / "canny", cuda_device, "stage=epn", "trainer=gpu", "data.edge_device=accelerator")
    assert json.loads((run_dir / "speed.json").read_text())["finite"]


def test_the_inpaint_cli_on_the_device(tmp_path, cuda_device):
    photo = write_photo(tmp_path / "in" / "p.png", 96, 64)
    out = tmp_path / "out"
    result = run_module(
        "pipeline.inpaint",
        f"input={photo}",
        f"output={out}",
        f"device={cuda_device.type}",
        "save_intermediates=true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    repaired = np.asarray(Image.open(out / "p.png"))
    mask = np.asarray(Image.open(out / "p_mask.png"))
    original = np.asarray(Image.open(photo))
    assert repaired.shape == original.shape
    assert (repaired[mask == 0] == original[mask == 0]).all()
