"""The scores: per-pair image, mask and edge metrics, their summary per report row, and LPIPS /
FID from weights given by path (nothing is downloaded)."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from omegaconf import DictConfig

from common.checkpoint import checked_weights_bytes
from common.errors import ConfigError
from common.metrics import edge_counts, l1, mask_bce, mask_iou, mask_mae, pooled_precision_recall, psnr, ssim
from common.ops import canny, hard_mask, to_gray

LPIPS_BACKBONES = {"alex": "AlexNet_Weights", "vgg": "VGG16_Weights", "squeeze": "SqueezeNet1_1_Weights"}
PSNR_CAP = 100.0  # dB: a perfect image (a clean photo left alone) would be infinite
# Summary columns in report order; a row reports the ones its pairs have.
METRIC_KEYS = (
    "psnr",
    "psnr_input",
    "ssim",
    "l1",
    "psnr_hole",
    "ssim_hole",
    "l1_hole",
    "final_iou",
    "mask_iou",
    "mask_bce",
    "mask_mae",
    "flagged",
    "flagged_max",
    "soft_mask",
    "edge_precision_hole",
    "edge_recall_hole",
    "lpips",
    "fid",
)
EDGE_COUNTS = ("edge_tp", "edge_predicted", "edge_true")


def capped_psnr(*args, **kwargs) -> torch.Tensor:
    """:func:`common.metrics.psnr` per image ``(B,)``, at most :data:`PSNR_CAP` (NaN stays NaN)."""
    return psnr(*args, **kwargs, reduction="none").clamp(max=PSNR_CAP)


def pair_metrics(
    image: torch.Tensor,
    output: torch.Tensor,
    corrupted: torch.Tensor,
    true_mask: torch.Tensor,
    used_mask: torch.Tensor | None = None,
    predicted_mask: torch.Tensor | None = None,
    hole_threshold: float = 0.5,
    edges: torch.Tensor | None = None,
    edge_sigma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Per-pair scores ``(B,)`` of ``output`` vs ``image`` ``(B, 3, H, W)`` (PSNR capped at
    :data:`PSNR_CAP`), the hole being the true mask ``(B, 1, H, W)`` (hole scores NaN where it is
    empty), and ``psnr_input``: the ``corrupted`` input's PSNR, what repair starts from.

    ``used_mask`` ``(B, 1, H, W)``, the mask the output was composited with (or a baseline
    filled): ``final_iou`` (``> 0.5`` vs the true hole ``> 0.5``; NaN for a clean image),
    ``flagged`` (its share ``> 0.5``), ``soft_mask`` (its mean). ``predicted_mask``, the MPN's
    soft m̂: ``mask_iou`` (``m̂ > hole_threshold``, before dilation, vs the true hole; NaN for a
    clean image), ``mask_bce``, ``mask_mae`` (vs the true soft mask, as the MPN's validation).
    ``edges`` ``(B, 1, H, W)``: edge counts inside the true hole against Canny of the truth."""
    values = {
        "psnr": capped_psnr(output, image),
        "psnr_input": capped_psnr(corrupted, image),
        "ssim": ssim(output, image, reduction="none"),
        "l1": l1(output, image, reduction="none"),
        "psnr_hole": capped_psnr(output, image, mask=true_mask),
        "ssim_hole": ssim(output, image, mask=true_mask, reduction="none"),
        "l1_hole": l1(output, image, mask=true_mask, reduction="none"),
    }
    damaged = (true_mask > 0.5).flatten(1).any(1)
    nan = torch.tensor(float("nan"))
    if used_mask is not None:
        values["final_iou"] = torch.where(damaged, mask_iou(used_mask, true_mask, reduction="none"), nan)
        values["flagged"] = (used_mask > 0.5).flatten(1).float().mean(1)
        values["soft_mask"] = used_mask.flatten(1).float().mean(1)
    if predicted_mask is not None:
        found = (predicted_mask > hole_threshold).float()
        values["mask_iou"] = torch.where(damaged, mask_iou(found, true_mask, reduction="none"), nan)
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
    every per-pair score that some pair has (NaN left out), ``flagged_max`` (the largest
    ``flagged``), and edge precision / recall from the pooled counts (where some pair has a hole)."""
    summary = {"pairs": len(rows), "hole_ratio": _mean([r["hole_ratio"] for r in rows])}
    for key in METRIC_KEYS:
        if key in rows[0]:
            value = _mean([r[key] for r in rows])
            if not math.isnan(value):  # some pair has this score
                summary[key] = value
    if "flagged" in rows[0]:
        summary["flagged_max"] = max(r["flagged"] for r in rows)
    if EDGE_COUNTS[0] in rows[0] and any(r["hole_ratio"] > 0 for r in rows):  # clean photos have no hole edges
        totals = (torch.tensor(sum(r[key] for r in rows), dtype=torch.float64) for key in EDGE_COUNTS)
        precision, recall = pooled_precision_recall(*totals)
        summary["edge_precision_hole"], summary["edge_recall_hole"] = precision.item(), recall.item()
    return {key: summary[key] for key in ("pairs", "hole_ratio", *METRIC_KEYS) if key in summary}


def summarize(rows: list[dict], labels: list[str], groups: Sequence[Sequence[str]]) -> dict[str, dict[str, float]]:
    """Report rows: each label of ``labels`` (in that order) that some pair counts in; pair row
    ``rows[i]`` counts in the labels ``groups[i]``."""
    members = {label: [row for row, group in zip(rows, groups) if label in group] for label in labels}
    return {label: summarize_group(group) for label, group in members.items() if group}


def lpips_metric(weights: str, net: str):
    """torchmetrics' LPIPS with the ``net`` backbone's ImageNet weights read from ``weights``.

    torchvision only downloads a weight file that is missing from its hub cache, so the file is
    put into a temporary cache under the name torchvision looks for; the linear layers on top ship
    inside torchmetrics. Nothing is downloaded. torchvision unpickles hub files in full, so what
    it gets is a copy of the bytes checked to hold no code (:func:`~common.checkpoint.checked_weights_bytes`)."""
    import torchvision.models
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"lpips_weights {path} does not exist")
    data = checked_weights_bytes(path, "lpips_weights")
    url = getattr(torchvision.models, LPIPS_BACKBONES[net]).DEFAULT.url
    previous = torch.hub.get_dir()
    with tempfile.TemporaryDirectory() as hub:
        cached = Path(hub) / "checkpoints" / Path(urlparse(url).path).name
        cached.parent.mkdir()
        cached.write_bytes(data)
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
    data = checked_weights_bytes(path, "fid_weights")  # torch-fidelity's own loader is not trusted with the path
    try:
        with tempfile.TemporaryDirectory() as folder:
            copy = Path(folder) / path.name
            copy.write_bytes(data)
            return NoTrainInceptionV3(
                name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(copy)
            )
    except Exception as err:  # torch.load / load_state_dict: any failure means wrong weights
        raise ConfigError(
            f"fid_weights {path} are not torch-fidelity's InceptionV3 weights: {str(err).splitlines()[0]}"
        ) from None


class PrecomputedFeatures(torch.nn.Module):
    """The "feature extractor" of a FID fed with Inception features computed beforehand, so each
    image goes through the Inception once however many FIDs (report rows) it counts in."""

    num_features = 2048

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class PerceptualMetrics:
    """LPIPS per pair and FID per method and report row, each only when its weights are given by
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

    def update_fid(self, method: str, output: torch.Tensor, image: torch.Tensor, groups) -> None:
        """Add ``method``'s batch ``(B, 3, H, W)`` to the FID of each report row its pairs count in
        (``groups``: the rows of each pair)."""
        if self.inception is None:
            return
        from torchmetrics.image.fid import FrechetInceptionDistance

        with torch.inference_mode():
            # uint8 as the Inception takes it, converted as torchmetrics' normalize=True converts
            fake, real = (self.inception((x * 255).byte().to(self.device)) for x in (output, image))
            for label in dict.fromkeys(label for group in groups for label in group):
                if (method, label) not in self.fid:
                    self.fid[method, label] = FrechetInceptionDistance(feature=PrecomputedFeatures()).to(self.device)
                chosen = torch.tensor([label in group for group in groups], device=self.device)
                self.fid[method, label].update(real[chosen], real=True)
                self.fid[method, label].update(fake[chosen], real=False)

    def fid_scores(self) -> dict[str, dict[str, float]]:
        """FID of every method and report row with at least two pairs: method -> row -> FID."""
        scores: dict[str, dict[str, float]] = {}
        for (method, label), metric in self.fid.items():
            if metric.fake_features_num_samples >= 2:
                scores.setdefault(method, {})[label] = metric.compute().item()
        return scores
