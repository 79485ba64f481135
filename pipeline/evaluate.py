"""``python -m pipeline.evaluate [method=ours checkpoint=MODEL | method=<baseline> [mask_checkpoint=MODEL]] [mode=blind|masked] [data=...]``

Compares inpainting methods on identical inputs and reports their scores per hole-ratio bucket.

- **Test pairs**: every image of the data config's test split (``data=``, exactly as in training)
  is paired with ``masks_per_bucket`` masks of each bucket of the fixed test-mask set
  (:class:`data.masks.BucketedTestMasks`: ``mask_set=DIR`` as written by ``python -m data.masks``,
  else generated at ``data.size`` from ``seed``) and corrupted by ``corruption`` with a generator
  seeded by ``(seed, image, mask)``. The inputs depend on nothing else, so every method sees
  bit-identical inputs; ``metrics.json`` records their SHA-256 (``inputs_sha256``) to prove it.
- **Methods**: ``ours`` (``checkpoint=``, :class:`~pipeline.inference.BlindInpainter`) or a baseline
  of :mod:`pipeline.baselines`. ``mode=blind``: ours finds the mask with its MPN; a baseline fills
  the mask found by the MPN of ``mask_checkpoint=``, hardened as ours hardens its own (threshold
  ``hole_threshold``, grown by ``dilate`` px), so ``method=telea mode=blind mask_checkpoint=M`` and
  ``checkpoint=M`` differ only in the filling. ``mode=masked``: ours gets the true (soft) mask; a
  baseline, which only takes hard holes, gets the true mask hardened the same way.
- **Metrics** (:mod:`common.metrics`, per pair, then the mean over the pairs of each bucket):
  PSNR, SSIM, L1 of the whole image and inside the hole (the true mask); in blind mode the MPN's
  soft mask against the true one (IoU, BCE, MAE, as the MPN's validation); for ours, precision and
  recall of the edges inside the true hole (``hole_threshold``) against Canny of the truth,
  pooled over the bucket's pairs as EdgeConnect pools them. LPIPS (per pair) and FID (per bucket)
  only with weights given by path (``lpips_weights=``, ``fid_weights=``): nothing is downloaded.
- **Buckets**: by the hole ratio of the *true* mask (``mask > 0.5``), which the corruption may
  change (soft borders, text that replaces the hole): ``1-10%`` ... ``50-60%`` as the mask set's
  buckets, plus ``<1%`` / ``>=60%`` rows when pairs fall outside them.
- **Output** in the run folder (``runs/evaluate/<time>/``, ``hydra.run.dir=`` to choose): a table on
  the terminal, ``metrics.json`` (scores, method, mode, checkpoints, data, seed, counts, time per
  image), ``metrics.csv`` (one row per bucket and ``all``), ``pairs.csv`` (every pair's scores, for
  paired comparisons) and ``worst_best.png`` (the worst and best pairs by hole PSNR, worst first).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common.errors import ConfigError, cli
from common.images import labelled_grid, save_grid
from common.metrics import edge_counts, l1, mask_bce, mask_iou, mask_mae, pooled_precision_recall, psnr, ssim
from common.ops import canny, hard_mask, to_gray
from data.datamodule import build_datamodule
from data.datasets import ImageDataset
from data.masks import BucketedTestMasks, _resize_nearest, hole_ratio
from pipeline.baselines import BASELINES, inpaint_batch
from pipeline.inference import BlindInpainter, InpaintSettings, resolve_device
from pipeline.model import BlindPipeline

log = logging.getLogger("pipeline.evaluate")

OURS = "ours"
MODES = ("blind", "masked")
LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
OVERALL = "all"
# Summary columns in report order; a method reports the ones it has.
METRIC_KEYS = (
    "psnr",
    "ssim",
    "l1",
    "psnr_hole",
    "ssim_hole",
    "l1_hole",
    "mask_iou",
    "mask_bce",
    "mask_mae",
    "edge_precision_hole",
    "edge_recall_hole",
    "lpips",
    "fid",
)
EDGE_COUNTS = ("edge_tp", "edge_predicted", "edge_true")

console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


# -- buckets --------------------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{x * 100:g}"


def bucket_labels(buckets) -> list[str]:
    """Report rows in order for the ``(lo, hi)`` hole-ratio ``buckets``: ``<lo₀%``, one per
    bucket (``"1-10%"``), ``>=hi_last%``, and ``other`` (a ratio in a gap between buckets)."""
    return [
        f"<{_percent(buckets[0][0])}%",
        *(f"{_percent(lo)}-{_percent(hi)}%" for lo, hi in buckets),
        f">={_percent(buckets[-1][1])}%",
        "other",
    ]


def assign_bucket(ratio: float, buckets) -> str:
    """The report row of a pair whose true hole covers ``ratio`` of the image: the bucket with
    ``lo <= ratio < hi``, else below the first / above the last / ``other``."""
    labels = bucket_labels(buckets)
    for (lo, hi), label in zip(buckets, labels[1:]):
        if lo <= ratio < hi:
            return label
    if ratio < buckets[0][0]:
        return labels[0]
    if ratio >= buckets[-1][1]:
        return labels[-2]
    return labels[-1]


# -- test pairs -----------------------------------------------------------------------------------


def plan_pairs(
    n_images: int, masks: BucketedTestMasks, masks_per_bucket: int, limit: int | None = None
) -> list[tuple[int, int]]:
    """``(image index, mask index)`` of every test pair: image-major, then bucket, then slot.
    Image ``i`` gets the masks ``i · masks_per_bucket + j`` (j < masks_per_bucket, cyclically) of
    each bucket's entries, so images see different masks of a large set; ``limit`` keeps the first."""
    per_bucket: dict[int, list[int]] = {}
    for k in range(len(masks)):
        per_bucket.setdefault(masks.key(k)[0], []).append(k)
    pairs = [
        (i, entries[(i * masks_per_bucket + j) % len(entries)])
        for i in range(n_images)
        for entries in per_bucket.values()
        for j in range(masks_per_bucket)
    ]
    return pairs[:limit] if limit else pairs


