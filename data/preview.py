"""``python -m data.preview [data=...] [masks=...] [corruption=...] out=DIR n=8``

Writes ``DIR/preview.png``: one row per sample, columns image / mask / corrupted / edges.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

from common.cli import command
from common.errors import ConfigError
from common.images import labelled_grid, save_grid
from common.ops import image_edges
from data.datamodule import build_datamodule

log = logging.getLogger("data.preview")


def preview_grid(samples: list[dict[str, torch.Tensor]], edge_sigma: float = 2.0) -> torch.Tensor:
    """Rows of image / mask / corrupted / edges under a labelled header: ``(3, H', W')``."""
    edges = [s["edge"] if "edge" in s else image_edges(s["image"], edge_sigma) for s in samples]
    columns = {
        "image": [s["image"] for s in samples],
        "mask": [s["mask"] for s in samples],
        "corrupted": [s["corrupted"] for s in samples],
        "edges": edges,
    }
    return labelled_grid({k: torch.stack(v) for k, v in columns.items()}, max_rows=len(samples))


@command("preview", "pipeline", "data")
def main(cfg: DictConfig) -> None:
    if int(cfg.n) < 1:
        raise ConfigError(f"n= is the number of samples to show, at least 1; got {cfg.n}")
    out = Path(cfg.out).expanduser().resolve()
    root = cfg.data.dataset.get("root")
    root = Path(str(root)).expanduser().resolve() if root else None
    if root is not None and root.is_dir() and (out == root or root in out.parents):
        raise ConfigError(f"out={out} is inside the data root; choose a folder outside it")
    datamodule = build_datamodule(cfg)
    samples = datamodule.split(cfg.split)
    count = min(int(cfg.n), len(samples))
    if count == 0:
        raise ConfigError(f"the {cfg.split} split holds no images")
    torch.manual_seed(cfg.seed)
    batch = [samples[i] for i in range(count)]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "preview.png"
    save_grid(preview_grid(batch, cfg.data.edge_sigma), path)
    ratios = ", ".join(f"{s['mask'].mean().item():.2f}" for s in batch)
    log.info(
        "wrote %s (%d samples of %s/%s; mean m per sample: %s)",
        path,
        count,
        cfg.data.dataset._target_,
        cfg.split,
        ratios,
    )


if __name__ == "__main__":
    main()
