"""The report: the worst and best pairs, the files of the run folder and the table on the terminal."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from common.images import labelled_grid, save_grid
from pipeline.evaluation.metrics import PSNR_CAP

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
    """``rows`` as a CSV file with a header row of every key (in order of appearance; a row without
    one leaves its cell empty); returns ``path``."""
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_report(run_dir: Path, report: dict, rows: list[dict], cases: ExtremeCases) -> list[str]:
    """Write ``metrics.json`` (``report``), ``metrics.csv`` (one line per report row and method, from
    ``report["scores"]``: row -> method -> scores), ``pairs.csv`` (``rows``: one per pair and method)
    and, when there are cases, ``worst_best.png`` into ``run_dir``; returns the names of the files written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(_finite(report), indent=1))
    lines = [
        {"row": label, "method": method, **scores}
        for label, methods in report["scores"].items()
        for method, scores in methods.items()
    ]
    write_csv(run_dir / "metrics.csv", lines)
    write_csv(run_dir / "pairs.csv", rows)
    written = ["metrics.json", "metrics.csv", "pairs.csv"]
    grid = cases.grid()
    if grid is not None:
        save_grid(grid, run_dir / "worst_best.png")
        written.append("worst_best.png")
    return written


# -- the terminal ---------------------------------------------------------------------------------


# The terminal's columns, in order (metrics.json and metrics.csv have every score).
HEADERS = {
    "pairs": "pairs",
    "hole_ratio": "hole",
    "psnr": "PSNR",
    "psnr_input": "PSNR in",
    "ssim": "SSIM",
    "psnr_hole": "PSNR hole",
    "ssim_hole": "SSIM hole",
    "final_iou": "IoU",
    "mask_iou": "MPN IoU",
    "flagged": "flagged",
    "flagged_max": "flag max",
    "soft_mask": "mean m",
    "edge_precision_hole": "edge P",
    "edge_recall_hole": "edge R",
    "lpips": "LPIPS",
    "fid": "FID",
}
FORMATS = {
    "pairs": "{:d}",
    "hole_ratio": "{:.1%}",
    "psnr": "{:.2f}",
    "psnr_input": "{:.2f}",
    "psnr_hole": "{:.2f}",
    "flagged": "{:.1%}",
    "flagged_max": "{:.1%}",
    "fid": "{:.2f}",
}
NOTE = (
    f"PSNR is capped at {PSNR_CAP:g} dB (an unchanged clean photo would be infinite). PSNR in: the damaged "
    "input's. IoU: the mask used (> 0.5, after dilation) vs the true hole (m > 0.5); MPN IoU: m̂ > hole_threshold "
    "(before dilation) vs the true hole. flagged: share of pixels the mask used marks (> 0.5), mean over images "
    "(flag max: the largest); mean m: the mask's mean value."
)


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return FORMATS.get(column, "{:.4f}").format(value)


def print_table(title: str, scores: dict[str, dict[str, dict]], sections: list[list[str]], skipped: dict) -> None:
    """``scores`` (report row -> method -> scores) as one table: for each report row one line per
    method, ruled off from the next row when there are several methods, else at the end of each of
    ``sections`` (lists of report rows); then what the columns mean and why LPIPS / FID were skipped."""
    present = {column for methods in scores.values() for row in methods.values() for column in row}
    columns = [column for column in HEADERS if column in present]
    table = Table(title=title)
    table.add_column("row")
    table.add_column("method")
    for column in columns:
        table.add_column(HEADERS[column], justify="right")
    shown = [[label for label in section if label in scores] for section in sections]
    ends = {section[-1] for section in shown if section}
    labels = [label for section in shown for label in section]
    for label in labels:
        methods = list(scores[label].items())
        for i, (method, row) in enumerate(methods):
            rule = i == len(methods) - 1 and (len(methods) > 1 or label in ends) and label != labels[-1]
            table.add_row(label if i == 0 else "", method, *(_cell(row, c) for c in columns), end_section=rule)
    console.print(table)
    console.print(NOTE)
    for name, reason in skipped.items():
        console.print(f"{name.upper()} skipped: {reason}")
