"""Evaluation (pipeline.evaluate and pipeline/evaluation/): identical inputs for every method, buckets,
aggregation, CLI."""

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import run_module

from common.errors import ConfigError
from data.damage import DAMAGE_KINDS
from data.masks import hole_ratio
from pipeline.evaluation.mask_set import BucketedTestMasks
from pipeline.evaluation.methods import Method, build_baselines, check_config
from pipeline.evaluation.metrics import PSNR_CAP, inception_features, lpips_metric, summarize
from pipeline.evaluation.pairs import assign_bucket, build_test_pairs, plan_damage_pairs, plan_pairs
from pipeline.model import BlindPipeline

# A quick setting of the bucketed protocol: 48-px test images, one mask per bucket, the first 6 pairs
# (1 image × 6 buckets), the method alone.
SMALL = (
    "protocol=buckets",
    "baselines=[]",
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


# A quick setting of the damage protocol: 48-px test images, one draw per kind, the first 12 pairs
# (2 images × (5 kinds + clean)), with the default baselines.
DAMAGE_SMALL = ("data.size=48", "per_kind=1", "limit=12", "data.num_workers=0", "batch_size=12", "progress=false")


def _evaluate(tmp_path, name, *overrides, base=SMALL) -> dict:
    """Run the CLI into ``tmp_path/name``; returns metrics.json (and checks the other files)."""
    out = tmp_path / name
    result = run_module("pipeline.evaluate", *base, *overrides, f"hydra.run.dir={out}")
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
    assert report["protocol"] == "buckets" and report["baselines"] == []
    assert all(list(methods) == [report["method"]] for methods in report["scores"].values())
    buckets = {label: methods[report["method"]] for label, methods in report["scores"].items()}
    assert list(buckets)[-1] == "all" and len(buckets) >= 2
    assert sum(row["pairs"] for label, row in buckets.items() if label != "all") == buckets["all"]["pairs"] == 6
    assert expected <= set(buckets["all"]) and not absent & set(buckets["all"])
    assert all(math.isfinite(buckets["all"][key]) for key in expected)
    assert [row["row"] for row in report["csv"]] == list(buckets)
    assert {row["method"] for row in report["csv"]} == {report["method"]}
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
    groups = [(row["bucket"], "all") for row in rows]
    report = summarize(rows, ["<1%", "1-10%", "10-20%", "30-40%", ">=60%", "all"], groups)
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
        (
            ["method=deepfill"],
            "error: unknown method 'deepfill'; expected one of ours, cifar_gan, glcic, latent_search, "
            "parallel_attention, pconv, telea",
        ),
        (["checkpoint=/no/such/model.safetensors"], "error: model file /no/such/model.safetensors does not exist"),
        (["method=telea", "mode=blind"], "error: method=telea mode=blind needs mask_checkpoint=MODEL"),
        (["checkpoint=m", "damage_kinds=[smudge]"], "error: damage_kinds: unknown name(s) smudge; expected any of"),
        (["checkpoint=m", "baselines=[deepfill]"], "error: baselines: unknown name(s) deepfill; expected any of"),
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
        (["checkpoint=m", "mask_checkpoint=m"], "mask_checkpoint= is for baselines"),
        (["method=telea", "mode=masked", "mask_checkpoint=m"], "used in mode=blind only"),
        (["method=telea", "checkpoint=m", "mask_checkpoint=m"], "checkpoint= is the model of method=ours"),
        (["checkpoint=m", "mode=denoise"], "mode must be one of blind, masked"),
        (["checkpoint=m", "protocol=lama"], "protocol must be one of damage, buckets"),
        (["checkpoint=m", "damage_kinds=[]"], "damage_kinds must name at least one kind"),
        (["checkpoint=m", "damage_kinds=[text,text]"], "damage_kinds lists a name twice"),
        (["checkpoint=m", "baselines=telea"], r"baselines must be a list of names \(e.g. baselines=\[telea\]\)"),
        (["checkpoint=m", "baselines=[telea,navier_stokes,telea]"], "baselines lists a name twice"),
    ],
)
def test_contradictory_settings_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_evaluate(*overrides))


