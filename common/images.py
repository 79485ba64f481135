"""Sample grids: build one labelled picture from named columns, save it, send it to the loggers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

HEADER_PX = 14


def to_pil(image: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` or ``(1, H, W)`` in [0, 1] -> an 8-bit RGB or grayscale Pillow image."""
    arr = image.detach().float().cpu().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def labelled_grid(columns: dict[str, torch.Tensor], max_rows: int = 8, padding: int = 2) -> torch.Tensor:
    """One row per sample, one column per entry of ``columns`` (each ``(B, C, H, W)``, C = 1 or 3,
    values in [0, 1]) under a header with the column names. Returns ``(3, H', W')`` in [0, 1]."""
    names = list(columns)
    rows = min(max_rows, *(t.shape[0] for t in columns.values()))
    tiles = []
    for i in range(rows):
        for name in names:
            tile = columns[name][i].detach().float().cpu().clamp(0, 1)
            tiles.append(tile.expand(3, -1, -1) if tile.shape[0] == 1 else tile)
    grid = make_grid(torch.stack(tiles), nrow=len(names), padding=padding, pad_value=1.0)
    body = to_pil(grid)
    page = Image.new("RGB", (body.width, body.height + HEADER_PX), "white")
    page.paste(body, (0, HEADER_PX))
    draw = ImageDraw.Draw(page)
    tile_w = tiles[0].shape[-1] + padding
    for i, name in enumerate(names):
        draw.text((padding + i * tile_w + 2, 1), name, fill="black")
    return torch.from_numpy(np.asarray(page).copy()).permute(2, 0, 1).float() / 255


def save_grid(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a ``(3, H, W)`` grid as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(grid).save(path)
    return path


def log_grid(trainer, tag: str, grid: torch.Tensor) -> Path | None:
    """Save ``grid`` under ``<run dir>/samples/`` and hand it to every logger that takes images
    (TensorBoard, wandb; the CSV logger has none, the PNG in the run folder serves it)."""
    if trainer is None or not trainer.is_global_zero:
        return None
    step = trainer.global_step
    path = save_grid(grid, Path(trainer.default_root_dir) / "samples" / f"{tag.replace('/', '_')}_{step:07d}.png")
    for logger in trainer.loggers:
        name = type(logger).__name__
        if name == "TensorBoardLogger":
            logger.experiment.add_image(tag, grid, step)
        elif name == "WandbLogger":
            logger.log_image(key=tag, images=[grid.permute(1, 2, 0).numpy()], step=step)
    return path
