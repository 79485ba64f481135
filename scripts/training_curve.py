"""The IPN's quality against training time, read off a chain run (``experiment=shipped`` keeps a
weights-only snapshot every 20 training minutes, ``callbacks=curve``).

For every snapshot of ``<run>/ipn/checkpoints/`` (``minute-<mmm>.ckpt``; ``--snapshots`` reads
another folder) and the step's last checkpoint, the pipeline of the run's MPN and EPN with that
IPN, at the run's mask rule (``<run>/mask_rule.json``), is exported and scored in masked mode on
the test split, beside Telea and the IPN's classical floor (``telea_pull_push``) on the same
holes; prints a markdown table and writes ``<out>/curve.json``::

    .venv/bin/python scripts/training_curve.py runs/shipped/<time> --out runs/curve
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EVALUATE = ["mode=masked", "data.size=256", "data.dataset.crops_per_photo=2", "per_kind=2", "progress=false"]
KINDS = ("scratch", "text", "pasted_photo", "noise_blotch", "graffiti", "all damaged")


def run(*args: str) -> None:
    subprocess.run([sys.executable, "-m", *args], check=True, stdout=subprocess.DEVNULL)


def score(run_dir: Path, ipn: Path, out: Path, rule: dict) -> dict:
    """``metrics.json`` scores of the run's pipeline with ``ipn``, masked, on the test split."""
    model = out / f"{ipn.stem}.safetensors"
    stages = [f"{name}={(run_dir / name / 'DONE').read_text().strip()}" for name in ("mpn", "epn")]
    settings = [f"pipeline.{k}={v}" for k, v in rule.items()]
    run("pipeline.export", *stages, f"ipn={ipn}", f"out={model}", "overwrite=true", *settings)
    folder = out / ipn.stem
    run("pipeline.evaluate", f"checkpoint={model}", *EVALUATE, "baselines=[telea,telea_pull_push]",
        f"hydra.run.dir={folder}")  # fmt: skip
    return json.loads((folder / "metrics.json").read_text())["scores"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a chain run folder (experiment=shipped)")
    parser.add_argument("--out", type=Path, default=Path("runs/curve"))
    parser.add_argument("--snapshots", type=Path, default=None, help="the minute-<mmm>.ckpt folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rule = {k: v for k, v in json.loads((args.run / "mask_rule.json").read_text()).items()
            if k in ("hole_threshold", "soft_floor")}  # fmt: skip
    checkpoints = args.run / "ipn" / "checkpoints"
    snapshots = sorted((args.snapshots or checkpoints).glob("minute-*.ckpt"))
    points = [(int(path.stem.split("-")[1]), path) for path in snapshots]
    points.append(("end", checkpoints / "last.ckpt"))
    rows = []
    for minutes, path in points:
        scores = score(args.run, path, args.out, rule)
        rows.append({"minutes": minutes, "checkpoint": path.name, "scores": scores})
        print(f"{minutes} min ({path.name}) done", flush=True)
    (args.out / "curve.json").write_text(json.dumps(rows, indent=1))
    print("| training minutes | " + " | ".join(KINDS) + " |")
    print("|---|" + "---|" * len(KINDS))
    floor = rows[0]["scores"]
    print(
        "| floor (step 0) | "
        + " | ".join(f"{floor[k]['telea_pull_push (true mask)']['psnr_hole']:.2f}" for k in KINDS)
        + " |"
    )
    for row in rows:
        cells = [f"{row['scores'][k]['ours']['psnr_hole']:.2f} / {row['scores'][k]['ours']['ssim']:.3f}" for k in KINDS]
        print(f"| {row['minutes']} | " + " | ".join(cells) + " |")
    print("| Telea | " + " | ".join(f"{floor[k]['telea (true mask)']['psnr_hole']:.2f}" for k in KINDS) + " |")


if __name__ == "__main__":
    main()