@pytest.mark.parametrize("override", ["limit=0", "per_kind=0", "batch_size=0", "masks_per_bucket=-1", "grid_rows=-1"])
def test_counts_are_range_checked_by_the_schema(override):
    from common.config import check_config as check_ranges

    with pytest.raises(ConfigError, match=f"{override}: must be greater than or equal to"):
        check_ranges(compose_evaluate("checkpoint=m", override))


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


# -- protocol=damage ------------------------------------------------------------------------------

OURS, OWN, TRUE = "ours", "telea (own mask)", "telea (true mask)"


@pytest.fixture(scope="module")
def damage_run(smoke_run, tmp_path_factory):
    """Ours blind with Telea on its own and on the true mask, on 10 damaged and 2 clean pairs."""
    return _evaluate(
        tmp_path_factory.mktemp("evaluate_damage"), "ours", f"checkpoint={smoke_run['model']}", base=DAMAGE_SMALL
    )


def test_damage_protocol_reports_kinds_buckets_all_damaged_and_clean(damage_run):
    report = damage_run
    assert report["protocol"] == "damage" and report["num_pairs"] == 12 and report["num_images"] == 2
    assert report["damage_kinds"] == list(DAMAGE_KINDS) and report["per_kind"] == 1
    assert report["baselines"] == [OWN, TRUE] and report["psnr_cap_db"] == PSNR_CAP
    scores = report["scores"]
    labels = list(scores)
    assert labels[:5] == list(DAMAGE_KINDS) and labels[-2:] == ["all damaged", "clean"]
    buckets = labels[5:-2]
    assert buckets and all(label.endswith("%") for label in buckets)
    assert all(list(methods) == [OURS, OWN, TRUE] for methods in scores.values())
    assert all(scores[kind][OURS]["pairs"] == 2 for kind in DAMAGE_KINDS)
    assert sum(scores[b][OURS]["pairs"] for b in buckets) == scores["all damaged"][OURS]["pairs"] == 10
    assert scores["clean"][OURS]["pairs"] == 2 and scores["clean"][OURS]["hole_ratio"] == 0
    assert [(line["row"], line["method"]) for line in report["csv"]] == [
        (label, method) for label in labels for method in (OURS, OWN, TRUE)
    ]
    assert "PSNR is capped at 100 dB" in report["stdout"]


def test_damage_rows_have_the_repair_and_mask_scores(damage_run):
    damaged = damage_run["scores"]["all damaged"]
    ours, own, true = damaged[OURS], damaged[OWN], damaged[TRUE]
    both = {"psnr", "psnr_input", "ssim", "psnr_hole", "final_iou", "flagged", "flagged_max", "soft_mask"}
    assert both | {"mask_iou", "edge_precision_hole"} <= set(ours)
    assert both | {"mask_iou"} <= set(own) and both <= set(true) and "mask_iou" not in true
    assert ours["psnr_input"] == own["psnr_input"] == true["psnr_input"] < PSNR_CAP  # one damaged input
    for key in ("final_iou", "mask_iou", "flagged", "flagged_max", "soft_mask"):  # Telea filled our mask
        assert own[key] == ours[key]
    assert 0 < true["final_iou"] <= 1 and 0 < true["flagged"] <= true["flagged_max"] <= 1
    assert all(math.isfinite(value) for row in damaged.values() for value in row.values())