class EvaluationPairs(Dataset):
    """The evaluation inputs: pair ``n`` -> ``image`` ``(3, H, W)``, ``corrupted`` ``(3, H, W)``,
    true ``mask`` ``(1, H, W)`` (what the corruptor returned), its ``hole_ratio``, and the
    ``pair`` / ``image_index`` / ``mask_index`` it came from. A pure function of ``(seed, image,
    mask)``: the crop is the deterministic one, the corruption (and donor image, as in training)
    is drawn from ``numpy.random.default_rng([seed, image, mask])``."""

    def __init__(
        self,
        images: ImageDataset,
        masks: BucketedTestMasks,
        corruptor,
        pairs: list[tuple[int, int]],
        seed: int = 0,
        donor_fill: bool = True,
    ):
        self.images, self.masks, self.corruptor, self.pairs = images, masks, corruptor, pairs
        self.seed, self.donor_fill = seed, donor_fill

    def __len__(self) -> int:
        return len(self.pairs)

    def _donor(self, index: int, rng: np.random.Generator) -> torch.Tensor | None:
        """Another test image for the ``image`` fill, chosen as :class:`InpaintingSamples` does."""
        if not self.donor_fill or len(self.images) < 2:
            return None
        other = int(rng.integers(0, len(self.images) - 1))
        return self.images.get(other + (other >= index))

    def __getitem__(self, n: int) -> dict:
        image_index, mask_index = self.pairs[n]
        rng = np.random.default_rng([self.seed, image_index, mask_index])
        image = self.images.get(image_index)
        donor = self._donor(image_index, rng)
        hole = _resize_nearest(self.masks[mask_index][0], *image.shape[-2:])
        corrupted, mask = self.corruptor(image, torch.from_numpy(np.ascontiguousarray(hole))[None], rng, donor)
        return {
            "pair": n,
            "image_index": image_index,
            "mask_index": mask_index,
            "image": image,
            "corrupted": corrupted,
            "mask": mask,
            "hole_ratio": hole_ratio(mask.numpy()),
        }


