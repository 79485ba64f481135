"""The SHA-256 of what ``python -m pipeline.inpaint`` writes for fixed inputs made from the bundled
photos (blind, masked and denoise mode; photos within and above the working size; clean, damaged
and noisy), so two checkouts can be compared byte for byte, e.g. before and after a refactoring::

    .venv/bin/python scripts/output_hashes.py --checkout . > after.txt
    .venv/bin/python scripts/output_hashes.py --checkout /tmp/before > before.txt && diff before.txt after.txt

Each checkout runs with the interpreter that runs this script, from its own folder."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

PHOTOS = Path(__file__).resolve().parents[1] / "data" / "photos"
RUNS = {  # output folder: (input folder, extra arguments)
    "blind": ("small", ["save_intermediates=true"]),
    "masked": ("small", ["mode=masked", "mask={inputs}/masks"]),
    "denoise": ("noisy", ["mode=denoise"]),
    "noisy_blind": ("noisy", []),
    "large": ("large", ["save_intermediates=true"]),
    "large_denoise": ("large", ["mode=denoise"]),
}


def make_inputs(folder: Path) -> None:
    """Six bundled photos at 256² with a light scratch and white text, their masks, noisy copies
    (σ 20), and one photo at 1400×1000 with a scratch, clean and noisy (σ 15)."""
    for name in ("small", "noisy", "large", "masks"):
        (folder / name).mkdir(parents=True)
    photos = sorted(PHOTOS.glob("*.jpg"))[:6]
    rng = np.random.default_rng(0)
    for i, path in enumerate(photos):
        photo = cv2.resize(cv2.imread(str(path)), (256, 256), interpolation=cv2.INTER_AREA)
        damaged = photo.copy()
        cv2.line(damaged, (10, 20 + 30 * i), (240, 200 - 10 * i), (235, 235, 235), 3)
        cv2.putText(damaged, "BLIND", (30, 140), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
        cv2.imwrite(str(folder / "small" / f"p{i}.png"), damaged)
        hole = np.zeros((256, 256), np.uint8)
        hole[100:140, 60:180] = 255
        cv2.imwrite(str(folder / "masks" / f"p{i}.png"), hole)
        noisy = np.clip(photo.astype(np.float32) + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / "noisy" / f"p{i}.png"), noisy)
    big = cv2.resize(cv2.imread(str(photos[0])), (1400, 1000), interpolation=cv2.INTER_CUBIC)
    cv2.line(big, (50, 50), (1300, 900), (240, 240, 240), 4)
    cv2.imwrite(str(folder / "large" / "big.png"), big)
    noisy = np.clip(big.astype(np.float32) + rng.normal(0, 15, big.shape), 0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / "large" / "bignoisy.png"), noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=Path("."), help="the checkout whose pipeline.inpaint runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in", Path(tmp) / "out"
        make_inputs(inputs)
        for run, (source, extra) in RUNS.items():
            command = [sys.executable, "-m", "pipeline.inpaint", f"input={inputs / source}", f"output={outputs / run}"]
            command += [argument.format(inputs=inputs) for argument in extra]
            subprocess.run(command, cwd=args.checkout.resolve(), check=True, capture_output=True)
        for path in sorted(p for p in outputs.rglob("*") if p.is_file()):
            print(hashlib.sha256(path.read_bytes()).hexdigest(), path.relative_to(outputs))


if __name__ == "__main__":
    main()