def test_clean_row_says_how_much_of_a_clean_photo_is_painted_over(damage_run):
    clean = damage_run["scores"]["clean"]
    assert clean[TRUE]["psnr"] == PSNR_CAP and clean[TRUE]["ssim"] == 1  # nothing to fill: the photo as it was
    assert clean[TRUE]["flagged"] == clean[TRUE]["flagged_max"] == clean[TRUE]["soft_mask"] == 0
    for row in clean.values():
        assert row["psnr_input"] == PSNR_CAP and row["psnr"] <= PSNR_CAP
        assert 0 <= row["flagged"] <= row["flagged_max"] <= 1 and 0 <= row["soft_mask"] <= 1
        assert not {"psnr_hole", "final_iou", "mask_iou", "edge_precision_hole"} & set(row)  # no true hole
    assert clean[OWN]["flagged"] == clean[OURS]["flagged"]


def test_damage_pairs_csv_has_one_line_per_pair_and_method(damage_run):
    lines = damage_run["pairs_csv"]
    assert len(lines) == 12 * 3
    assert [line["method"] for line in lines[:3]] == [OURS, OWN, TRUE]
    assert {line["pair"] for line in lines} == {str(n) for n in range(12)}
    assert [line["kind"] for line in lines[::3]] == [*DAMAGE_KINDS, "clean"] * 2
    assert all((line["bucket"] == "") == (line["kind"] == "clean") for line in lines)
    assert all(float(line["psnr"]) == PSNR_CAP for line in lines if line["kind"] == "clean" and line["method"] == TRUE)


def test_damage_pairs_are_a_pure_function_of_seed_image_kind_and_draw():
    full = build_test_pairs(compose_evaluate(*DAMAGE_SMALL, "checkpoint=any"))
    again = build_test_pairs(compose_evaluate(*DAMAGE_SMALL, "method=telea", "mode=masked"))
    text_only = build_test_pairs(compose_evaluate(*DAMAGE_SMALL, "checkpoint=any", "damage_kinds=[text]"))
    assert full.pairs == plan_damage_pairs(len(full.images), DAMAGE_KINDS, 1)[:12] == again.pairs
    assert text_only.pairs[:2] == [(0, "text", 0), (0, None, 0)]
    for n in range(len(full)):
        for key in ("image", "corrupted", "mask"):
            assert torch.equal(full[n][key], again[n][key]), (n, key)
    assert torch.equal(full[1]["corrupted"], text_only[0]["corrupted"])  # the same text, whatever the other kinds
    clean = full[5]
    assert torch.equal(clean["corrupted"], clean["image"]) and not clean["mask"].any() and clean["hole_ratio"] == 0
    assert full.groups(5, 0.0) == ("clean",) and full.groups(1, 0.05) == ("text", "1-10%", "all damaged")


def test_baselines_run_on_the_true_mask_only_in_masked_mode():
    cfg = compose_evaluate("baselines=[telea,biharmonic]")
    blind = build_baselines(cfg, Method("ours", "blind", None, BlindPipeline()))
    masked = build_baselines(cfg, Method("ours", "masked", None, BlindPipeline()))
    assert [b.label for b in blind] == [
        "telea (own mask)",
        "telea (true mask)",
        "biharmonic (own mask)",
        "biharmonic (true mask)",
    ]
    assert [b.label for b in masked] == ["telea (true mask)", "biharmonic (true mask)"]


def test_masked_mode_gives_ours_and_every_baseline_the_same_binary_hole():
    """As a user hands one mask file to any tool: the true mask through the model's mask rule,
    made binary, for ours and for the baselines alike."""
    given = {}

    class Recorder:
        def inpaint(self, corrupted, mask, mode):
            given["ours"] = mask
            return {"output": corrupted, "mask": mask, "edges": torch.zeros_like(mask)}

    pipeline = BlindPipeline(hole_threshold=0.9, soft_floor=0.5, dilate=1)
    true = torch.zeros(1, 1, 24, 24)
    true[..., 4:10, 4:12], true[..., 14:20, 6:18], true[..., 2:4, 16:22] = 1.0, 0.7, 0.3
    corrupted = torch.rand(1, 3, 24, 24)
    ours = Method("ours", "masked", Recorder(), pipeline)(corrupted, true)
    telea = build_baselines(compose_evaluate("baselines=[telea]"), Method("ours", "masked", None, pipeline))[0]
    hole = telea(corrupted, true, ours["mask"])["mask"]
    assert torch.equal(given["ours"], hole) and torch.equal(ours["mask"], hole)
    assert set(hole.unique().tolist()) == {0.0, 1.0}
    assert hole[..., 3, 5] == 1 and hole[..., 16, 10] == 1 and hole[..., 3, 18] == 0  # grown core, m ≥ 0.5, faint


