"""The weight of the classical denoiser in denoise mode, chosen on the validation photos: PSNR of
``(1 − w)·y + w·D(y)`` for each ``denoiser_error`` α (:meth:`pipeline.model.BlindPipeline.denoise_weight`),
the plain m̂ (α = 1) and D alone (the floor), on the bundled validation split at 256² (2 crops per
photo) with six noise settings of :mod:`data.noise`.

    python scripts/denoise_weight.py [MODEL]
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from common.denoise import denoise_batch
from data.noise import make_noise
from data.sample import sample
from pipeline.model import load_pipeline

SETTINGS = [
    ("gaussian", 15, True),
    ("gaussian", 25, True),
    ("gaussian", 50, True),
    ("poisson", 30, True),
    ("salt_pepper", 0.05, False),
    ("speckle", 0.2, True),
]
ALPHAS = (1.0, 0.5, 0.25, 0.1)


def psnr(output: torch.Tensor, truth: torch.Tensor) -> float:
    return 10 * torch.log10(1 / (output[0] - truth).pow(2).mean()).item()


@torch.no_grad()
def main() -> None:
    pipeline = load_pipeline(sys.argv[1] if len(sys.argv) > 1 else None)
    images = sample("val", size=256, crops_per_photo=2)
    scores: dict[str, dict[str, list[float]]] = {}
    for i in range(len(images)):
        x = images.get(i).float().clamp(0, 1)
        for s, (kind, level, colour) in enumerate(SETTINGS):
            y = torch.from_numpy(make_noise(x.numpy(), kind, level, colour, np.random.default_rng([99, i, s]))[0])[None]
            predicted = pipeline.mpn(y)["predicted_mask"]
            floor, impulses = denoise_batch(y)
            row = scores.setdefault(f"{kind} {level}", {})
            for alpha in ALPHAS:
                pipeline.denoiser_error = alpha
                w = pipeline.denoise_weight(predicted, impulses)
                row.setdefault(f"α {alpha}", []).append(psnr(y + w * (floor - y), x))
            row.setdefault("floor", []).append(psnr(floor, x))
    for name, row in scores.items():
        print(f"{name}: " + ", ".join(f"{k} {np.mean(v):.2f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
