"""The README's fill examples (``docs/fill-examples.jpg``): photos never trained on, each with one
kind of damage, and flat colours with a 40×40 hole; columns *corrupted / hole given / Telea /
ours (masked) / ours (blind) / truth*, each 256². Masked mode gives ours and Telea the same hole
(:meth:`~pipeline.model.BlindPipeline.masked_hole`). Prints the flat colours' fill means::

    .venv/bin/python scripts/curate_photos.py --debs /tmp/debs/x --outside /tmp/outside
    .venv/bin/python scripts/fill_examples.py /tmp/outside/test --out docs/fill-examples.jpg
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common.classical import classical_fill
from data.damage import Damage
from data.io import load_image
from pipeline.inference.inpainter import BlindInpainter, InpaintSettings

SIZE = 256
CASES = (  # (photo, damage kind, seed)
    ("mate_greenmeadow.jpg", "pasted_photo", 3),
    ("mate_garden.jpg", "text", 1),
    ("mate_wood.jpg", "noise_blotch", 2),
    ("mate_storm.jpg", "graffiti", 4),
    ("mate_ladybird.jpg", "scratch", 5),
    ("mate_freshflower.jpg", "text", 7),
)
DONOR = "mate_dune.jpg"
FLAT = ((0.20, 0.55, 0.15), (0.15, 0.30, 0.70), (0.75, 0.15, 0.10), (0.85, 0.65, 0.55), (0.55, 0.75, 0.95))


def square(image: torch.Tensor) -> torch.Tensor:
    """The centre square of ``image`` ``(3, H, W)``, resized to ``SIZE``²."""
    _, h, w = image.shape
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return F.interpolate(image[None, :, y : y + side, x : x + side], size=(SIZE, SIZE), mode="area")[0]


def row(ours: BlindInpainter, corrupted: torch.Tensor, hole: torch.Tensor, truth: torch.Tensor) -> list:
    telea = classical_fill(corrupted, hole, "telea")
    masked = ours.inpaint(corrupted, hole, "masked")["output"]
    blind = ours.inpaint(corrupted, None, "blind")["output"]
    return [corrupted, hole.expand(-1, 3, -1, -1), telea, masked, blind, truth]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="the folder of the outside photos (mate_*.jpg)")
    parser.add_argument("--model", default=None, help="a model file; default: the shipped model")
    parser.add_argument("--out", type=Path, default=Path("fill-examples.jpg"))
    args = parser.parse_args()
    ours = BlindInpainter.from_pretrained(args.model, settings=InpaintSettings(working_size=SIZE))
    donor = square(load_image(args.photos / DONOR))
    rows = []
    for name, kind, seed in CASES:
        truth = square(load_image(args.photos / name))
        corrupted, mask = Damage(kind, donor_transform=False)(truth, np.random.default_rng(seed), donor)
        rows.append(row(ours, corrupted[None], ours.pipeline.masked_hole(mask[None]), truth[None]))
    hole = torch.zeros(1, 1, SIZE, SIZE)
    hole[..., 100:140, 100:140] = 1
    for rgb in FLAT:
        noise = 0.02 * torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
        truth = (torch.tensor(rgb).view(1, 3, 1, 1) + noise).clamp(0, 1)
        rows.append(row(ours, truth * (1 - hole) + 0.9 * hole, hole, truth))
        fill = rows[-1][3][0, :, 100:140, 100:140].mean((1, 2))
        print(f"flat {rgb}: fill {[round(v, 3) for v in fill.tolist()]}")
    grid = torch.cat([torch.cat([t[0] for t in r], 2) for r in rows], 1).clamp(0, 1)
    picture = Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    picture.resize((picture.width // 2, picture.height // 2), Image.LANCZOS).save(args.out, quality=85)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
