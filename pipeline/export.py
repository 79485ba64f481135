"""``python -m pipeline.export checkpoint=MODEL out=model.safetensors [torchscript=graph.pt]``

Writes the blind pipeline (:class:`~pipeline.model.BlindPipeline`) for inference as safetensors:
the three generators' weights, their configuration and the pipeline's settings (no pickle:
loading it can't run code), which :class:`~pipeline.inference.inpainter.BlindInpainter`, ``pipeline.inpaint``
and ``pipeline.evaluate`` accept. ``checkpoint`` is a joint checkpoint, a training run folder or
a model file; or give three stage checkpoints as ``mpn=... epn=... ipn=...``.

``torchscript=PATH`` also writes the pipeline in blind mode traced with ``torch.jit.trace``,
contextual attention included: ``graph(corrupted (B, 3, H, W), corrupted_edge (B, 1, H, W)) ->
(output, mask, edges)``, H and W multiples of 16 (pad first: the traced graph keeps the padding of
the traced size, none). Canny runs in OpenCV outside the graph, so its edges are an input
(``BlindPipeline.corrupted_edge``). The export checks the traced graph against the eager pipeline
on a fresh input of another size and batch and refuses to write one that differs.

``onnx=true`` also writes the MPN's and the EPN's generators as ONNX graphs beside ``out``
(``<out>.mpn.onnx``, ``<out>.epn.onnx``), which ``backend=onnxruntime`` uses
(:mod:`pipeline.inference.onnx`; without them it exports in memory at start-up).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from lightning.pytorch.core.module import _jit_is_scripting
from omegaconf import DictConfig

from common.checkpoint import load_module
from common.cli import command
from common.errors import CheckpointError, ConfigError
from pipeline.inference.onnx import EXPORTED, graph_path, write_graphs
from pipeline.model import STAGES, BlindPipeline, TracingOutputs, given_settings, load_pipeline, save_pipeline

log = logging.getLogger("pipeline.export")


def _example(
    pipeline: BlindPipeline, batch: int, size: tuple[int, int], seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, *size, generator=g)
    return x, pipeline.corrupted_edge(x)


@torch.no_grad()
def export_torchscript(pipeline: BlindPipeline, path: Path, size: int = 256, tolerance: float = 1e-4) -> float:
    """Trace the pipeline at ``size``² and check it on another size and batch against the eager
    pipeline; returns the max abs difference (refuses to write above ``tolerance``)."""
    if size % 16 or size < 32:
        raise ConfigError(f"trace_size must be a multiple of 16 and at least 32, got {size}")
    graph = TracingOutputs(pipeline.eval()).eval()
    # The stages are LightningModules: Lightning's own switch lets TorchScript read their
    # attributes without a Trainer (as LightningModule.to_torchscript does).
    with warnings.catch_warnings(), _jit_is_scripting():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # Python branches on shapes: checked below
        traced = torch.jit.trace(graph, _example(pipeline, 1, (size, size), 0), check_trace=False)
    check = _example(pipeline, 2, (size + 32, size - 16), 1)
    eager = graph(*check)
    try:
        scripted = traced(*check)
    except RuntimeError as err:
        raise CheckpointError(f"the traced graph fails on another size ({err}); not written") from None
    if any(a.shape != b.shape for a, b in zip(eager, scripted)):
        raise CheckpointError("the traced graph does not generalise to other sizes; not written")
    diff = max((a - b).abs().max().item() for a, b in zip(eager, scripted))
    if diff > tolerance:
        raise CheckpointError(f"the traced graph differs from the model by {diff:.2e} on another size; not written")
    path.parent.mkdir(parents=True, exist_ok=True)
    traced.save(str(path))
    return diff


def load_for_export(cfg: DictConfig) -> BlindPipeline:
    """The pipeline from ``checkpoint=``, or from the three stage checkpoints ``mpn= epn= ipn=``
    with ``pipeline.*`` settings."""
    stage_paths = {name: cfg.get(name) for name in STAGES}
    if cfg.checkpoint and any(stage_paths.values()):
        raise ConfigError("give either checkpoint= or mpn= epn= ipn=, not both")
    if cfg.checkpoint:
        return load_pipeline(cfg.checkpoint, **cfg.pipeline)
    if not all(stage_paths.values()):
        raise ConfigError("give checkpoint=<model file, joint .ckpt or run folder>, or all of mpn= epn= ipn=")
    stages = {name: load_module(path, STAGES[name]) for name, path in stage_paths.items()}
    return BlindPipeline(**stages, **given_settings(cfg.pipeline)).eval()


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} exists; overwrite=true replaces it")


def export(cfg: DictConfig) -> dict[str, Path]:
    out = Path(cfg.out)
    _refuse_existing(out, cfg.overwrite)
    if cfg.torchscript:
        _refuse_existing(Path(cfg.torchscript), cfg.overwrite)
    if cfg.onnx:
        for name in EXPORTED:
            _refuse_existing(graph_path(out, name), cfg.overwrite)
    pipeline = load_for_export(cfg)
    written = {"safetensors": save_pipeline(pipeline, out)}
    log.info("wrote %s", out)
    if cfg.torchscript:
        diff = export_torchscript(pipeline, Path(cfg.torchscript), cfg.trace_size)
        written["torchscript"] = Path(cfg.torchscript)
        log.info(
            "wrote %s (traced at %d², max abs difference to the model on another size: %.1e)",
            cfg.torchscript,
            cfg.trace_size,
            diff,
        )
    if cfg.onnx:
        for path in write_graphs({name: getattr(pipeline, name) for name in EXPORTED}, out):
            written[path.name] = path
            log.info("wrote %s", path)
    return written


@command("export", "inference")
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
