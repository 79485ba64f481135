"""The benchmark's output: a progress line per measurement, rich tables at the end, and the JSON.

Everything here reads the result rows :class:`pipeline.benchmarking.measure.Benchmark` builds; none of
it measures anything.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table

# Wide when piped (rich would wrap at 80 columns), the terminal's width otherwise.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)

TRAINING_COLUMNS = (
    "stage",
    "network",
    "variant",
    "batch",
    "img/s",
    "step median",
    "min–max",
    "GFLOP/img",
    "GFLOP/s",
    "% peak",
    "peak mem +",
)
INFERENCE_COLUMNS = (
    "stage",
    "variant",
    "size",
    "img/s",
    "latency median",
    "min–max",
    "GFLOP/img",
    "GFLOP/s",
    "% peak",
    "peak mem +",
    "max|Δ| vs fp32",
)
PHOTO_COLUMNS = (
    "photos",
    "how",
    "size",
    "damage",
    "changed",
    "img/s",
    "median",
    "min–max",
    "% peak",
    "peak mem",
    "mem +",
)
DATA_COLUMNS = ("stage", "batch", "workers", "edges", "samples/s", "fastest step img/s", "headroom")
TEXT_COLUMNS = ("stage", "network", "variant", "edges")


def warn(message: str) -> None:
    err_console.print(f"[yellow]warning:[/] {message}")


def write_json(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


# -- formatting -----------------------------------------------------------------------------------


def fmt_seconds(s: float) -> str:
    return f"{s * 1e3:,.1f} ms" if s < 1 else f"{s:,.2f} s"


def fmt_bytes(n: int | None) -> str:
    return "–" if n is None else f"{n / 2**20:,.0f} MiB"


def fmt_flops(n: float) -> str:
    return f"{n / 1e9:,.2f} G"


def fmt_optional(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def fmt_range(timing: dict) -> str:
    return f"{fmt_seconds(timing['min'])}–{fmt_seconds(timing['max'])}"


# -- progress lines -------------------------------------------------------------------------------


def print_machine(machine: dict) -> None:
    cuda = f", CUDA {machine['cuda']}" if machine["cuda"] else ""
    console.print(
        f"[bold]{machine['name']}[/] ({machine['device']}, {machine['threads']} threads), torch {machine['torch']}"
        f"{cuda}, fast bf16: {'yes' if machine['bf16_fast'] else 'no'}"
    )


def print_peak(label: str, entry: dict) -> None:
    """One line per matmul peak (an entry of ``results["peak"]``)."""
    console.print(
        f"peak      {label:<13} matmul {entry['n']}²: {entry['flops_per_s'] / 1e9:,.1f} GFLOP/s "
        f"(median {fmt_seconds(entry['time_s']['median'])})"
    )


def print_progress(part: str, row: dict) -> None:
    """One line per finished measurement (a row of ``results[part]``)."""
    t = row["time_s"]
    what = f"{row['stage']} {row.get('network', '')}".strip()
    shape = f"{row['batch_size']}×{row['size']}²" if row.get("batch_size", 1) > 1 else f"{row['size']}²"
    rate = f"{row['images_per_s']:,.2f} img/s" if part == "train" else f"latency {fmt_seconds(t['median'])}"
    if part == "pipeline" and row.get("batch_size", 1) > 1:
        rate += f", {row['images_per_s']:,.1f} img/s"
    diff, mean = row.get("max_abs_diff_vs_fp32"), row.get("mean_abs_diff_vs_fp32")
    console.print(
        f"{part:<9} {what:<19} {row['variant']:<13} {shape:<9} {rate} "
        f"[dim](min {fmt_seconds(t['min'])}, max {fmt_seconds(t['max'])}), "
        f"{row['flops_per_s'] / 1e9:,.1f} GFLOP/s, {fmt_optional(row['pct_of_peak'], '.1f')}% of peak, "
        f"mem +{fmt_bytes(row['peak_memory_increase_bytes'])}"
        + (f", |Δ| vs fp32 max {diff:.2e} mean {mean:.2e}" if diff is not None and row["variant"] != "fp32" else "")
        + "[/]"
    )


def _photo_cells(row: dict) -> list[str]:
    t = row["time_s"]
    height, width = row["size"]
    megapixels = f" ({height * width / 1e6:.1f} Mpx)" if height * width > 1e6 else ""
    return [
        row["kind"],
        row["what"],
        f"{width}×{height}{megapixels}",
        fmt_optional(row.get("damage_pct"), ".1f") + ("%" if row.get("damage_pct") is not None else ""),
        fmt_optional(row.get("changed_pct"), ".1f") + ("%" if row.get("changed_pct") is not None else ""),
        f"{row['images_per_s']:,.2f}",
        fmt_seconds(t["median"]),
        fmt_range(t),
        fmt_optional(row["pct_of_peak"], ".1f"),
        fmt_bytes(row["peak_memory_bytes"]),
        fmt_bytes(row["peak_memory_increase_bytes"]),
    ]


def print_photo(row: dict) -> None:
    """One line per photo measurement (a row of ``results["photos"]``)."""
    cells = dict(zip(PHOTO_COLUMNS, _photo_cells(row), strict=True))
    console.print(
        f"photos    {cells['photos']:<6} {cells['how']:<19} {cells['size']:<22} {cells['img/s']} img/s, "
        f"median {cells['median']} [dim](damage {cells['damage']}, changed {cells['changed']}, "
        f"{cells['% peak']}% of peak, peak RSS {cells['peak mem']}, +{cells['mem +']})[/]"
    )


def photos_table(rows: list[dict]) -> Table:
    table = _table("Photos as users run them (shipped model, fp32)", PHOTO_COLUMNS)
    for row in rows:
        table.add_row(*_photo_cells(row))
    return table


def print_data(row: dict) -> None:
    console.print(
        f"data      {row['stage']:<19} {'':<13} {row['batch_size']}×{row['size']}²  "
        f"{row['samples_per_s']:,.1f} samples/s [dim]({row['workers']} workers, edges {row['edges']})[/]"
    )


# -- tables ---------------------------------------------------------------------------------------


def _table(title: str, columns: tuple[str, ...]) -> Table:
    """An empty table: names left-aligned, numbers right-aligned."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right")
    return table