def load_mask_set(cfg: DictConfig) -> BucketedTestMasks:
    """``mask_set=DIR`` (a saved set), else the set generated at ``data.size`` from ``seed``."""
    if not cfg.mask_set:
        return BucketedTestMasks(size=cfg.data.size, per_bucket=cfg.mask_set_size, seed=cfg.seed)
    masks = BucketedTestMasks.load(Path(cfg.mask_set).expanduser())
    if masks.size != (cfg.data.size, cfg.data.size):
        log.warning(
            "the mask set is %dx%d, the images %dx%d: masks are resized (nearest); buckets follow the true masks",
            *masks.size,
            cfg.data.size,
            cfg.data.size,
        )
    return masks


def build_test_pairs(cfg: DictConfig) -> EvaluationPairs:
    """The test pairs of ``cfg``: its data config's test split × the mask set, ``cfg.corruption``."""
    data_cfg = cfg.copy()
    with open_dict(data_cfg):
        data_cfg.masks = None  # the masks come from the test-mask set, not a training generator
    try:
        samples = build_datamodule(data_cfg).split("test")
    except ValueError as err:  # DatasetError, or a data.size the data module refuses
        raise ConfigError(str(err)) from None
    masks = load_mask_set(cfg)
    pairs = plan_pairs(len(samples.images), masks, cfg.masks_per_bucket, cfg.limit)
    return EvaluationPairs(
        samples.images, masks, samples.corruptor, pairs, seed=cfg.seed, donor_fill=samples.donor_fill
    )


# -- methods --------------------------------------------------------------------------------------


