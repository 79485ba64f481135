"""Detection by damage kind against the MPN's cost: IoU of ``m̂ > threshold`` with the true hole
(``m > 0.5``), the mean over the pairs as ``pipeline.evaluate`` reports it, on the test pairs of
``pipeline.evaluate``'s damage protocol (the bundled test split at 256², 2 crops per photo, 2 draws
per kind), the share of intact crops flagged, and the MPN's GFLOP at 256²
(``torch.utils.flop_counter``), for each MPN checkpoint given.

    python scripts/mpn_widths.py runs/a/mpn/checkpoints/best-*.ckpt runs/b/model.safetensors ...
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from common.checkpoint import load_module
from data.damage import DAMAGE_KINDS
from data.sample import sample
from mpn.module import MPNModule
from pipeline.evaluation.pairs import DamagePairs, plan_damage_pairs
from pipeline.model import load_pipeline


def load_mpn(path: str) -> MPNModule:
    if path.endswith(".safetensors"):
        return load_pipeline(path).mpn
    return load_module(path, MPNModule).eval()


def gflop(mpn: MPNModule, size: int = 256) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        mpn(torch.rand(1, 3, size, size))
    return counter.get_total_flops() / 1e9


@torch.no_grad()
def detection(mpn: MPNModule, threshold: float) -> dict[str, float]:
    images = sample("test", size=256, crops_per_photo=2)
    pairs = DamagePairs(images, DAMAGE_KINDS, plan_damage_pairs(len(images), DAMAGE_KINDS, 2))
    ious, flagged, clean = {}, 0.0, 0
    for n in range(len(pairs)):
        item = pairs[n]
        kind = pairs.pairs[n][1]
        found = mpn(item["corrupted"][None])["predicted_mask"][0, 0] > threshold
        if kind is None:
            flagged, clean = flagged + found.float().mean().item(), clean + 1
            continue
        true = item["mask"][0] > 0.5
        iou = (found & true).sum().item() / max((found | true).sum().item(), 1)
        for key in (kind, "all"):
            ious.setdefault(key, []).append(iou)
    return {**{k: sum(v) / len(v) for k, v in ious.items()}, "intact flagged %": 100 * flagged / max(clean, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="MPN checkpoints (.ckpt) or pipeline model files")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    torch.manual_seed(0)
    for path in args.models:
        mpn = load_mpn(path)
        row = {
            "model": path,
            "width_mult": mpn.hparams.get("generator", {}).get("width_mult"),
            "parameters": sum(p.numel() for p in mpn.parameters()),
            "gflop_256": round(gflop(mpn), 2),
            **{k: round(v, 3) for k, v in detection(mpn, args.threshold).items()},
        }
        print(json.dumps(row))


if __name__ == "__main__":
    main()
