"""Our networks against the public implementations of the same architectures (``python -m
pipeline.benchmark_peers``, whose docstring says what is compared and how): building both sides,
timing them in fresh processes, and the table."""

from __future__ import annotations

import multiprocessing
import statistics
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from common.errors import ConfigError
from pipeline.benchmarking.report import console, fmt_seconds, write_json

MODES = ("forward", "train")


@dataclass(frozen=True)
class Pair:
    """One comparison: our ``ours`` model against the peer ``theirs``, which needs ``peers.<peer>``."""

    name: str
    ours: str
    theirs: str
    peer: str | tuple[str, ...]
    modes: tuple[str, ...] = MODES


PAIRS = (
    Pair("EPN vs EdgeConnect edge G", "ours-epn", "edgeconnect", "edgeconnect"),
    Pair("IPN vs DeepFill v2", "ours-ipn", "deepfill", "deepfill"),
    Pair("MPN (width 1) vs U-Net", "ours-mpn", "unet", "unet"),
    Pair("MPN (shipped width) vs U-Net", "ours-mpn-shipped", "unet", "unet"),
    Pair(
        "blind pipeline (shipped) vs U-Net + EdgeConnect + DeepFill v2",
        "ours-pipeline",
        "chain",
        ("unet", "edgeconnect", "deepfill"),
        modes=("forward",),
    ),
)


# -- the models, built inside the worker process --------------------------------------------------


def _inputs(batch: int, size: int) -> dict[str, torch.Tensor]:
    from pipeline.benchmarking.measure import synthetic_batch

    return synthetic_batch(batch, size, torch.device("cpu"))


def _damaged_photo(size: int) -> torch.Tensor:
    """A bundled photo at ``size``² with a caption over it ``(1, 3, S, S)``."""
    import numpy as np

    from data.damage import Damage
    from data.sample import load_photo

    photo = F.interpolate(load_photo("lomiri_bridge")[None], size=(size, size), mode="area")[0]
    return Damage("text")(photo, np.random.default_rng(0))[0][None]


def _our_stage(name: str, width_mult: float):
    from hydra import compose, initialize_config_module

    from conf.schemas import register
    from pipeline.benchmarking.measure import build_stage

    register()
    with initialize_config_module(config_module="conf", version_base="1.3"):
        cfg = compose("benchmark", [f"width_mult={width_mult}"])
    return build_stage(cfg, name, torch.device("cpu"))


def _import_from(checkout: str, module: str):
    """``module`` of a peer's checkout (put first on ``sys.path``: each worker is its own process)."""
    sys.path.insert(0, checkout)
    import importlib

    return importlib.import_module(module)


def _canny_as_edgeconnect(gray: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """EdgeConnect's loader's edges: ``skimage.feature.canny(gray, sigma=2)`` per image."""
    from skimage.feature import canny

    return torch.stack([torch.from_numpy(canny(g[0].numpy(), sigma=sigma)).float()[None] for g in gray])


def build(model: str, peers: DictConfig, batch: int, size: int) -> tuple[torch.nn.Module | None, Callable]:
    """``(network, call)``: the trainable network (None for the whole pipelines) and a call that
    runs it on fixed inputs of ``batch × size²`` and returns its output tensor."""
    from common.ops import to_gray

    data = _inputs(batch, size)
    corrupted, mask, edge = data["corrupted"], data["mask"], data["corrupted_edge"]
    if model == "ours-epn":
        stage = _our_stage("epn", 1.0)
        return stage.generator, lambda: stage(corrupted, mask, edge)["predicted_edges"]
    if model == "ours-ipn":
        stage = _our_stage("ipn", 1.0)
        return stage.generator, lambda: stage(corrupted, mask, edge, edge)["refined"]
    if model in ("ours-mpn", "ours-mpn-shipped"):
        width = 1.0 if model == "ours-mpn" else _shipped_mpn_width()
        stage = _our_stage("mpn", width)
        return stage.generator, lambda: stage(corrupted)["mask_logits"]
    if model == "ours-pipeline":
        from pipeline.inference.inpainter import BlindInpainter

        inpainter, photo = BlindInpainter.from_pretrained(), _damaged_photo(size)
        return None, lambda: inpainter.inpaint(photo)["output"]
    if model == "edgeconnect":
        net = _import_from(peers.edgeconnect, "src.networks").EdgeGenerator(use_spectral_norm=True)
        gray = to_gray(corrupted)
        x = torch.cat([gray * (1 - mask), edge * (1 - mask), mask], dim=1)
        return net, lambda: net(x)
    if model == "deepfill":
        net = _import_from(peers.deepfill, "model.networks").Generator(cnum_in=5, cnum=48, return_flow=False)
        image = corrupted * 2 - 1
        x = torch.cat([image * (1 - mask), torch.ones_like(mask), mask], dim=1)
        return net, lambda: net(x, mask)[1]
    if model == "unet":
        net = _import_from(peers.unet, "unet").UNet(3, 1)
        return net, lambda: net(corrupted)
    if model == "chain":
        unet = _import_from(peers.unet, "unet").UNet(3, 1).eval()
        edge_g = _import_from(peers.edgeconnect, "src.networks").EdgeGenerator(use_spectral_norm=True).eval()
        deepfill = _import_from(peers.deepfill, "model.networks").Generator(cnum_in=5, cnum=48).eval()
        photo = _damaged_photo(size)

        def chain() -> torch.Tensor:
            hole = (torch.sigmoid(unet(photo)) > 0.5).float()
            gray = to_gray(photo)
            edges = _canny_as_edgeconnect(gray)
            edge_g(torch.cat([gray * (1 - hole), edges * (1 - hole), hole], dim=1))
            image = photo * 2 - 1
            x = torch.cat([image * (1 - hole), torch.ones_like(hole), hole], dim=1)
            refined = deepfill(x, hole)[1]
            return ((image * (1 - hole) + refined * hole) + 1) / 2

        return None, chain
    raise ConfigError(f"unknown model {model!r}")


def _shipped_mpn_width() -> float:
    from pipeline.model import SHIPPED_MODEL, load_pipeline

    return float(load_pipeline(SHIPPED_MODEL).mpn.hparams.generator["width_mult"])


def measure(model: str, mode: str, peers: dict, size: int, train_batch: int, warmup: int, repeats: int, threads):
    """One measurement, in the worker process: seconds per call (median of ``repeats``) and, for
    the forward, the parameters and FLOPs."""
    from pipeline.benchmarking.measure import count_flops, time_calls

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    batch = 1 if mode == "forward" else train_batch
    net, call = build(model, OmegaConf.create(peers), batch, size)
    result: dict = {"model": model, "mode": mode, "batch": batch, "size": size}
    if net is not None:
        result["parameters"] = sum(p.numel() for p in net.parameters())
    if mode == "forward":
        if net is not None:  # (FlopCounterMode's module hooks fail on parameters that want gradients here)
            net.eval().requires_grad_(False)

        def step():
            with torch.inference_mode():
                return call()

        result["flops"] = count_flops(step)[0] if net is not None else None
    else:
        net.train()

        def step():
            call().float().mean().backward()
            net.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    seconds = time_calls(step, repeats, torch.device("cpu"))
    result["seconds"] = statistics.median(seconds)
    result["all_seconds"] = seconds
    return result


def _in_fresh_process(*args) -> dict:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, *args).result()


