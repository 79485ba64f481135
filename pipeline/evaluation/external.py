"""Other tools in the same table: the test pairs written out for them, and their predictions read back.

``export_pairs=DIR`` writes every test pair as the inpainting tools read them:
``DIR/images/<pair>.png`` (the corrupted image, 8-bit RGB) and ``DIR/masks/<pair>.png`` (white =
hole: the true mask hardened by the mask rule, the hole the baselines get in ``mode=masked``), the
layout of IOPaint's batch mode (``iopaint run --image=DIR/images --mask=DIR/masks``); the same
pairs as ``DIR/lama/<pair>.png`` + ``<pair>_mask.png``, the layout of LaMa's ``predict.py``; the
truth in ``DIR/truth/<pair>.png``; and ``DIR/pairs.json`` (the protocol's settings, the seed and
every pair's origin, so a scoring run can check it scores the same pairs). ``<pair>`` is the pair's
index, zero-padded to six digits.

``method=predictions predictions=OUT`` then scores ``OUT/<pair>.png`` (or ``.jpg``, ``.jpeg``,
``.webp``) with the same metrics, rows and report as any method, in ``mode=masked``: what the other
tool output is scored as it is, not composited again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from common.errors import ConfigError
from common.images import to_pil
from data.io import load_array, to_float
from pipeline.evaluation.pairs import EvaluationPairs
from pipeline.model import BlindPipeline

PREDICTION_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
INDEX = "pairs.json"
LAYOUT = ("images", "masks", "lama", "truth")


def pair_name(pair: int) -> str:
    return f"{pair:06d}"


def pairs_index(pairs: EvaluationPairs) -> dict:
    """What identifies the test pairs: the protocol's settings, the seed of their damage and each
    pair's origin."""
    return {
        "settings": pairs.settings(),
        "seed": pairs.seed,
        "pairs": [{"pair": n, **pairs.describe(n)} for n in range(len(pairs))],
    }


def export_pairs(pairs: EvaluationPairs, pipeline: BlindPipeline, folder: Path, batch_size: int, progress: bool) -> int:
    """Write every pair of ``pairs`` into ``folder`` (module docstring), the hole hardened by
    ``pipeline``'s mask rule; returns the number written. An existing, non-empty ``folder`` is refused
    (nothing is overwritten)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"export_pairs: {folder} exists and is not an empty folder; choose a new one")
    for sub in LAYOUT:
        (folder / sub).mkdir(parents=True)
    loader = DataLoader(pairs, batch_size=batch_size, shuffle=False)
    for batch in tqdm(loader, desc="export pairs", unit="batch", disable=not progress):
        holes = pipeline.masked_hole(batch["mask"])
        for i, pair in enumerate(batch["pair"].tolist()):
            name = pair_name(pair)
            corrupted, hole = to_pil(batch["corrupted"][i]), to_pil(holes[i])
            corrupted.save(folder / "images" / f"{name}.png")
            hole.save(folder / "masks" / f"{name}.png")
            corrupted.save(folder / "lama" / f"{name}.png")
            hole.save(folder / "lama" / f"{name}_mask.png")
            to_pil(batch["image"][i]).save(folder / "truth" / f"{name}.png")
    (folder / INDEX).write_text(json.dumps(pairs_index(pairs), indent=1))
    return len(pairs)


class Predictions:
    """Another tool's outputs for the test pairs, in ``folder`` as :func:`export_pairs` named them."""

    def __init__(self, folder: Path, pairs: EvaluationPairs):
        if not folder.is_dir():
            raise ConfigError(f"predictions: {folder} is not a folder")
        self.folder = folder
        index = folder / INDEX
        if index.is_file():  # written by export_pairs into the folder the tool read and wrote
            try:
                exported = json.loads(index.read_text())
            except ValueError:
                raise ConfigError(f"predictions: {index} is not the JSON export_pairs writes") from None
            if exported != json.loads(json.dumps(pairs_index(pairs))):
                raise ConfigError(
                    f"predictions: {index} describes other test pairs than this run's (another protocol, "
                    "data, seed or limit): score with the settings the pairs were exported with"
                )

    def path(self, pair: int) -> Path:
        name = pair_name(pair)
        for suffix in PREDICTION_SUFFIXES:
            candidate = self.folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
        raise ConfigError(f"predictions: no {name}.png (or .jpg/.jpeg/.webp) in {self.folder} for test pair {pair}")

    def load(self, pair_ids: list[int], size: tuple[int, int]) -> torch.Tensor:
        """The predictions of ``pair_ids`` as ``(B, 3, H, W)`` in [0, 1]; each must be ``size`` (H, W)."""
        images = []
        for pair in pair_ids:
            path = self.path(pair)
            pixels = load_array(path)
            if pixels.shape[:2] != tuple(size):
                h, w = pixels.shape[:2]
                raise ConfigError(f"predictions: {path} is {w}x{h}, the test pair {size[1]}x{size[0]}")
            images.append(torch.from_numpy(np.ascontiguousarray(to_float(pixels))).permute(2, 0, 1))
        return torch.stack(images)
