"""The evaluation pass: every method (and baseline) on every test pair, scored, summarized and
written to the run folder (what ``python -m pipeline.evaluate`` runs)."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.ops import to_native
from data.datamodule import default_workers
from pipeline.evaluation.denoise import evaluate_denoise
from pipeline.evaluation.external import Predictions, export_pairs
from pipeline.evaluation.methods import PREDICTIONS, build_baselines, build_method, check_config
from pipeline.evaluation.metrics import PSNR_CAP, PerceptualMetrics, pair_metrics, summarize
from pipeline.evaluation.pairs import EvaluationPairs, build_test_pairs, test_images
from pipeline.evaluation.report import ExtremeCases, console, print_table, write_report
from pipeline.inference.inpainter import resolve_device
from pipeline.model import BlindPipeline, given_settings

log = logging.getLogger("pipeline.evaluate")


def pair_rows(
    batch: dict, pairs: EvaluationPairs, method: str, groups: list[tuple[str, ...]], values: dict[str, torch.Tensor]
) -> list[dict]:
    """One ``pairs.csv`` row per pair of ``batch`` for ``method``: where the pair came from, its
    hole-ratio ``bucket`` (the report row of ``groups`` that is one; none for a clean image), its
    true hole ratio and its scores (``values``: name -> ``(B,)``)."""
    rows = []
    for i, pair in enumerate(batch["pair"].tolist()):
        bucket = next((g for g in groups[i] if g in pairs.bucket_rows), None)
        rows.append(
            {
                "pair": pair,
                "method": method,
                **pairs.describe(pair),
                "bucket": bucket,
                "hole_ratio": batch["hole_ratio"][i].item(),
                **{k: v[i].item() for k, v in values.items()},
            }
        )
    return rows


def _timed(fn, *args, cuda: bool = False) -> tuple[dict, float]:
    """``fn(*args)`` with its outputs as float32 CPU tensors, and the seconds it took."""
    start = time.perf_counter()
    result = fn(*args)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {k: v.float().cpu() for k, v in result.items()}, seconds


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate ``cfg.method`` in ``cfg.mode``, and the ``cfg.baselines`` beside it, on the test
    pairs of ``cfg.protocol``; write the report files into ``run_dir`` and return the report (what
    ``metrics.json`` holds)."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    if cfg.protocol == "denoise":
        return evaluate_denoise(cfg, run_dir, build_method(cfg, device).model, test_images(cfg)[0])
    pairs = build_test_pairs(cfg)
    if cfg.export_pairs:  # the holes a baseline (and method=predictions) gets in mode=masked
        folder = Path(cfg.export_pairs).expanduser()
        rule = BlindPipeline(**given_settings(cfg.pipeline))
        count = export_pairs(pairs, rule, folder, cfg.batch_size, cfg.progress)
        console.print(f"{count} test pairs written to {folder} (images/ + masks/, lama/, truth/, pairs.json)")
        return {"exported": count, "folder": str(folder.resolve()), "protocol": cfg.protocol}
    method = build_method(cfg, device)
    baselines = build_baselines(cfg, method)
    if method.name == PREDICTIONS:
        method.predictions = Predictions(Path(cfg.predictions).expanduser(), pairs)
    perceptual = PerceptualMetrics(cfg, device)
    workers = cfg.data.num_workers if cfg.data.num_workers is not None else default_workers()  # data=folder: null
    loader = DataLoader(pairs, batch_size=cfg.batch_size, shuffle=False, num_workers=workers)
    names = [method.label, *(b.label for b in baselines)]
    rows: dict[str, list[dict]] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    groups: list[tuple[str, ...]] = []
    cases, digest = ExtremeCases(cfg.grid_rows), hashlib.sha256()
    settings = method.pipeline.settings()
    log.info(
        "%s (%s) and %d baseline run(s), protocol %s: %d test pairs of %d images",
        method.label,
        cfg.mode,
        len(baselines),
        cfg.protocol,
        len(pairs),
        len({p[0] for p in pairs.pairs}),
    )

    for batch in tqdm(loader, desc=f"evaluate {method.label} ({cfg.mode})", unit="batch", disable=not cfg.progress):
        image, corrupted, true_mask = batch["image"], batch["corrupted"], batch["mask"]
        digest.update(corrupted.numpy().tobytes())
        digest.update(true_mask.numpy().tobytes())
        batch_groups = [pairs.groups(n, r) for n, r in zip(batch["pair"].tolist(), batch["hole_ratio"].tolist())]
        groups.extend(batch_groups)
        if method.native_size:  # a 64² or 32² network: every method is scored on the pairs resized to its size
            image = to_native(image, method.native_size)
            corrupted, true_mask = to_native(corrupted, method.native_size, true_mask)

        cuda = device == "cuda" and method.is_ours
        result, took = _timed(method, corrupted, true_mask, batch["pair"].tolist(), cuda=cuda)
        seconds[method.label] += took
        predicted = method.mask_prediction(corrupted)
        results = {method.label: (result, predicted)}
        for baseline in baselines:
            output, took = _timed(baseline, corrupted, true_mask, result["mask"])
            seconds[baseline.label] += took
            results[baseline.label] = (output, predicted if baseline.source == "own" else None)

        for name, (output, mpn_mask) in results.items():
            values = pair_metrics(
                image,
                output["output"],
                corrupted,
                true_mask,
                output["mask"],
                mpn_mask,
                settings["hole_threshold"],
                output.get("edges"),
                settings["edge_sigma"],
            )
            lpips = perceptual.lpips_values(output["output"], image)
            if lpips is not None:
                values["lpips"] = lpips
            perceptual.update_fid(name, output["output"], image, batch_groups)
            rows[name].extend(pair_rows(batch, pairs, name, batch_groups, values))
            if name == method.label:
                columns = {"corrupted": corrupted, "true mask": true_mask, "mask used": output["mask"]}
                cases.add(values["psnr_hole"], batch["pair"], {**columns, "output": output["output"], "truth": image})

    labels = pairs.labels
    per_method = {name: summarize(rows[name], labels, groups) for name in names}
    for name, fids in perceptual.fid_scores().items():
        for label, score in fids.items():
            per_method[name][label]["fid"] = score
    scores = {label: {n: per_method[n][label] for n in names if label in per_method[n]} for label in labels}
    scores = {label: methods for label, methods in scores.items() if methods}
    n_pairs = len(pairs)
    report = {
        "method": method.label,
        "mode": cfg.mode,
        "native_size": method.native_size,  # the pairs were resized to it (every row's scores are at this size)
        "protocol": cfg.protocol,
        "baselines": [b.label for b in baselines],
        "checkpoint": str(Path(cfg.checkpoint).expanduser().resolve()) if cfg.checkpoint else None,
        "mask_checkpoint": str(Path(cfg.mask_checkpoint).expanduser().resolve()) if cfg.mask_checkpoint else None,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "seed": cfg.seed,
        **pairs.settings(),
        "pipeline": settings,
        "num_images": len({r["image"] for r in rows[method.label]}),
        "num_pairs": n_pairs,
        "inputs_sha256": digest.hexdigest(),
        "device": device,
        "time_per_image_s": seconds[method.label] / max(n_pairs, 1),
        "method_seconds": seconds[method.label],
        "seconds_per_image": {name: s / max(n_pairs, 1) for name, s in seconds.items()},
        "psnr_cap_db": PSNR_CAP,
        "skipped": perceptual.skipped,
        "sections": pairs.sections,
        "scores": scores,
        "grid": [{"pair": pair, "psnr_hole": score} for score, pair, _ in cases.cases],
    }

    # pairs.csv: pair-major, the methods in order within a pair
    written = write_report(run_dir, report, [rows[name][i] for i in range(n_pairs) for name in names], cases)
    ms = report["time_per_image_s"] * 1000
    title = f"{method.label} ({cfg.mode}, protocol {cfg.protocol}) on {n_pairs} test pairs, {ms:.1f} ms per image"
    print_table(title, scores, pairs.sections, perceptual.skipped)
    console.print(f"results: {run_dir} ({', '.join(written)})")
    return report