@dataclass
class Method:
    """What is evaluated: ``name`` (``ours`` or a baseline) in ``mode``. ``model`` is our model
    (ours), the model whose MPN finds a baseline's mask (blind baselines) or None; ``pipeline``
    the pipeline whose mask rule hardens the true mask for a baseline in masked mode."""

    name: str
    mode: str
    model: BlindInpainter | None
    pipeline: BlindPipeline

    @property
    def is_ours(self) -> bool:
        return self.name == OURS

    def __call__(self, corrupted: torch.Tensor, true_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Repair ``corrupted`` ``(B, 3, H, W)`` -> ``output`` ``(B, 3, H, W)``, plus the ``mask``
        ``(B, 1, H, W)`` the fill used (blind) and the ``edges`` ``(B, 1, H, W)`` (ours)."""
        blind = self.mode == "blind"
        if self.is_ours:
            result = self.model.inpaint(corrupted, None if blind else true_mask, self.mode)
            return {k: result[k] for k in (("output", "mask", "edges") if blind else ("output", "edges"))}
        if blind:
            used = self.model.masks(corrupted)["mask"]
            return {"output": inpaint_batch(self.name, corrupted, used), "mask": used}
        return {"output": inpaint_batch(self.name, corrupted, self.pipeline.mask_rule(true_mask))}

    def mask_prediction(self, corrupted: torch.Tensor) -> torch.Tensor | None:
        """The MPN's soft mask ``(B, 1, H, W)`` that the mask metrics measure (blind), else None."""
        return self.model.masks(corrupted)["predicted_mask"] if self.mode == "blind" else None


def check_config(cfg: DictConfig) -> None:
    """Refuse contradictory or missing settings before anything is loaded."""
    methods = [OURS, *BASELINES]
    if cfg.method not in methods:
        raise ConfigError(f"unknown method {cfg.method!r}; expected one of {', '.join(methods)}")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {cfg.mode!r}")
    if cfg.method == OURS:
        if not cfg.checkpoint:
            raise ConfigError(
                "method=ours needs checkpoint=MODEL (model.safetensors, a joint .ckpt or a stage=all run folder)"
            )
        if cfg.mask_checkpoint:
            raise ConfigError(
                "mask_checkpoint= is for baselines in mode=blind; method=ours finds the mask with its own MPN"
            )
    else:
        if cfg.checkpoint:
            raise ConfigError(
                f"checkpoint= is the model of method=ours; method={cfg.method} takes the model whose MPN "
                "finds its mask (mode=blind) as mask_checkpoint="
            )
        if cfg.mode == "blind" and not cfg.mask_checkpoint:
            raise ConfigError(
                f"method={cfg.method} mode=blind needs mask_checkpoint=MODEL, the model whose MPN finds "
                "the mask (or use mode=masked)"
            )
        if cfg.mode == "masked" and cfg.mask_checkpoint:
            raise ConfigError("mask_checkpoint= is used in mode=blind only; mode=masked gives the true mask")
    for key in ("batch_size", "masks_per_bucket", "mask_set_size"):
        if cfg[key] < 1:
            raise ConfigError(f"{key} must be at least 1, got {cfg[key]}")
    if cfg.grid_rows < 0:
        raise ConfigError(f"grid_rows must be at least 0, got {cfg.grid_rows}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ConfigError(f"limit must be at least 1 (or null for all pairs), got {cfg.limit}")
    if cfg.lpips_net not in LPIPS_BACKBONES:
        raise ConfigError(f"lpips_net must be one of {', '.join(LPIPS_BACKBONES)}, got {cfg.lpips_net!r}")


def build_method(cfg: DictConfig, device: str) -> Method:
    path = cfg.checkpoint if cfg.method == OURS else cfg.mask_checkpoint
    overrides = {k: v for k, v in cfg.pipeline.items() if v is not None}
    settings = InpaintSettings(mode=cfg.mode, working_size=cfg.working_size, channels_last=tuple(cfg.channels_last))
    model = BlindInpainter.from_pretrained(path, settings, device, **overrides) if path else None
    pipeline = model.pipeline if model is not None else BlindPipeline(**overrides)
    return Method(cfg.method, cfg.mode, model, pipeline)


# -- metrics --------------------------------------------------------------------------------------


def pair_metrics(
    image: torch.Tensor,
    output: torch.Tensor,
    true_mask: torch.Tensor,
    predicted_mask: torch.Tensor | None = None,
    edges: torch.Tensor | None = None,
    edge_sigma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Per-pair scores ``(B,)`` of ``output`` vs ``image`` ``(B, 3, H, W)``, the hole being the
    true mask ``(B, 1, H, W)``; mask scores of the soft ``predicted_mask``; edge counts inside the
    true hole of ``edges`` ``(B, 1, H, W)`` against Canny of the truth."""
    values = {
        "psnr": psnr(output, image, reduction="none"),
        "ssim": ssim(output, image, reduction="none"),
        "l1": l1(output, image, reduction="none"),
        "psnr_hole": psnr(output, image, mask=true_mask, reduction="none"),
        "ssim_hole": ssim(output, image, mask=true_mask, reduction="none"),
        "l1_hole": l1(output, image, mask=true_mask, reduction="none"),
    }
    if predicted_mask is not None:
        values["mask_iou"] = mask_iou(predicted_mask, true_mask, reduction="none")
        values["mask_bce"] = mask_bce(predicted_mask, true_mask, reduction="none")
        values["mask_mae"] = mask_mae(predicted_mask, true_mask, reduction="none")
    if edges is not None:
        truth = canny(to_gray(image), sigma=edge_sigma)
        counts = edge_counts(edges, truth, mask=hard_mask(true_mask))
        values.update(zip(EDGE_COUNTS, counts))
    return values


def _mean(values: list[float]) -> float:
    """Mean leaving NaN out (an empty hole has no hole score); NaN when nothing is left."""
    return torch.tensor(values, dtype=torch.float64).nanmean().item()


def summarize_group(rows: list[dict]) -> dict[str, float]:
    """One report row from per-pair rows: the pair count, the mean true hole ratio, the mean of
    every per-pair score, and edge precision / recall from the pooled counts."""
    summary = {"pairs": len(rows), "hole_ratio": _mean([r["hole_ratio"] for r in rows])}
    for key in METRIC_KEYS:
        if key in rows[0]:
            summary[key] = _mean([r[key] for r in rows])
    if EDGE_COUNTS[0] in rows[0]:
        totals = (torch.tensor(sum(r[key] for r in rows), dtype=torch.float64) for key in EDGE_COUNTS)
        precision, recall = pooled_precision_recall(*totals)
        summary["edge_precision_hole"], summary["edge_recall_hole"] = precision.item(), recall.item()
    return summary


def summarize(rows: list[dict], labels: list[str]) -> dict[str, dict[str, float]]:
    """Report rows: each non-empty bucket of ``labels`` (in that order), then ``all``."""
    groups = {label: [r for r in rows if r["bucket"] == label] for label in labels}
    report = {label: summarize_group(group) for label, group in groups.items() if group}
    report[OVERALL] = summarize_group(rows)
    return report


def lpips_metric(weights: str, net: str):
    """torchmetrics' LPIPS with the ``net`` backbone's ImageNet weights read from ``weights``.

    torchvision only downloads a weight file that is missing from its hub cache, so the file is
    linked into a temporary cache under the name torchvision looks for; the linear layers on top
    ship inside torchmetrics. Nothing is downloaded."""
    import torchvision.models
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"lpips_weights {path} does not exist")
    url = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT.url
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        cached = Path(hub) / "checkpoints" / Path(urlparse(url).path).name
        cached.parent.mkdir()
        os.symlink(path.resolve(), cached)
        torch.hub.set_dir(hub)
        try:
            return LearnedPerceptualImagePatchSimilarity(net_type=net, reduction="none", normalize=True)
        except Exception as err:  # torch.load / load_state_dict: any failure means wrong weights
            raise ConfigError(
                f"lpips_weights {path} are not torchvision's {net} ImageNet weights "
                f"(lpips_net={net}): {str(err).splitlines()[0]}"
            ) from None
        finally:
            torch.hub.set_dir(previous)


def inception_features(weights: str) -> torch.nn.Module:
    """The FID feature extractor, uint8 ``(B, 3, H, W)`` -> ``(B, 2048)``: torchmetrics' InceptionV3
    with torch-fidelity's weights read from ``weights``."""
    from torchmetrics.image.fid import NoTrainInceptionV3
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"fid_weights {path} does not exist")
    if not _TORCH_FIDELITY_AVAILABLE:
        raise ConfigError(
            "fid_weights= needs the torch-fidelity package, which is not installed (pip install torch-fidelity)"
        )
    try:
        return NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        )
    except Exception as err:  # torch.load / load_state_dict: any failure means wrong weights
        raise ConfigError(
            f"fid_weights {path} are not torch-fidelity's InceptionV3 weights: {str(err).splitlines()[0]}"
        ) from None


class PrecomputedFeatures(torch.nn.Module):
    """The "feature extractor" of a FID fed with Inception features computed beforehand, so each
    image goes through the Inception once however many FIDs (buckets, overall) it counts in."""

    num_features = 2048

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class PerceptualMetrics:
    """LPIPS per pair and FID per bucket and overall, each only when its weights are given by
    path; ``skipped`` says why one is not computed."""

    def __init__(self, cfg: DictConfig, device: str):
        self.device, self.skipped, self.fid = device, {}, {}
        self.lpips = lpips_metric(cfg.lpips_weights, cfg.lpips_net).to(device) if cfg.lpips_weights else None
        if self.lpips is None:
            self.skipped["lpips"] = (
                "no lpips_weights= given (torchvision ImageNet weights of the backbone, by path; nothing is downloaded)"
            )
        self.inception = inception_features(cfg.fid_weights).to(device) if cfg.fid_weights else None
        if self.inception is None:
            self.skipped["fid"] = (
                "no fid_weights= given (torch-fidelity InceptionV3 weights, by path; nothing is downloaded)"
            )

    def lpips_values(self, output: torch.Tensor, image: torch.Tensor) -> torch.Tensor | None:
        """LPIPS of each pair ``(B,)``, or None when skipped."""
        if self.lpips is None:
            return None
        with torch.inference_mode():
            return self.lpips(output.to(self.device), image.to(self.device)).reshape(-1).float().cpu()

    def update_fid(self, output: torch.Tensor, image: torch.Tensor, buckets: list[str]) -> None:
        """Add a batch ``(B, 3, H, W)`` to the overall FID and to the FID of each pair's bucket."""
        if self.inception is None:
            return
        from torchmetrics.image.fid import FrechetInceptionDistance

        with torch.inference_mode():
            # uint8 as the Inception takes it, converted as torchmetrics' normalize=True converts
            fake, real = (self.inception((x * 255).byte().to(self.device)) for x in (output, image))
            for label in (OVERALL, *dict.fromkeys(buckets)):
                if label not in self.fid:
                    self.fid[label] = FrechetInceptionDistance(feature=PrecomputedFeatures()).to(self.device)
                chosen = torch.tensor([label in (OVERALL, b) for b in buckets], device=self.device)
                self.fid[label].update(real[chosen], real=True)
                self.fid[label].update(fake[chosen], real=False)

    def fid_scores(self) -> dict[str, float]:
        """FID of overall and of every bucket with at least two pairs."""
        return {
            label: metric.compute().item()
            for label, metric in self.fid.items()
            if metric.fake_features_num_samples >= 2
        }


# -- the worst and best pairs ---------------------------------------------------------------------


class ExtremeCases:
    """The ``k`` pairs with the lowest and the ``k`` with the highest hole PSNR seen so far."""

    def __init__(self, k: int):
        self.k, self.cases = k, []

    def add(self, scores: torch.Tensor, pairs: torch.Tensor, columns: dict[str, torch.Tensor]) -> None:
        """``scores`` and ``pairs`` ``(B,)``; ``columns`` name -> ``(B, C, H, W)`` images to show."""
        if self.k == 0:
            return
        for i, (score, pair) in enumerate(zip(scores.tolist(), pairs.tolist())):
            if not math.isnan(score):
                self.cases.append((score, pair, {name: images[i] for name, images in columns.items()}))
        self.cases.sort(key=lambda case: case[:2])
        if len(self.cases) > 2 * self.k:
            self.cases = self.cases[: self.k] + self.cases[-self.k :]

    def grid(self) -> torch.Tensor | None:
        """One row per kept pair, worst first: ``(3, H', W')``, or None when there is none."""
        if not self.cases:
            return None
        names = list(self.cases[0][2])
        return labelled_grid({n: torch.stack([c[2][n] for c in self.cases]) for n in names}, max_rows=len(self.cases))


# -- the run --------------------------------------------------------------------------------------


def _finite(value):
    """JSON has no NaN or infinity: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


HEADERS = {
    "pairs": "pairs",
    "hole_ratio": "hole",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "l1": "L1",
    "psnr_hole": "PSNR hole",
    "ssim_hole": "SSIM hole",
    "l1_hole": "L1 hole",
    "mask_iou": "mask IoU",
    "mask_bce": "mask BCE",
    "mask_mae": "mask MAE",
    "edge_precision_hole": "edge P hole",
    "edge_recall_hole": "edge R hole",
    "lpips": "LPIPS",
    "fid": "FID",
}
FORMATS = {"pairs": "{:d}", "hole_ratio": "{:.1%}", "psnr": "{:.2f}", "psnr_hole": "{:.2f}", "fid": "{:.2f}"}


def print_table(title: str, summary: dict[str, dict], skipped: dict[str, str]) -> None:
    table = Table(title=title)
    columns = list(summary[OVERALL])
    table.add_column("bucket")
    for column in columns:
        table.add_column(HEADERS[column], justify="right")
    for label, row in summary.items():
        cells = [FORMATS.get(c, "{:.4f}").format(row[c]) if c in row and row[c] is not None else "-" for c in columns]
        table.add_row(label, *cells, end_section=label == list(summary)[-2])
    console.print(table)
    for name, reason in skipped.items():
        console.print(f"{name.upper()} skipped: {reason}")


def describe_mask_set(cfg: DictConfig, masks: BucketedTestMasks) -> dict:
    return {"path": str(Path(cfg.mask_set).expanduser().resolve()) if cfg.mask_set else None, **masks.params()}


def evaluate(cfg: DictConfig, run_dir: Path) -> dict:
    """Evaluate ``cfg.method`` in ``cfg.mode`` on the test pairs; write the report files into
    ``run_dir`` and return the report (what ``metrics.json`` holds)."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    method = build_method(cfg, device)
    pairs = build_test_pairs(cfg)
    buckets = pairs.masks.buckets
    labels = bucket_labels(buckets)
    perceptual = PerceptualMetrics(cfg, device)
    loader = DataLoader(pairs, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    rows, cases, digest, seconds = [], ExtremeCases(cfg.grid_rows), hashlib.sha256(), 0.0
    log.info("%s (%s): %d test pairs of %d images", cfg.method, cfg.mode, len(pairs), len({i for i, _ in pairs.pairs}))

    for batch in tqdm(loader, desc=f"evaluate {cfg.method} ({cfg.mode})", unit="batch", disable=not cfg.progress):
        image, corrupted, true_mask = batch["image"], batch["corrupted"], batch["mask"]
        digest.update(corrupted.numpy().tobytes())
        digest.update(true_mask.numpy().tobytes())
        start = time.perf_counter()
        result = method(corrupted, true_mask)
        if device == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - start
        result = {k: v.float().cpu() for k, v in result.items()}

        values = pair_metrics(
            image,
            result["output"],
            true_mask,
            method.mask_prediction(corrupted),
            result.get("edges"),
            method.pipeline.edge_sigma,
        )
        lpips = perceptual.lpips_values(result["output"], image)
        if lpips is not None:
            values["lpips"] = lpips
        bucket = [assign_bucket(r, buckets) for r in batch["hole_ratio"].tolist()]
        perceptual.update_fid(result["output"], image, bucket)
        for i, pair in enumerate(batch["pair"].tolist()):
            image_index, mask_index = pairs.pairs[pair]
            rows.append(
                {
                    "pair": pair,
                    "image": image_index,
                    "image_name": pairs.images.describe(image_index),
                    "mask_file": pairs.masks.filename(mask_index),
                    "bucket": bucket[i],
                    "hole_ratio": batch["hole_ratio"][i].item(),
                    **{k: v[i].item() for k, v in values.items()},
                }
            )
        columns = {"corrupted": corrupted, "true mask": true_mask}
        if "mask" in result:
            columns["predicted mask"] = result["mask"]
        cases.add(values["psnr_hole"], batch["pair"], {**columns, "output": result["output"], "truth": image})

    summary = summarize(rows, labels)
    for label, score in perceptual.fid_scores().items():
        summary[label]["fid"] = score
    report = {
        "method": cfg.method,
        "mode": cfg.mode,
        "checkpoint": str(Path(cfg.checkpoint).expanduser().resolve()) if cfg.checkpoint else None,
        "mask_checkpoint": str(Path(cfg.mask_checkpoint).expanduser().resolve()) if cfg.mask_checkpoint else None,
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "corruption": OmegaConf.to_container(cfg.corruption, resolve=True),
        "seed": cfg.seed,
        "mask_set": describe_mask_set(cfg, pairs.masks),
        "masks_per_bucket": cfg.masks_per_bucket,
        "pipeline": method.pipeline.settings(),
        "num_images": len({r["image"] for r in rows}),
        "num_pairs": len(rows),
        "inputs_sha256": digest.hexdigest(),
        "device": device,
        "time_per_image_s": seconds / max(len(rows), 1),
        "method_seconds": seconds,
        "skipped": perceptual.skipped,
        "buckets": summary,
        "grid": [{"pair": pair, "psnr_hole": score} for score, pair, _ in cases.cases],
    }

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(_finite(report), indent=1))
    write_csv(run_dir / "metrics.csv", [{"bucket": label, **row} for label, row in summary.items()])
    write_csv(run_dir / "pairs.csv", rows)
    grid = cases.grid()
    if grid is not None:
        save_grid(grid, run_dir / "worst_best.png")
    print_table(
        f"{cfg.method} ({cfg.mode}) on {len(rows)} test pairs, {report['time_per_image_s'] * 1000:.1f} ms per image",
        summary,
        perceptual.skipped,
    )
    console.print(
        f"results: {run_dir} (metrics.json, metrics.csv, pairs.csv{', worst_best.png' if grid is not None else ''})"
    )
    return report


@hydra.main(config_path="pkg://conf", config_name="evaluate", version_base="1.3")
@cli
def main(cfg: DictConfig) -> None:
    evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