def machine_table(results: dict) -> Table:
    m = results["machine"]
    table = Table(title="Machine", show_header=False)
    table.add_row("device", f"{m['name']} ({m['device']})")
    table.add_row("threads", str(m["threads"]))
    table.add_row("torch / CUDA", f"{m['torch']} / {m['cuda'] or '–'}")
    table.add_row("fast bf16", f"{'yes' if m['bf16_fast'] else 'no'} ({m['bf16_check']})")
    for label, entry in results["peak"].items():
        t = entry["time_s"]
        table.add_row(
            f"matmul peak {label}",
            f"{entry['flops_per_s'] / 1e9:,.1f} GFLOP/s ({entry['n']}², median "
            f"{fmt_seconds(t['median'])}, min {fmt_seconds(t['min'])}, max {fmt_seconds(t['max'])})",
        )
    for label, entry in results["peak"].items():
        if len(entry.get("by_size", {})) > 1:
            sizes = ", ".join(f"{n}²: {f / 1e9:,.0f}" for n, f in entry["by_size"].items())
            table.add_row(f"matmul {label} by size", f"{sizes} GFLOP/s (the peak is the best)")
    table.add_row("memory", results["memory_method"])
    return table


def gan_iterations(rows: list[dict]) -> Iterator[tuple[str, str, float, int]]:
    """``(stage, variant, seconds, batch)`` of a full GAN iteration: the sum of the G and D medians."""
    by_key: dict[tuple[str, str], dict[str, dict]] = {}
    for row in rows:
        by_key.setdefault((row["stage"], row["variant"]), {})[row["network"]] = row
    for (stage, variant), nets in by_key.items():
        if {"generator", "discriminator"} <= nets.keys():
            total = nets["generator"]["time_s"]["median"] + nets["discriminator"]["time_s"]["median"]
            yield stage, variant, total, nets["generator"]["batch_size"]


