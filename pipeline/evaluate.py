"""``python -m pipeline.evaluate``: compare inpainting methods on identical inputs, scored per hole-ratio bucket.

Usage::

    python -m pipeline.evaluate checkpoint=MODEL [mode=blind|masked] [data=...]
    python -m pipeline.evaluate method=<baseline> [mask_checkpoint=MODEL] [mode=blind|masked] [data=...]

- **Test pairs** (:mod:`pipeline.evaluation.pairs`): every image of the data config's test split
  (``data=``, exactly as in training) is paired with ``masks_per_bucket`` masks of each bucket of
  the fixed test-mask set (:class:`data.test_masks.BucketedTestMasks`: ``mask_set=DIR`` as written
  by ``python -m data.test_masks``, else generated at ``data.size`` from ``seed``) and corrupted by
  ``corruption`` with a generator seeded by ``(seed, image, mask)``. The inputs depend on nothing
  else, so every method sees bit-identical inputs; ``metrics.json`` records their SHA-256
  (``inputs_sha256``) to prove it.
- **Methods** (:mod:`pipeline.evaluation.methods`): ``ours`` (``checkpoint=``,
  :class:`~pipeline.inference.BlindInpainter`) or a baseline of :mod:`pipeline.baselines`.
  ``mode=blind``: ours finds the mask with its MPN; a baseline fills the mask that the model of
  ``mask_checkpoint=`` finds (its MPN, then its mask rule), so ``method=telea mode=blind
  mask_checkpoint=M`` and ``checkpoint=M`` differ only in the filling. ``mode=masked``: ours gets
  the true (soft) mask; a baseline, which only takes hard holes, gets the true mask hardened by
  :meth:`BlindPipeline.mask_rule <pipeline.model.BlindPipeline.mask_rule>`.
- **Mask rule**: the model's stored settings, each overridden by ``pipeline.hole_threshold=``,
  ``pipeline.dilate=`` or ``pipeline.edge_sigma=`` (``conf/evaluate.yaml``; null keeps the stored
  value); without a model (a baseline in masked mode), :class:`~pipeline.model.BlindPipeline`'s
  defaults with the same overrides.
- **Metrics** (:mod:`pipeline.evaluation.metrics`, from :mod:`common.metrics`, per pair, then the
  mean over the pairs of each bucket): PSNR, SSIM, L1 of the whole image and inside the hole (the
  true mask); in blind mode the MPN's soft mask against the true one (IoU, BCE, MAE, as the MPN's
  validation); for ours, precision and recall of the edges inside the true hole (``mask > 0.5``)
  against Canny of the truth (sigma ``edge_sigma``), pooled over the bucket's pairs as EdgeConnect
  pools them. LPIPS (per pair) and FID (per bucket) only with weights given by path
  (``lpips_weights=``, ``fid_weights=``): nothing is downloaded.
- **Buckets**: by the hole ratio of the *true* mask (``mask > 0.5``), which the corruption may
  change (soft borders, text that replaces the hole): ``1-10%`` ... ``50-60%`` as the mask set's
  buckets, plus ``<1%`` / ``>=60%`` rows when pairs fall outside them.
- **Output** (:mod:`pipeline.evaluation.report`) in the run folder (``runs/evaluate/<time>/``,
  ``hydra.run.dir=`` to choose): a table on the terminal, ``metrics.json`` (scores, method, mode,
  checkpoints, data, seed, counts, time per image), ``metrics.csv`` (one row per bucket and
  ``all``), ``pairs.csv`` (every pair's scores, for paired comparisons) and ``worst_best.png`` (the
  worst and best pairs by hole PSNR, worst first).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.errors import cli
from pipeline.evaluation.methods import build_method, check_config
from pipeline.evaluation.metrics import PerceptualMetrics, pair_metrics, summarize
from pipeline.evaluation.pairs import EvaluationPairs, assign_bucket, bucket_labels, build_test_pairs
from pipeline.evaluation.report import ExtremeCases, console, describe_mask_set, print_table, write_report
from pipeline.inference import resolve_device

log = logging.getLogger("pipeline.evaluate")


def pair_rows(batch: dict, pairs: EvaluationPairs, bucket: list[str], values: dict[str, torch.Tensor]) -> list[dict]:
    """One ``pairs.csv`` row per pair of ``batch``: where it came from, its ``bucket`` (one label per
    pair), its true hole ratio and its scores (``values`` name -> ``(B,)``)."""
    rows = []
    for i, pair in enumerate(batch["pair"].tolist()):
        image_index, mask_index = pairs.pairs[pair]
        rows.append(
            {
                "pair": pair,
                "image": image_index,
                "image_name": pairs.images.describe(image_index),
                "mask_file": pairs.masks.filename(mask_index),
                "bucket": bucket[i],
                "hole_ratio": batch["hole_ratio"][i].item(),
                **{k: v[i].item() for k, v in values.items()},
            }
        )
    return rows


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate ``cfg.method`` in ``cfg.mode`` on the test pairs; write the report files into
    ``run_dir`` and return the report (what ``metrics.json`` holds)."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    method = build_method(cfg, device)
    pairs = build_test_pairs(cfg)
    buckets = pairs.masks.buckets
    labels = bucket_labels(buckets)
    perceptual = PerceptualMetrics(cfg, device)
    loader = DataLoader(pairs, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    rows, cases, digest, seconds = [], ExtremeCases(cfg.grid_rows), hashlib.sha256(), 0.0
    log.info("%s (%s): %d test pairs of %d images", cfg.method, cfg.mode, len(pairs), len({i for i, _ in pairs.pairs}))

    for batch in tqdm(loader, desc=f"evaluate {cfg.method} ({cfg.mode})", unit="batch", disable=not cfg.progress):
        image, corrupted, true_mask = batch["image"], batch["corrupted"], batch["mask"]
        digest.update(corrupted.numpy().tobytes())
        digest.update(true_mask.numpy().tobytes())
        start = time.perf_counter()
        result = method(corrupted, true_mask)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        result = {k: v.float().cpu() for k, v in result.items()}

        values = pair_metrics(
            image,
            result["output"],
            true_mask,
            method.mask_prediction(corrupted),
            result.get("edges"),
            method.pipeline.edge_sigma,
        )
        lpips = perceptual.lpips_values(result["output"], image)
        if lpips is not None:
            values["lpips"] = lpips
        bucket = [assign_bucket(r, buckets) for r in batch["hole_ratio"].tolist()]
        perceptual.update_fid(result["output"], image, bucket)
        rows.extend(pair_rows(batch, pairs, bucket, values))
        columns = {"corrupted": corrupted, "true mask": true_mask}
        if "mask" in result:
            columns["predicted mask"] = result["mask"]
        cases.add(values["psnr_hole"], batch["pair"], {**columns, "output": result["output"], "truth": image})

    summary = summarize(rows, labels)
    for label, score in perceptual.fid_scores().items():
        summary[label]["fid"] = score
    report = {
        "method": cfg.method,
        "mode": cfg.mode,
        "checkpoint": str(Path(cfg.checkpoint).expanduser().resolve()) if cfg.checkpoint else None,
        "mask_checkpoint": str(Path(cfg.mask_checkpoint).expanduser().resolve()) if cfg.mask_checkpoint else None,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "corruption": OmegaConf.to_container(cfg.corruption, resolve=True),
        "seed": cfg.seed,
        "mask_set": describe_mask_set(cfg, pairs.masks),
        "masks_per_bucket": cfg.masks_per_bucket,
        "pipeline": method.pipeline.settings(),
        "num_images": len({r["image"] for r in rows}),
        "num_pairs": len(rows),
        "inputs_sha256": digest.hexdigest(),
        "device": device,
        "time_per_image_s": seconds / max(len(rows), 1),
        "method_seconds": seconds,
        "skipped": perceptual.skipped,
        "buckets": summary,
        "grid": [{"pair": pair, "psnr_hole": score} for score, pair, _ in cases.cases],
    }

    written = write_report(run_dir, report, rows, cases)
    print_table(
        f"{cfg.method} ({cfg.mode}) on {len(rows)} test pairs, {report['time_per_image_s'] * 1000:.1f} ms per image",
        summary,
        perceptual.skipped,
    )
    console.print(f"results: {run_dir} ({', '.join(written)})")
    return report


@hydra.main(config_path="pkg://conf", config_name="evaluate", version_base="1.3")
@cli
def main(cfg: DictConfig) -> None:
    evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