def _chosen_pairs(cfg: DictConfig) -> list[Pair]:
    peers = {name: cfg.peers.get(name) for name in ("edgeconnect", "deepfill", "unet")}
    for name, path in peers.items():
        if path is not None and not Path(str(path)).is_dir():
            raise ConfigError(f"peers.{name}: {path} is not a folder (a checkout of the peer's repository)")
    chosen = [p for p in PAIRS if all(peers.get(n) for n in ((p.peer,) if isinstance(p.peer, str) else p.peer))]
    if not chosen:
        raise ConfigError("no peer checkout given: set peers.edgeconnect, peers.deepfill and/or peers.unet")
    wanted = list(cfg.get("only") or [])
    return [p for p in chosen if not wanted or p.ours in wanted]


def run(cfg: DictConfig, out: Path) -> dict:
    pairs = _chosen_pairs(cfg)
    peers = {k: (str(Path(str(v)).resolve()) if v else None) for k, v in cfg.peers.items()}
    args = (peers, int(cfg.size), int(cfg.train_batch), int(cfg.warmup), int(cfg.repeats), cfg.threads)
    settings = OmegaConf.to_container(cfg, resolve=True)
    results: dict = {"settings": {**settings, "peers": peers}, "rows": []}
    for pair in pairs:
        for mode in pair.modes:
            rounds = []
            for r in range(int(cfg.rounds)):
                order = (pair.ours, pair.theirs) if r % 2 == 0 else (pair.theirs, pair.ours)
                got = {model: _in_fresh_process(model, mode, *args) for model in order}
                rounds.append(got)
                ratio = got[pair.ours]["seconds"] / got[pair.theirs]["seconds"]
                console.print(
                    f"{pair.name:<62} {mode:<7} round {r + 1}: ours {fmt_seconds(got[pair.ours]['seconds'])}, "
                    f"theirs {fmt_seconds(got[pair.theirs]['seconds'])}, ratio {ratio:.2f}"
                )
            ours = [g[pair.ours] for g in rounds]
            theirs = [g[pair.theirs] for g in rounds]
            row = {
                "pair": pair.name,
                "mode": mode,
                "batch": ours[0]["batch"],
                "ours": {"model": pair.ours, **_summary(ours)},
                "theirs": {"model": pair.theirs, **_summary(theirs)},
                "ratio": statistics.median(o["seconds"] / t["seconds"] for o, t in zip(ours, theirs, strict=True)),
            }
            results["rows"].append(row)
            write_json(results, out)
    print_table(results["rows"])
    write_json(results, out)
    console.print(f"results: {out}")
    return results


def _summary(runs: list[dict]) -> dict:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "rounds": [r["seconds"] for r in runs],
        "parameters": runs[0].get("parameters"),
        "flops": runs[0].get("flops"),
    }


def print_table(rows: list[dict]) -> None:
    from rich.table import Table

    table = Table(title="Ours against the peers' code (ratio < 1: ours faster; median over rounds)")
    for column in ("comparison", "mode", "batch", "ours", "theirs", "ratio", "params ours / theirs", "GFLOP"):
        table.add_column(column)
    for row in rows:
        o, t = row["ours"], row["theirs"]
        params = f"{o['parameters'] / 1e6:.2f} M / {t['parameters'] / 1e6:.2f} M" if o["parameters"] else "–"
        flops = f"{o['flops'] / 1e9:.1f} / {t['flops'] / 1e9:.1f}" if o.get("flops") and t.get("flops") else "–"
        table.add_row(
            row["pair"], row["mode"], str(row["batch"]), fmt_seconds(o["seconds"]), fmt_seconds(t["seconds"]),
            f"{row['ratio']:.2f}", params, flops,
        )  # fmt: skip
    console.print(table)
