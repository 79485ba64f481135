"""``python -m data.preview [data=...] [mask=...] [corruption=...] out=DIR n=8``

Writes ``DIR/preview.png``: one row per sample, columns image / mask / corrupted / edges.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from data.datamodule import build_datamodule
from data.datasets import DatasetError
from data.edges import image_edges

log = logging.getLogger("data.preview")
COLUMNS = ("image", "mask", "corrupted", "edges")


def preview_grid(samples: list[dict[str, torch.Tensor]], edge_sigma: float = 2.0, padding: int = 2) -> Image.Image:
    """Rows of image / mask / corrupted / edges (each ``(3, H, W)``) with a labelled header."""
    tiles = []
    for s in samples:
        edges = s["edge"] if "edge" in s else image_edges(s["image"], edge_sigma)
        tiles += [s["image"], s["mask"].expand(3, -1, -1), s["corrupted"], edges.expand(3, -1, -1)]
    grid = make_grid(torch.stack(tiles), nrow=len(COLUMNS), padding=padding, pad_value=1.0)
    body = Image.fromarray(grid.mul(255).round().byte().permute(1, 2, 0).numpy())
    header_h = 14
    page = Image.new("RGB", (body.width, body.height + header_h), "white")
    page.paste(body, (0, header_h))
    draw = ImageDraw.Draw(page)
    tile_w = samples[0]["image"].shape[-1] + padding
    for i, name in enumerate(COLUMNS):
        draw.text((padding + i * tile_w + 2, 1), name, fill="black")
    return page


@hydra.main(config_path="pkg://conf", config_name="preview", version_base="1.3")
def main(cfg: DictConfig) -> None:
    out = Path(cfg.out).expanduser().resolve()
    roots = [Path(str(r)).expanduser().resolve() for r in [cfg.data.dataset.get("root")] if r]
    if any(out == r or r in out.parents for r in roots if r.is_dir()):
        sys.exit(f"error: out={out} is inside the data root; choose a folder outside it")
    try:
        datamodule = build_datamodule(cfg)
        samples = datamodule.split(cfg.split)
        count = min(int(cfg.n), len(samples))
        torch.manual_seed(cfg.seed)
        batch = [samples[i] for i in range(count)]
    except DatasetError as err:
        sys.exit(f"error: {err}")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "preview.png"
    preview_grid(batch, cfg.edge_sigma).save(path)
    ratios = ", ".join(f"{s['mask'].mean().item():.2f}" for s in batch)
    log.info("wrote %s (%d samples of %s/%s; mean m per sample: %s)", path, count, cfg.data.dataset._target_, cfg.split, ratios)


if __name__ == "__main__":
    main()
