"""backend=onnxruntime (pipeline/inference/onnx.py): the ONNX graphs give the PyTorch generators'
results at any size, the shipped graphs are the shipped weights', and a graph made from other
weights is never used."""

import logging
import shutil

import numpy as np
import pytest
import torch

from common.errors import ConfigError
from pipeline.inference import onnx as onnx_backend
from pipeline.inference.inpainter import BlindInpainter, InpaintSettings
from pipeline.model import SHIPPED_MODEL, load_pipeline

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def shipped():
    return load_pipeline()


@pytest.mark.parametrize("name", onnx_backend.EXPORTED)
def test_the_shipped_graphs_are_the_shipped_weights(shipped, name):
    import onnx

    graph = onnx.load(str(onnx_backend.graph_path(SHIPPED_MODEL, name)))
    props = {p.key: p.value for p in graph.metadata_props}
    assert props[onnx_backend.FINGERPRINT_KEY] == onnx_backend.fingerprint(getattr(shipped, name).generator)


@pytest.mark.parametrize("name", onnx_backend.EXPORTED)
@pytest.mark.parametrize("shape", [(1, 256, 256), (2, 37, 53), (1, 70, 93), (1, 9, 300)])
def test_a_graph_gives_the_generators_result_at_any_size(shipped, name, shape):
    """One graph, exported at 256², serves every size: padded and cropped as PyTorch does."""
    generator = getattr(shipped, name).generator
    data = onnx_backend.graph_path(SHIPPED_MODEL, name).read_bytes()
    runner = onnx_backend.OnnxGenerator(name, data, *onnx_backend.padding_rule(name, generator), threads=2)
    batch, h, w = shape
    x = torch.rand(batch, 3, h, w, generator=torch.Generator().manual_seed(h))
    with torch.inference_mode():
        expected = generator(x)
    got = runner(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-4


def test_the_backend_repairs_as_pytorch_does():
    reference = BlindInpainter.from_pretrained()
    onnx = BlindInpainter.from_pretrained(settings=InpaintSettings(backend="onnxruntime"))
    assert isinstance(onnx.pipeline.mpn.generator, onnx_backend.OnnxGenerator)
    assert not isinstance(onnx.pipeline.ipn.generator, onnx_backend.OnnxGenerator)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 96, 128, generator=g) * 0.3 + 0.35
    x[0, :, 40:46, 10:120] = 1.0  # a scratch
    x[1, :, 20:60, 30:70] = torch.tensor([0.0, 1.0, 0.0])[:, None, None]  # a blotch
    a, b = reference.inpaint(x), onnx.inpaint(x)
    assert torch.equal(a["mask"] > 0, b["mask"] > 0)
    for key in ("output", "mask", "edges"):
        assert (a[key] - b[key]).abs().max() < 1e-4, key
    assert reference.torch_pipeline is reference.pipeline  # the settings switch the pipeline that runs
    onnx.with_settings(backend="torch")
    assert onnx.pipeline is onnx.torch_pipeline


def test_graphs_are_found_beside_the_model_and_other_weights_are_refused(smoke_run, tmp_path, monkeypatch, caplog):
    model = tmp_path / "model.safetensors"
    shutil.copy(smoke_run["model"], model)
    pipeline = load_pipeline(model)
    stages = {name: getattr(pipeline, name) for name in onnx_backend.EXPORTED}
    written = onnx_backend.write_graphs(stages, model)
    assert [p.name for p in written] == ["model.mpn.onnx", "model.epn.onnx"]

    exported = []
    real_export = onnx_backend.export_generator
    monkeypatch.setattr(onnx_backend, "export_generator", lambda *a: exported.append(a[0]) or real_export(*a))
    found = onnx_backend.onnx_generators(stages, model, threads=1)
    assert exported == [] and set(found) == {"mpn", "epn"}  # read, not exported again

    with torch.no_grad():
        next(pipeline.epn.generator.parameters()).add_(0.5)  # now other weights than the graph's
    with caplog.at_level(logging.WARNING):
        onnx_backend.onnx_generators(stages, model, threads=1)
    assert exported == ["epn"] and "exported from other weights" in caplog.text

    (tmp_path / "model.mpn.onnx").write_bytes(b"not a graph")
    exported.clear()
    with caplog.at_level(logging.WARNING):
        onnx_backend.onnx_generators(stages, model, threads=1)
    assert exported == ["mpn", "epn"] and "not a readable ONNX graph" in caplog.text


def test_the_export_cli_writes_the_graphs(smoke_run, tmp_path):
    from tests.conftest import run_module

    out = tmp_path / "m.safetensors"
    result = run_module("pipeline.export", f"checkpoint={smoke_run['model']}", f"out={out}", "onnx=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "m.mpn.onnx").is_file() and (tmp_path / "m.epn.onnx").is_file()
    assert "Replaced initializer" not in result.stdout + result.stderr  # the exporter's chatter is kept quiet
    again = run_module("pipeline.export", f"checkpoint={smoke_run['model']}", f"out={out}", "onnx=true")
    assert again.returncode != 0 and again.stderr.strip().splitlines()[-1].startswith("error: ")


def test_the_backend_runs_on_the_cpu_only():
    inpainter = BlindInpainter.from_pretrained(settings=InpaintSettings(backend="onnxruntime"))
    with pytest.raises(ConfigError, match="runs on the CPU"):
        inpainter.to("cuda")
    photo = (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)
    assert inpainter.inpaint_array(photo)["output"].shape == photo.shape