def training_table(rows: list[dict]) -> Table:
    table = _table("Training step (forward + loss + backward + Adam step)", TRAINING_COLUMNS)
    for row in rows:
        t = row["time_s"]
        table.add_row(
            row["stage"],
            row["network"],
            row["variant"],
            f"{row['batch_size']}×{row['size']}²",
            f"{row['images_per_s']:,.2f}",
            fmt_seconds(t["median"]),
            fmt_range(t),
            fmt_flops(row["flops_per_image"]),
            f"{row['flops_per_s'] / 1e9:,.1f}",
            fmt_optional(row["pct_of_peak"], ".1f"),
            fmt_bytes(row["peak_memory_increase_bytes"]),
        )
    for stage, variant, total, batch in gan_iterations(rows):
        table.add_row(
            stage, "G+D", variant, "", f"{batch / total:,.2f}", fmt_seconds(total), "", "", "", "", "", style="bold"
        )
    return table


def inference_table(rows: list[dict]) -> Table:
    table = _table("Inference (pipeline = MPN → Canny → EPN → IPN)", INFERENCE_COLUMNS)
    for row in rows:
        t = row["time_s"]
        table.add_row(
            row["stage"],
            row["variant"],
            f"{row.get('batch_size', 1)}×{row['size']}²",
            f"{row['images_per_s']:,.1f}",
            fmt_seconds(t["median"]),
            fmt_range(t),
            fmt_flops(row["flops_per_image"]),
            f"{row['flops_per_s'] / 1e9:,.1f}",
            fmt_optional(row["pct_of_peak"], ".1f"),
            fmt_bytes(row["peak_memory_increase_bytes"]),
            "reference" if row["variant"] == "fp32" else fmt_optional(row["max_abs_diff_vs_fp32"], ".2e"),
        )
    return table


def data_table(results: dict) -> Table:
    """Each stage's loader throughput next to the fastest training step it has to feed."""
    table = _table("Data loading (training loader alone) vs the training step", DATA_COLUMNS)
    iterations = {(r["stage"], r["variant"]): r["images_per_s"] for r in results["train"]}  # MPN: G only
    iterations.update({(stage, v): batch / s for stage, v, s, batch in gan_iterations(results["train"])})
    steps: dict[str, tuple[float, str]] = {}
    for (stage, variant), rate in iterations.items():
        steps[stage] = max(steps.get(stage, (0.0, "")), (rate, variant))
    for row in results["data"]:
        step, variant = steps.get(row["stage"], (None, ""))
        table.add_row(
            row["stage"],
            f"{row['batch_size']}×{row['size']}²",
            str(row["workers"]),
            row["edges"],
            f"{row['samples_per_s']:,.1f}",
            f"{step:,.2f} ({variant})" if step else "–",
            f"{row['samples_per_s'] / step:,.1f}×" if step else "–",
        )
    return table


def print_report(results: dict, out: Path) -> None:
    """The tables of a finished run, and where its JSON is."""
    console.print(machine_table(results))
    if results["train"]:
        console.print(training_table(results["train"]))
    if results.get("data"):
        console.print(data_table(results))
    if results["inference"] or results["pipeline"]:
        console.print(inference_table(results["inference"] + results["pipeline"]))
    if results.get("photos"):
        console.print(photos_table(results["photos"]))
    for row in results.get("startup", []):
        console.print(f"start-up, a fresh process answering --help: {row['command']}: {row['time_s']['median']:.2f} s")
    console.print(f"results: {out}")
