"""The table of a ``scripts/gpu_check.sh`` run: ``python scripts/gpu_check_report.py <out-folder>``.

Reads ``status.tsv`` (every part's exit status and seconds), each training run's ``speed.json``
(:class:`common.callbacks.TrainingSpeed`), ``inference.json`` (``pipeline.benchmark``) and the
last line of ``pytest-cuda.log``; prints Markdown. Exits 1 when a part failed or a loss was not
finite, so the check's status is this script's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mib(n) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "–"


def training_rows(out: Path, status: dict[str, tuple[int, int]]) -> list[str]:
    rows = [
        "| run | device | precision | world | optimizer steps | samples/s | peak memory | losses finite | rc | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, (rc, seconds) in status.items():
        if name == "pytest-cuda" or name.startswith("inference"):
            continue
        speed = _load(out / name / "speed.json") or {}
        rate = speed.get("samples_per_s")
        rows.append(
            f"| {name} | {speed.get('device', '–')} | {speed.get('precision', '–')} | {speed.get('world_size', '–')} "
            f"| {speed.get('optimizer_steps', '–')} | {f'{rate:,.1f}' if rate else '–'} "
            f"| {_mib(speed.get('peak_memory_bytes'))} | {speed.get('finite', '–')} | {rc} | {seconds} |"
        )
    return rows


def inference_rows(report: dict | None) -> list[str]:
    if not report:
        return ["(no inference results)"]
    cudnn = report["settings"].get("cudnn_benchmark")
    rows = [
        f"Blind pipeline (MPN → Canny → EPN → IPN), {report['machine']['name']}, torch {report['machine']['torch']}"
        + (", cuDNN autotuner on" if cudnn else "")
        + ":",
        "",
        "| model | variant | batch × size | img/s | latency median | peak memory | abs diff vs fp32: max / mean |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["pipeline"]:
        diff, mean = row.get("max_abs_diff_vs_fp32"), row.get("mean_abs_diff_vs_fp32")
        versus = "reference" if row["variant"] == "fp32" else f"{diff:.2e} / {mean:.2e}" if diff is not None else "–"
        model = row["stage"] if row["stage"] != "pipeline" else f"width {report['settings']['width_mult']}, random"
        rows.append(
            f"| {model} | {row['variant']} | {row['batch_size']}×{row['size']}² | {row['images_per_s']:,.1f} "
            f"| {row['latency_s'] * 1e3:,.1f} ms | {_mib(row['peak_memory_bytes'])} | {versus} |"
        )
    return rows


def main(out: Path) -> int:
    status = {}
    for line in (out / "status.tsv").read_text().splitlines():
        name, rc, seconds = line.split("\t")
        status[name] = (int(rc), int(seconds))
    lines = ["## GPU check", "", *training_rows(out, status), ""]
    lines += inference_rows(_load(out / "inference.json")) + [""]
    if (out / "inference-cudnn-benchmark.json").exists():
        lines += inference_rows(_load(out / "inference-cudnn-benchmark.json")) + [""]
    log = out / "pytest-cuda.log"
    tests = log.read_text().strip().splitlines()[-1] if log.exists() and log.read_text().strip() else "no output"
    lines.append(f"Tests needing a GPU (`pytest -m cuda`): {tests}")
    print("\n".join(lines))
    finite = all((_load(out / n / "speed.json") or {}).get("finite", True) for n in status)
    return 0 if finite and all(rc == 0 for rc, _ in status.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "status.tsv").is_file():
        sys.exit("usage: python scripts/gpu_check_report.py <gpu-check-folder> (the one with status.tsv)")
    sys.exit(main(Path(sys.argv[1])))
