"""``protocol=denoise``: blind denoising as inpainting, side by side with the classical denoisers.

Every test image × every noise setting of :data:`NOISE_SETTINGS` (fixed kinds and strengths of
:mod:`data.noise`, the noise drawn from ``numpy.random.default_rng([seed, image, setting])``),
plus every image clean. Each pair is repaired by the model in ``denoise`` and in ``blind`` mode
(:class:`~pipeline.inference.inpainter.BlindInpainter`, the path users run) and by the classical denoisers
on the same input: non-local means at the noise level it estimates (what a user of OpenCV gets
without knowing the noise), non-local means at the true σ (Gaussian noise only: an upper
reference no blind method has), the 3×3 median, and the floor the model starts from
(:func:`common.denoise.classical_denoise`). Scores: PSNR (capped at
:data:`~pipeline.evaluation.metrics.PSNR_CAP`) and SSIM of the whole image against the clean
photo, the mean over the pairs of each setting; ``metrics.json`` and ``metrics.csv`` in the run
folder, and ``denoise_examples.png``: for the first test image, a row per setting (noisy input,
non-local means, ours in denoise mode, the clean photo).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torchvision.utils import save_image
from tqdm import tqdm

from common.denoise import classical_denoise, median, nlm
from common.metrics import psnr, ssim
from data.noise import make_noise
from pipeline.evaluation.metrics import PSNR_CAP
from pipeline.evaluation.report import console

# name -> (kind, level, colour): the settings of the table (levels as data.noise.LEVELS means them)
NOISE_SETTINGS: dict[str, tuple[str, float, bool]] = {
    "gaussian σ15": ("gaussian", 15, True),
    "gaussian σ25": ("gaussian", 25, True),
    "gaussian σ50": ("gaussian", 50, True),
    "poisson 30": ("poisson", 30, True),
    "salt-and-pepper 5%": ("salt_pepper", 0.05, False),
    "speckle 0.2": ("speckle", 0.2, True),
    "jpeg q10": ("jpeg", 10, True),
    "grain 0.08": ("grain", 0.08, False),
}
CLEAN = "clean"
METHODS = ("input", "ours (denoise)", "ours (blind)", "nlm", "nlm (true σ)", "median 3×3", "floor")


def _numpy(image: torch.Tensor) -> np.ndarray:
    return image.permute(1, 2, 0).numpy()


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, np.float32)).permute(2, 0, 1)


def denoise_pair(inpainter, noisy: torch.Tensor, sigma: float | None) -> dict[str, torch.Tensor]:
    """Every method's result ``(3, H, W)`` on one ``noisy`` photo (``sigma``: the true Gaussian σ
    in 8-bit units, else None)."""
    picture = _numpy(noisy)
    results = {
        "input": noisy,
        "ours (denoise)": inpainter.inpaint(noisy[None], mode="denoise")["output"][0].cpu(),
        "ours (blind)": inpainter.inpaint(noisy[None], mode="blind")["output"][0].cpu(),
        "nlm": _tensor(nlm(picture)),
        "median 3×3": _tensor(median(picture)),
        "floor": _tensor(classical_denoise(picture)),
    }
    if sigma is not None:
        results["nlm (true σ)"] = _tensor(nlm(picture, sigma))
    return results


def evaluate_denoise(cfg: DictConfig, run_dir: Path, inpainter, images) -> dict:
    """The denoise protocol on the test ``images`` (an :class:`~data.datasets.ImageDataset`);
    writes the report into ``run_dir`` and returns it."""
    settings = {CLEAN: None, **NOISE_SETTINGS}
    pairs = [(i, name) for i in range(len(images)) for name in settings]
    pairs = pairs[: cfg.limit] if cfg.limit else pairs
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {name: {} for name in settings}
    digest, examples = hashlib.sha256(), []
    for index, name in tqdm(pairs, desc="evaluate denoise", unit="pair", disable=not cfg.progress):
        image = images.get(index).float().clamp(0, 1)
        if name == CLEAN:
            noisy, sigma = image.clone(), None
        else:
            kind, level, colour = NOISE_SETTINGS[name]
            rng = np.random.default_rng([cfg.seed, index, list(NOISE_SETTINGS).index(name)])
            noisy = torch.from_numpy(make_noise(image.numpy(), kind, level, colour, rng)[0])
            sigma = float(level) if kind == "gaussian" else None
        digest.update(noisy.numpy().tobytes())
        results = denoise_pair(inpainter, noisy, sigma)
        for method, output in results.items():
            out, truth = output.clamp(0, 1)[None], image[None]
            value = min(float(psnr(out, truth)), PSNR_CAP)
            scores[name].setdefault(method, []).append((value, float(ssim(out, truth))))
        if index == 0 and name != CLEAN:
            examples += [noisy, results["nlm"], results["ours (denoise)"], image]
    table = {
        name: {
            m: {"psnr": float(np.mean([v[0] for v in vs])), "ssim": float(np.mean([v[1] for v in vs]))}
            for m, vs in methods.items()
        }
        for name, methods in scores.items()
        if methods
    }
    report = {
        "protocol": "denoise",
        "checkpoint": str(Path(cfg.checkpoint).expanduser().resolve()) if cfg.checkpoint else None,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "seed": cfg.seed,
        "settings": {k: list(v) for k, v in NOISE_SETTINGS.items()},
        "num_images": len({i for i, _ in pairs}),
        "num_pairs": len(pairs),
        "inputs_sha256": digest.hexdigest(),
        "pipeline": inpainter.pipeline.settings(),
        "scores": table,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["noise", "method", "psnr", "ssim"])
        for name, methods in table.items():
            for method, values in methods.items():
                writer.writerow([name, method, f"{values['psnr']:.3f}", f"{values['ssim']:.4f}"])
    if examples:
        save_image(torch.stack(examples).clamp(0, 1), run_dir / "denoise_examples.png", nrow=4, padding=2)
    _print(table, len(pairs))
    console.print(f"results: {run_dir} (metrics.json, metrics.csv, denoise_examples.png)")
    return report


def _print(table: dict, n_pairs: int) -> None:
    methods = [m for m in METHODS if any(m in row for row in table.values())]
    console.print(f"denoise protocol on {n_pairs} test pairs: PSNR dB / SSIM against the clean photo")
    console.print("| noise | " + " | ".join(methods) + " |")
    console.print("|---" * (len(methods) + 1) + "|")
    for name, row in table.items():
        cells = [f"{row[m]['psnr']:.2f} / {row[m]['ssim']:.3f}" if m in row else "–" for m in methods]
        console.print(f"| {name} | " + " | ".join(cells) + " |")
