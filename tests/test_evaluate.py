"""Evaluation (pipeline.evaluate and pipeline/evaluation/): identical inputs for every method, buckets,
aggregation, CLI."""

import csv
import json
import math

import pytest
import torch
from conftest import run_module

from common.errors import ConfigError
from data.masks import hole_ratio
from data.test_masks import BucketedTestMasks
from pipeline.evaluation.methods import check_config
from pipeline.evaluation.metrics import inception_features, lpips_metric, summarize
from pipeline.evaluation.pairs import assign_bucket, build_test_pairs, plan_pairs

# A quick setting: 48-px test images, one mask per bucket, the first 6 pairs (1 image × 6 buckets).
SMALL = (
    "data.size=48",
    "masks_per_bucket=1",
    "mask_set_size=4",
    "limit=6",
    "data.num_workers=0",
    "batch_size=6",
    "progress=false",
)
BUCKETS = ((0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))


def compose_evaluate(*overrides):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base="1.3"):
        return compose("evaluate", list(overrides))


def _evaluate(tmp_path, name, *overrides) -> dict:
    """Run the CLI into ``tmp_path/name``; returns metrics.json (and checks the other files)."""
    out = tmp_path / name
    result = run_module("pipeline.evaluate", *SMALL, *overrides, f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "worst_best.png").is_file()
    report = json.loads((out / "metrics.json").read_text())
    with (out / "metrics.csv").open() as f:
        report["csv"] = list(csv.DictReader(f))
    with (out / "pairs.csv").open() as f:
        report["pairs_csv"] = list(csv.DictReader(f))
    report["stdout"] = result.stdout
    return report


@pytest.fixture(scope="module")
def squeeze_weights(tmp_path_factory):
    """Stand-in LPIPS backbone weights (random SqueezeNet 1.1, in torchvision's format)."""
    import torchvision

    path = tmp_path_factory.mktemp("lpips") / "squeeze.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def runs(smoke_run, squeeze_weights, tmp_path_factory):
    """Ours blind (with LPIPS), ours masked, and Telea with the same model's MPN, on the same pairs."""
    tmp = tmp_path_factory.mktemp("evaluate")
    model = smoke_run["model"]
    return {
        "ours_blind": _evaluate(
            tmp, "ours_blind", f"checkpoint={model}", f"lpips_weights={squeeze_weights}", "lpips_net=squeeze"
        ),
        "ours_masked": _evaluate(tmp, "ours_masked", f"checkpoint={model}", "mode=masked"),
        "telea_blind": _evaluate(tmp, "telea_blind", "method=telea", f"mask_checkpoint={model}"),
    }


IMAGE_KEYS = {"psnr", "ssim", "l1", "psnr_hole", "ssim_hole", "l1_hole"}
MASK_KEYS = {"mask_iou", "mask_bce", "mask_mae"}
EDGE_KEYS = {"edge_precision_hole", "edge_recall_hole"}


@pytest.mark.parametrize(
    "name, expected, absent",
    [
        ("ours_blind", IMAGE_KEYS | MASK_KEYS | EDGE_KEYS | {"lpips"}, {"fid"}),
        ("ours_masked", IMAGE_KEYS | EDGE_KEYS, MASK_KEYS | {"lpips", "fid"}),
        ("telea_blind", IMAGE_KEYS | MASK_KEYS, EDGE_KEYS | {"lpips", "fid"}),
    ],
)
def test_cli_reports_buckets_and_the_expected_metrics(runs, name, expected, absent):
    report = runs[name]
    assert report["num_pairs"] == 6 and report["num_images"] == 1 and report["time_per_image_s"] > 0
    assert report["method"] == ("telea" if name.startswith("telea") else "ours") and report["seed"] == 0
    assert report["data"]["size"] == 48 and report["mask_set"]["size"] == [48, 48]
    buckets = report["buckets"]
    assert list(buckets)[-1] == "all" and len(buckets) >= 2
    assert sum(row["pairs"] for label, row in buckets.items() if label != "all") == buckets["all"]["pairs"] == 6
    assert expected <= set(buckets["all"]) and not absent & set(buckets["all"])
    assert all(math.isfinite(buckets["all"][key]) for key in expected)
    assert [row["bucket"] for row in report["csv"]] == list(buckets)
    assert len(report["pairs_csv"]) == 6
    assert ("FID skipped" in report["stdout"]) and ("LPIPS skipped" in report["stdout"]) == ("lpips" not in expected)
    assert set(report["skipped"]) == {"fid"} | ({"lpips"} if "lpips" not in expected else set())


def test_every_method_and_mode_saw_the_same_inputs(runs):
    digests = {name: report["inputs_sha256"] for name, report in runs.items()}
    assert len(set(digests.values())) == 1, digests
    pairs = {
        name: [(r["image_name"], r["mask_file"], r["hole_ratio"]) for r in report["pairs_csv"]]
        for name, report in runs.items()
    }
    assert pairs["ours_blind"] == pairs["ours_masked"] == pairs["telea_blind"]


def test_telea_with_our_mpn_gets_exactly_our_masks(runs):
    ours, telea = runs["ours_blind"]["pairs_csv"], runs["telea_blind"]["pairs_csv"]
    for key in ("mask_iou", "mask_bce", "mask_mae"):
        assert [float(r[key]) for r in ours] == [float(r[key]) for r in telea]


