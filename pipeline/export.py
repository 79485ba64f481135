"""``python -m pipeline.export checkpoint=MODEL out=model.safetensors [torchscript=graph.pt]``

Writes the three generators' weights and their configuration as safetensors (no pickle: loading
it can't run code), which :class:`~pipeline.inference.BlindInpainter` and ``pipeline.inpaint``
accept. ``checkpoint`` is a joint checkpoint, a ``stage=all`` run folder, or three stage
checkpoints given as ``mpn=... epn=... ipn=...``.

``torchscript=PATH`` also writes the inference graph traced with ``torch.jit.trace``, contextual
attention included: ``graph(corrupted (B, 3, H, W), known_edges (B, 1, H, W)) -> (output, mask,
edges)``, H and W multiples of 16 (pad first: the traced graph keeps the padding of the traced
size, none). Canny runs in OpenCV outside the graph, so its edges are an input
(``epn.edges.canny(to_gray(x))``). The export checks the traced graph against the eager model on
a fresh input of another size and batch and refuses to write one that differs.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from torch import nn

from common.checkpoint import CheckpointError
from epn.edges import epn_inputs, merge_edges, to_gray
from ipn.module import compose, generator_input
from pipeline.inference import BlindInpainter, write_safetensors
from pipeline.stages import load_stage

log = logging.getLogger("pipeline.export")


class InferenceGraph(nn.Module):
    """The blind pipeline as plain tensors in and out, for tracing: ``(corrupted, known_edges)``
    -> ``(output (B, 3, H, W), mask (B, 1, H, W), edges (B, 1, H, W))`` with the soft m̂."""

    def __init__(self, inpainter: BlindInpainter):
        super().__init__()
        self.mask_net, self.edge_net, self.fill_net = (
            inpainter.mpn.net,
            inpainter.epn.generator,
            inpainter.ipn.generator,
        )
        self.edge_threshold = inpainter.settings.edge_threshold

    def forward(self, corrupted: torch.Tensor, known_edges: torch.Tensor):
        mask = torch.sigmoid(self.mask_net(corrupted))
        edges = merge_edges(
            self.edge_net(epn_inputs(to_gray(corrupted), known_edges, mask)), known_edges, mask, self.edge_threshold
        )
        _, refined = self.fill_net(generator_input(corrupted, mask, edges), mask)
        return compose(corrupted, (refined + 1) / 2, mask), mask, edges


def _example(batch: int, size: tuple[int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from epn.edges import canny

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, *size, generator=g)
    return x, canny(to_gray(x))


@torch.no_grad()
def export_torchscript(inpainter: BlindInpainter, path: Path, size: int = 256, tolerance: float = 1e-4) -> float:
    """Trace :class:`InferenceGraph` at ``size``² and check it on another size and batch against
    the eager graph; returns the max abs difference (refuses to write above ``tolerance``)."""
    if size % 16 or size < 32:
        raise CheckpointError(f"trace_size must be a multiple of 16 and at least 32, got {size}")
    graph = InferenceGraph(inpainter).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # Python branches on shapes: checked below
        traced = torch.jit.trace(graph, _example(1, (size, size), 0), check_trace=False)
    check = _example(2, (size + 32, size - 16), 1)
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


def load_inpainter(cfg: DictConfig) -> BlindInpainter:
    stage_paths = {name: cfg.get(name) for name in ("mpn", "epn", "ipn")}
    if cfg.checkpoint and any(stage_paths.values()):
        raise CheckpointError("give either checkpoint= or mpn= epn= ipn=, not both")
    if cfg.checkpoint:
        return BlindInpainter.from_pretrained(cfg.checkpoint)
    if not all(stage_paths.values()):
        raise CheckpointError("give checkpoint=<joint .ckpt or stage=all run folder>, or all of mpn= epn= ipn=")
    return BlindInpainter.from_stage_modules({n: load_stage(n, p) for n, p in stage_paths.items()})


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} exists; overwrite=true replaces it")


def export(cfg: DictConfig) -> dict[str, Path]:
    out = Path(cfg.out)
    _refuse_existing(out, cfg.overwrite)
    if cfg.torchscript:
        _refuse_existing(Path(cfg.torchscript), cfg.overwrite)
    inpainter = load_inpainter(cfg)
    written = {"safetensors": write_safetensors(inpainter, out)}
    log.info("wrote %s (%d tensors)", out, len(inpainter.state_dict()))
    if cfg.torchscript:
        diff = export_torchscript(inpainter, Path(cfg.torchscript), cfg.trace_size)
        written["torchscript"] = Path(cfg.torchscript)
        log.info(
            "wrote %s (traced at %d², max abs difference to the model on another size: %.1e)",
            cfg.torchscript,
            cfg.trace_size,
            diff,
        )
    return written


@hydra.main(config_path="pkg://conf.inference", config_name="export", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        export(cfg)
    except CheckpointError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
