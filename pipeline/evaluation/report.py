"""The report: the worst and best pairs, the files of the run folder and the table on the terminal."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from common.images import labelled_grid, save_grid
from data.test_masks import BucketedTestMasks
from pipeline.evaluation.metrics import OVERALL

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


# -- the worst and best pairs ---------------------------------------------------------------------


class ExtremeCases:
    """The ``k`` pairs with the lowest and the ``k`` with the highest hole PSNR seen so far."""

    def __init__(self, k: int):
        self.k, self.cases = k, []

    def add(self, scores: torch.Tensor, pairs: torch.Tensor, columns: dict[str, torch.Tensor]) -> None:
        """``scores`` and ``pairs`` ``(B,)``; ``columns`` name -> ``(B, C, H, W)`` images to show."""
        if self.k == 0:
            return
        for i, (score, pair) in enumerate(zip(scores.tolist(), pairs.tolist())):
            if not math.isnan(score):
                self.cases.append((score, pair, {name: images[i] for name, images in columns.items()}))
        self.cases.sort(key=lambda case: case[:2])
        if len(self.cases) > 2 * self.k:
            self.cases = self.cases[: self.k] + self.cases[-self.k :]

    def grid(self) -> torch.Tensor | None:
        """One row per kept pair, worst first: ``(3, H', W')``, or None when there is none."""
        if not self.cases:
            return None
        names = list(self.cases[0][2])
        return labelled_grid({n: torch.stack([c[2][n] for c in self.cases]) for n in names}, max_rows=len(self.cases))


# -- files ----------------------------------------------------------------------------------------


def _finite(value):
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_csv(path: Path, rows: list[dict]) -> Path:
    """``rows`` (dicts with the keys of the first) as a CSV file with a header row; returns ``path``."""
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_report(run_dir: Path, report: dict, rows: list[dict], cases: ExtremeCases) -> list[str]:
    """Write ``metrics.json`` (``report``), ``metrics.csv`` (one row per bucket and ``all``),
    ``pairs.csv`` (``rows``) and, when there are cases, ``worst_best.png`` into ``run_dir``;
    returns the names of the files written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(_finite(report), indent=1))
    write_csv(run_dir / "metrics.csv", [{"bucket": label, **row} for label, row in report["buckets"].items()])
    write_csv(run_dir / "pairs.csv", rows)
    written = ["metrics.json", "metrics.csv", "pairs.csv"]
    grid = cases.grid()
    if grid is not None:
        save_grid(grid, run_dir / "worst_best.png")
        written.append("worst_best.png")
    return written


# -- the terminal ---------------------------------------------------------------------------------


HEADERS = {
    "pairs": "pairs",
    "hole_ratio": "hole",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "l1": "L1",
    "psnr_hole": "PSNR hole",
    "ssim_hole": "SSIM hole",
    "l1_hole": "L1 hole",
    "mask_iou": "mask IoU",
    "mask_bce": "mask BCE",
    "mask_mae": "mask MAE",
    "edge_precision_hole": "edge P hole",
    "edge_recall_hole": "edge R hole",
    "lpips": "LPIPS",
    "fid": "FID",
}
FORMATS = {"pairs": "{:d}", "hole_ratio": "{:.1%}", "psnr": "{:.2f}", "psnr_hole": "{:.2f}", "fid": "{:.2f}"}


def print_table(title: str, summary: dict[str, dict], skipped: dict[str, str]) -> None:
    """The summary as a table, one row per bucket and ``all`` last, then why LPIPS / FID were skipped."""
    table = Table(title=title)
    columns = list(summary[OVERALL])
    table.add_column("bucket")
    for column in columns:
        table.add_column(HEADERS[column], justify="right")
    for label, row in summary.items():
        cells = [FORMATS.get(c, "{:.4f}").format(row[c]) if c in row and row[c] is not None else "-" for c in columns]
        table.add_row(label, *cells, end_section=label == list(summary)[-2])
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"{name.upper()} skipped: {reason}")


def describe_mask_set(cfg: DictConfig, masks: BucketedTestMasks) -> dict:
    """The mask set for ``metrics.json``: its folder (None when generated) and its parameters."""
    return {"path": str(Path(cfg.mask_set).expanduser().resolve()) if cfg.mask_set else None, **masks.params()}