@pytest.mark.parametrize("which", ["lpips", "fid"])
def test_weights_files_carrying_code_are_refused_before_any_library_unpickles_them(tmp_path, which):
    """torchvision's hub loader and torch-fidelity unpickle weights in full; they only ever get a
    private copy of bytes that torch.load(weights_only=True) accepted, so no code in the file runs."""
    from common.errors import CheckpointError

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    torch.save({"features.0.weight": Exploit()}, evil)
    load = (lambda p: lpips_metric(p, "alex")) if which == "lpips" else inception_features
    try:
        import torch_fidelity  # noqa: F401
    except ImportError:
        if which == "fid":
            pytest.skip("torch-fidelity is not installed: fid_weights= is refused before reading the file")
    with pytest.raises(CheckpointError, match="not a plain weights file"):
        load(str(evil))
    assert not marker.exists()


# -- other tools: export the pairs, score their predictions ---------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The 12 small damage pairs written out, and an "other tool" (OpenCV's Telea, run on the
    exported 8-bit files as any outside program would) that filled them into ``predictions/``."""
    import cv2

    root = tmp_path_factory.mktemp("external")
    folder = root / "pairs"
    result = run_module("pipeline.evaluate", *DAMAGE_SMALL, f"export_pairs={folder}", f"hydra.run.dir={root / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = root / "predictions"
    predictions.mkdir()
    for image in sorted((folder / "images").iterdir()):
        bgr = cv2.imread(str(image))
        hole = cv2.imread(str(folder / "masks" / image.name), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(predictions / image.name), cv2.inpaint(bgr, hole, 3, cv2.INPAINT_TELEA))
    (predictions / "pairs.json").write_bytes((folder / "pairs.json").read_bytes())
    return folder, predictions, result


def test_export_writes_every_pair_as_other_tools_read_them(exported):
    folder, _, result = exported
    assert sorted(p.name for p in folder.iterdir()) == ["images", "lama", "masks", "pairs.json", "truth"]
    names = [f"{n:06d}.png" for n in range(12)]
    for sub in ("images", "masks", "truth"):  # IOPaint's layout: the same names in two folders
        assert sorted(p.name for p in (folder / sub).iterdir()) == names
    lama = sorted(p.name for p in (folder / "lama").iterdir())  # LaMa's: <name>.png beside <name>_mask.png
    assert lama[:3] == ["000000.png", "000000_mask.png", "000001.png"] and len(lama) == 24
    assert (folder / "lama" / "000004_mask.png").read_bytes() == (folder / "masks" / "000004.png").read_bytes()
    index = json.loads((folder / "pairs.json").read_text())
    assert len(index["pairs"]) == 12 and index["settings"]["per_kind"] == 1
    clean = [p["pair"] for p in index["pairs"] if p["kind"] == "clean"]
    assert len(clean) == 2
    from PIL import Image

    for pair in range(12):
        hole = np.asarray(Image.open(folder / "masks" / f"{pair:06d}.png"))
        assert hole.shape == (48, 48) and set(np.unique(hole)) <= {0, 255}
        assert (hole.max() == 0) == (pair in clean)  # a clean photo has no hole
    assert "12 test pairs written" in result.stdout
    again = run_module("pipeline.evaluate", *DAMAGE_SMALL, f"export_pairs={folder}", f"hydra.run.dir={folder}_run")
    assert again.returncode != 0 and "exists and is not an empty folder" in again.stderr  # nothing overwritten


def test_predictions_are_scored_in_the_same_table(exported, tmp_path):
    _, predictions, _ = exported
    report = _evaluate(
        tmp_path, "scored", "method=predictions", "mode=masked", f"predictions={predictions}", base=DAMAGE_SMALL
    )
    assert report["method"] == "predictions" and report["num_pairs"] == 12
    # The other tool ran Telea on the exported holes: it scores as our Telea baseline on the same
    # holes does, up to the 8-bit rounding of the files it read.
    for row in ("text", "all damaged"):
        ours = report["scores"][row]["predictions"]["psnr_hole"]
        telea = report["scores"][row]["telea (true mask)"]["psnr_hole"]
        assert abs(ours - telea) < 0.5, (row, ours, telea)
    assert report["scores"]["clean"]["predictions"]["psnr"] > 40  # an untouched clean photo


def test_predictions_missing_misfit_or_for_other_pairs_are_one_line_errors(exported, tmp_path):
    import shutil

    _, predictions, _ = exported
    broken = tmp_path / "broken"
    shutil.copytree(predictions, broken)
    (broken / "000003.png").unlink()
    cases = {
        "missing": ([f"predictions={broken}"], "no 000003.png"),
        "other pairs": ([f"predictions={predictions}", "seed=1"], "describes other test pairs"),
    }
    for name, (overrides, message) in cases.items():
        result = run_module(
            "pipeline.evaluate", *DAMAGE_SMALL, "method=predictions", "mode=masked", *overrides,
            f"hydra.run.dir={tmp_path / name}",
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
    with pytest.raises(ConfigError, match="use mode=masked"):
        check_config(compose_evaluate("method=predictions", "mode=blind", f"predictions={predictions}"))
    with pytest.raises(ConfigError, match="go together"):
        check_config(compose_evaluate("method=predictions", "mode=masked"))


# -- the other systems' trained stages in the same table -----------------------------------------


@pytest.fixture(scope="module")
def stage_runs(tmp_path_factory):
    """stage=pconv, stage=glcic and stage=glcic with the parallel-attention network trained for a
    few smoke steps: ``{method: run folder}``."""
    from pipeline.training.stage import train
    from tests.conftest import compose_train

    runs = {}
    for method, stage, overrides in [
        ("pconv", "pconv", []),
        ("glcic", "glcic", []),
        ("parallel_attention", "glcic", ["stage/generator=parallel_attention"]),
    ]:
        folder = tmp_path_factory.mktemp(method)
        train(compose_train(folder, stage, *overrides, f"hydra.run.dir={folder}"), folder)
        runs[method] = folder
    return runs


@pytest.mark.parametrize("stage", ["pconv", "glcic", "parallel_attention"])
def test_a_trained_stage_is_scored_in_the_same_table(stage_runs, smoke_run, damage_run, stage, tmp_path):
    masked = _evaluate(tmp_path, "masked", f"method={stage}", "mode=masked", f"checkpoint={stage_runs[stage]}",
                       base=DAMAGE_SMALL)  # fmt: skip
    assert masked["method"] == stage and masked["num_pairs"] == 12
    row = masked["scores"]["all damaged"]
    assert {stage, "telea (true mask)"} <= set(row) and set(row[stage]) >= IMAGE_KEYS
    assert masked["scores"]["clean"][stage]["psnr"] > 40  # no hole: the photo comes back as it was
    assert masked["inputs_sha256"] == damage_run["inputs_sha256"]  # the same pairs as every method
    if stage == "pconv":
        return
    blind = _evaluate(tmp_path, "blind", f"method={stage}", f"checkpoint={stage_runs[stage]}",
                      f"mask_checkpoint={smoke_run['model']}", base=DAMAGE_SMALL)  # fmt: skip
    assert set(blind["scores"]["all damaged"][stage]) >= MASK_KEYS  # blind: the MPN's mask, scored too


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["method=glcic", "mode=masked"], "method=glcic needs checkpoint="),
        (["method=pconv"], "method=pconv needs checkpoint="),
    ],
)
def test_a_stage_method_without_its_checkpoint_is_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_evaluate(*overrides))


def test_a_checkpoint_of_another_stage_is_a_one_line_error(stage_runs, tmp_path):
    result = run_module("pipeline.evaluate", *DAMAGE_SMALL, "method=glcic", "mode=masked",
                        f"checkpoint={stage_runs['pconv']}", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode != 0 and "holds a 'pconv' model, not 'glcic'" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_glcic_run_of_the_other_network_names_its_method(stage_runs, tmp_path):
    """stage=glcic trains either network; each is scored as its own method."""
    result = run_module("pipeline.evaluate", *DAMAGE_SMALL, "method=glcic", "mode=masked",
                        f"checkpoint={stage_runs['parallel_attention']}", f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode != 0 and "holds the parallel_attention network" in result.stderr, result.stderr
    assert "use method=parallel_attention" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "stage, method, size",
    [("dcgan", "latent_search", 64), ("cifar_gan", "cifar_gan", 32)],
)
def test_small_systems_are_scored_at_their_native_size(smoke_run, damage_run, tmp_path, stage, method, size):
    """method=latent_search (a DCGAN run), method=cifar_gan: the pairs are resized to the native
    size for it and the baselines beside it, and its row says so; the inputs are the same pairs as
    every method's."""
    from pipeline.training.stage import train
    from tests.conftest import compose_train

    folder = tmp_path / stage
    overrides = ["stage.module.val_search_steps=2"] if stage == "dcgan" else []
    train(compose_train(folder, stage, *overrides, f"hydra.run.dir={folder}"), folder)
    report = _evaluate(
        tmp_path, method, f"method={method}", "mode=masked", f"checkpoint={folder}",
        base=DAMAGE_SMALL,
    )  # fmt: skip
    assert report["method"] == f"{method} ({size}²)" and report["native_size"] == size
    assert report["inputs_sha256"] == damage_run["inputs_sha256"]
    row = report["scores"]["all damaged"]
    assert {f"{method} ({size}²)", "telea (true mask)"} <= set(row)
    assert report["scores"]["clean"][f"{method} ({size}²)"]["psnr"] > 40