def test_inputs_are_bit_identical_whatever_the_method():
    ours = build_test_pairs(compose_evaluate(*SMALL, "checkpoint=any"))
    telea = build_test_pairs(compose_evaluate(*SMALL, "method=telea", "mode=masked"))
    assert ours.pairs == telea.pairs and len(ours) == 6
    for n in range(len(ours)):
        a, b = ours[n], telea[n]
        for key in ("image", "corrupted", "mask"):
            assert torch.equal(a[key], b[key]), (n, key)
    assert not torch.equal(ours[0]["corrupted"], ours[1]["corrupted"])  # each pair its own corruption
    assert not torch.equal(ours[0]["corrupted"], ours[0]["image"])


def test_pairs_cycle_through_each_buckets_masks():
    masks = BucketedTestMasks(size=32, per_bucket=2, seed=0)  # 4 entries per bucket: 2 without border, 2 with
    pairs = plan_pairs(3, masks, masks_per_bucket=1)
    assert len(pairs) == 3 * 6
    assert [k for i, k in pairs if i == 2] == [4 * b + 2 for b in range(6)]  # image 2 -> third entry of each bucket
    assert plan_pairs(3, masks, masks_per_bucket=2, limit=5) == [(0, 0), (0, 1), (0, 4), (0, 5), (0, 8)]


def test_bucket_assignment_by_hole_ratio():
    ratios = [0.005, 0.01, 0.0999, 0.1, 0.35, 0.5999, 0.6, 0.9]
    assert [assign_bucket(r, BUCKETS) for r in ratios] == [
        "<1%",
        "1-10%",
        "1-10%",
        "10-20%",
        "30-40%",
        "50-60%",
        ">=60%",
        ">=60%",
    ]
    mask = torch.zeros(10, 10)
    mask[:2, :] = 1  # 20 hole pixels
    mask[2, :3] = 0.7  # 3 more above 0.5
    mask[3, :] = 0.5  # not a hole: the ratio counts mask > 0.5
    assert hole_ratio(mask.numpy()) == 0.23 and assign_bucket(0.23, BUCKETS) == "20-30%"
    assert assign_bucket(0.15, ((0.0, 0.1), (0.2, 0.3))) == "other"


def test_aggregation_is_the_mean_of_per_pair_scores_and_pooled_edges():
    rows = [
        {
            "bucket": "1-10%",
            "hole_ratio": 0.05,
            "psnr": 20.0,
            "psnr_hole": 10.0,
            "edge_tp": 1,
            "edge_predicted": 4,
            "edge_true": 2,
        },
        {
            "bucket": "1-10%",
            "hole_ratio": 0.07,
            "psnr": 30.0,
            "psnr_hole": float("nan"),
            "edge_tp": 1,
            "edge_predicted": 0,
            "edge_true": 2,
        },
        {
            "bucket": "30-40%",
            "hole_ratio": 0.35,
            "psnr": 16.0,
            "psnr_hole": 12.0,
            "edge_tp": 0,
            "edge_predicted": 0,
            "edge_true": 0,
        },
    ]
    report = summarize(rows, ["<1%", "1-10%", "10-20%", "30-40%", ">=60%"])
    assert list(report) == ["1-10%", "30-40%", "all"]
    small, large, overall = report["1-10%"], report["30-40%"], report["all"]
    assert small["pairs"] == 2 and small["psnr"] == 25.0 and small["psnr_hole"] == 10.0  # NaN (empty hole) left out
    assert small["hole_ratio"] == pytest.approx(0.06)
    assert small["edge_precision_hole"] == 0.5 and small["edge_recall_hole"] == 0.5  # 2 / 4 and 2 / 4, pooled
    assert large["edge_precision_hole"] == 1.0 and large["edge_recall_hole"] == 1.0  # nothing to find, nothing found
    assert overall["pairs"] == 3 and overall["psnr"] == pytest.approx(22.0) and overall["psnr_hole"] == 11.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=deepfill"], "error: unknown method 'deepfill'; expected one of ours, telea"),
        (["checkpoint=/no/such/model.safetensors"], "error: model file /no/such/model.safetensors does not exist"),
        (["method=telea", "mode=blind"], "error: method=telea mode=blind needs mask_checkpoint=MODEL"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, overrides, message):
    result = run_module("pipeline.evaluate", *overrides, f"hydra.run.dir={tmp_path}")
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=ours"], "needs checkpoint="),
        (["checkpoint=m", "mask_checkpoint=m"], "mask_checkpoint= is for baselines"),
        (["method=telea", "mode=masked", "mask_checkpoint=m"], "used in mode=blind only"),
        (["method=telea", "checkpoint=m", "mask_checkpoint=m"], "checkpoint= is the model of method=ours"),
        (["checkpoint=m", "mode=denoise"], "mode must be one of blind, masked"),
        (["checkpoint=m", "limit=0"], "limit must be at least 1"),
    ],
)
def test_contradictory_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_evaluate(*overrides))


def test_lpips_loads_its_backbone_from_the_path_only(squeeze_weights, tmp_path):
    metric = lpips_metric(str(squeeze_weights), "squeeze")  # no internet here: a download would fail
    saved = torch.load(squeeze_weights)
    assert torch.equal(metric.net.net.slices[0][0].weight, saved["features.0.weight"])
    x = torch.rand(2, 3, 48, 48)
    with torch.inference_mode():
        assert torch.allclose(metric(x, x), torch.zeros(2), atol=1e-6)
    with pytest.raises(ConfigError, match="are not torchvision's alex ImageNet weights"):
        lpips_metric(str(squeeze_weights), "alex")
    with pytest.raises(ConfigError, match="does not exist"):
        lpips_metric(str(tmp_path / "missing.pth"), "alex")


def test_fid_without_torch_fidelity_says_so(squeeze_weights):
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs the torch-fidelity package"):
            inception_features(str(squeeze_weights))
    else:
        with pytest.raises(ConfigError, match="are not torch-fidelity's InceptionV3 weights"):
            inception_features(str(squeeze_weights))