def test_a_folder_of_photos_is_evaluated_with_the_default_workers(tmp_path):
    """``data=folder`` leaves ``num_workers`` null (the loader picks): evaluation on any folder of
    photos, as the README's outside-photos command runs it, must not pass it to the DataLoader."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(2):
        (tmp_path / "photos" / "test").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
            tmp_path / "photos" / "test" / f"{i}.png"
        )
    base = ("data=folder", f"data.dataset.root={tmp_path / 'photos'}", "data.size=48", "per_kind=1", "limit=4",
            "progress=false", "method=telea", "mode=masked")  # fmt: skip
    report = _evaluate(tmp_path, "folder", base=base)
    assert len(report["pairs_csv"]) >= 4


def test_the_denoise_protocol_scores_ours_beside_the_classical_denoisers(tmp_path):
    from pipeline.evaluation.run import evaluate

    cfg = compose_evaluate("protocol=denoise", "data.size=128", "limit=9", "progress=false", "data.num_workers=0")
    report = evaluate(cfg, tmp_path)
    scores = report["scores"]
    assert list(scores) == ["clean", *list(scores)[1:]] and len(scores) == 9  # one image: clean and 8 noises
    assert scores["clean"]["ours (denoise)"]["psnr"] == scores["clean"]["ours (blind)"]["psnr"] == 100
    noisy = scores["gaussian σ25"]
    assert {"input", "ours (denoise)", "ours (blind)", "nlm", "nlm (true σ)", "median 3×3", "floor"} <= set(noisy)
    assert noisy["ours (denoise)"]["psnr"] > noisy["input"]["psnr"] + 3
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "denoise_examples.png").is_file()
    with pytest.raises(ConfigError, match="method=ours"):
        evaluate(compose_evaluate("protocol=denoise", "method=telea", "mode=masked"), tmp_path)
