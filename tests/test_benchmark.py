"""`python -m pipeline.benchmark`: FLOP counting, peak memory, and the CLI end to end at tiny widths."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from common.errors import ConfigError
from pipeline.benchmarking.measure import PARTS, STAGES, PeakMemory, Timing, _names, chosen_device, count_flops
from tests.conftest import run_module

# Tiny everything; one thread, so the test stays fast while another process shares the CPU. On the
# CPU also on a GPU machine: the channels-last tolerance below is for the same CPU kernels.
TINY = [
    "device=cpu",
    "width_mult=0.125",
    "sizes=[32]",
    "train.size=32",
    "train.batch_size=2",
    "warmup=1",
    "repeats=2",
    "peak.matmul_sizes=[64,128]",
    "threads=1",
    "data_batches=3",
    "photos.megapixels=[0.3]",  # above the working size: the large path
    "photos.folder=2",
    "photos.baseline_size=48",
    "photos.baselines=[telea]",
    "skip=[startup]",  # its own test below
    "photos.repeats=1",
]


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_flops_are_the_hand_count(stride):
    """A k×k convolution costs 2·Cin·Cout·k² FLOPs per output pixel (a multiply and an add)."""
    c_in, c_out, k, size = 3, 8, 3, 16
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=1, bias=False)
    x = torch.rand(1, c_in, size, size)
    flops, out = count_flops(lambda: conv(x))
    h, w = out.shape[-2:]
    assert (h, w) == (size // stride, size // stride)
    assert flops == 2 * c_in * c_out * k * k * h * w


def test_timing_summary():
    t = Timing.of([3.0, 1.0, 2.0, 5.0, 4.0])
    assert (t.median, t.min, t.max, t.q1, t.q3, t.repeats) == (3.0, 1.0, 5.0, 2.0, 4.0, 5)
    assert Timing.of([0.5]).q1 == Timing.of([0.5]).q3 == 0.5


def test_cpu_peak_memory_sees_a_temporary_allocation():
    with PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, written so it is resident
        del block
    assert memory.peak_bytes > 0
    if memory.increase_bytes is not None:  # None where /proc/self/clear_refs is refused
        assert memory.increase_bytes > 48 * 2**20


def test_cli_measures_every_stage_and_the_pipeline(tmp_path):
    out = tmp_path / "b.json"
    result = run_module(
        "pipeline.benchmark",
        *TINY,
        "variants=[fp32,bf16,channels_last]",
        "pipeline_batches=[1,2]",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())

    machine = report["machine"]
    assert machine["device"] in ("cpu", "cuda") and machine["threads"] == 1 and machine["torch"] == torch.__version__
    assert report["peak"]["fp32"]["flops_per_s"] > 0
    variants = report["settings"]["variants_run"]
    if not machine["bf16_fast"]:
        assert variants == ["fp32", "channels_last"] and "skipping bf16" in result.stderr
    assert {"fp32", "channels_last"} <= set(variants)

    trained = {(r["stage"], r["network"], r["variant"]) for r in report["train"]}
    expected = {("mpn", "generator")} | {(s, n) for s in ("epn", "ipn") for n in ("generator", "discriminator")}
    assert trained == {(s, n, v) for s, n in expected for v in variants}
    for row in report["train"]:
        assert row["batch_size"] == 2 and row["size"] == 32
        assert row["images_per_s"] > 0 and row["flops_per_image"] > 0 and row["time_s"]["median"] > 0

    shipped = [r for r in report["pipeline"] if r["stage"].startswith("shipped")]
    single = [r for r in shipped if r["batch_size"] == 1]  # intact vs damaged photo
    assert sorted(r["stage"] for r in single) == ["shipped clean", "shipped damaged"]
    assert all(r["variant"] == "fp32" and r["size"] == 32 and r["latency_s"] > 0 for r in single)
    # The shipped model on a batch of damaged photos, in each precision (not memory layout: its own).
    batched = [r for r in shipped if r["batch_size"] == 2]
    assert sorted(r["variant"] for r in batched) == sorted(v for v in variants if v != "channels_last")
    assert all(r["stage"] == "shipped damaged" and r["images_per_s"] > 0 for r in batched)
    assert all(r["mean_abs_diff_vs_fp32"] <= r["max_abs_diff_vs_fp32"] for r in batched if r["variant"] != "fp32")
    report["pipeline"] = [r for r in report["pipeline"] if r not in shipped]
    inferred = {(r["stage"], r["variant"]) for r in report["inference"] + report["pipeline"]}
    assert inferred == {(s, v) for s in (*STAGES, "pipeline") for v in variants}
    for row in report["inference"] + report["pipeline"]:
        assert row["size"] == 32 and row["latency_s"] > 0 and row["flops_per_image"] > 0 and row["flops_per_s"] > 0
        assert row["peak_memory_bytes"] > 0
        if row["variant"] == "channels_last":  # same arithmetic, other memory order
            assert row["max_abs_diff_vs_fp32"] < 1e-3
    assert sorted((r["batch_size"], r["variant"]) for r in report["pipeline"]) == sorted(
        (b, v) for b in (1, 2) for v in variants
    )
    for row in report["pipeline"]:
        assert row["images_per_s"] == pytest.approx(row["batch_size"] / row["latency_s"])
    assert set(report["networks"]) == set(STAGES)
    assert "Training step" in result.stdout and "Inference" in result.stdout

    # The loader of each stage's training data, at the training step's batch and size.
    assert [(r["stage"], r["edges"]) for r in report["data"]] == [
        ("mpn", "no"),
        ("epn", "yes (worker)"),
        ("ipn", "yes (worker)"),
    ]
    for row in report["data"]:
        assert row["batch_size"] == 2 and row["size"] == 32 and row["batches"] == 3 and row["workers"] == 2
        assert row["samples_per_s"] > 0
    assert "Data loading" in result.stdout

    # Photos as users run them: a large photo with each strategy, a folder, a baseline beside ours.
    photos = {(r["kind"], r["what"]): r for r in report["photos"]}
    assert set(photos) == {("large", "large=crop"), ("large", "large=resize"), ("folder", "2 photos"),
                           ("fill", "blindfill (masked)"), ("fill", "telea")}  # fmt: skip
    for key in (("large", "large=crop"), ("large", "large=resize")):
        row = photos[key]
        assert row["size"] == [447, 671] and 0.5 < row["damage_pct"] < 10 and row["peak_memory_bytes"] > 0
        assert row["time_s"]["median"] > 0 and 0 <= row["changed_pct"] <= 100
    assert photos[("folder", "2 photos")]["images_per_s"] > 0
    assert photos[("fill", "telea")]["size"] == [48, 48]
    assert "Photos as users run them" in result.stdout
    assert len(report["peak"]["fp32"]["by_size"]) == 2


def test_parts_can_be_skipped(tmp_path):
    out = tmp_path / "b.json"
    result = run_module(
        "pipeline.benchmark",
        *TINY,
        "stages=[mpn]",
        "variants=[fp32]",
        "skip=[train,pipeline,data,photos,startup]",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["train"] == [] and report["pipeline"] == [] and report["data"] == [] and report["photos"] == []
    assert [(r["stage"], r["variant"]) for r in report["inference"]] == [("mpn", "fp32")]


def test_startup_is_measured_for_the_console_command_and_hydras(tmp_path):
    """``skip`` all but ``startup``: a fresh process answering ``--help``, ``blindfill`` (nothing
    heavy imported first) and ``python -m pipeline.inpaint`` (Hydra composing its config)."""
    out = tmp_path / "b.json"
    result = run_module(
        "pipeline.benchmark", "device=cpu", "skip=[peak,data,train,inference,pipeline,photos]", "repeats=1",
        f"out={out}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["command"]: r["time_s"] for r in json.loads(out.read_text())["startup"]}
    assert set(rows) == {"blindfill --help", "python -m pipeline.inpaint --help"}
    assert all(t["repeats"] == 1 and t["median"] > 0 for t in rows.values())
    assert rows["blindfill --help"]["median"] < rows["python -m pipeline.inpaint --help"]["median"]


def test_the_other_systems_stages_are_measured(tmp_path):
    """pconv, GLCIC, the parallel-attention network, the DCGAN and the CIFAR GAN: training steps of each network
    and inference — the DCGAN's is a latent search (autograd inside, under the FLOP counter)."""
    out = tmp_path / "b.json"
    result = run_module(
        "pipeline.benchmark", *TINY, "stages=[pconv,glcic,parallel_attention,dcgan,cifar_gan]", "variants=[fp32]",
        "skip=[pipeline,data,photos,peak,startup]", "models.dcgan.module.search_steps=3",
        "models.glcic.discriminator.global_layers=4", "models.glcic.discriminator.local_layers=3",
        "models.parallel_attention.discriminator.local_size=16",
        f"out={out}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {r["stage"] for r in report["inference"]} == {"pconv", "glcic", "parallel_attention", "dcgan", "cifar_gan"}
    assert report["networks"]["parallel_attention"]["generator"] > report["networks"]["glcic"]["generator"]
    assert all(r["flops_per_image"] > 0 and r["latency_s"] > 0 for r in report["inference"])
    trained = {(r["stage"], r["network"]) for r in report["train"]}
    assert {
        ("glcic", "generator"),
        ("glcic", "discriminator"),
        ("dcgan", "generator"),
        ("dcgan", "discriminator"),
    } <= trained
    searched = next(r for r in report["inference"] if r["stage"] == "dcgan")
    generated_once = next(r for r in report["train"] if r["stage"] == "dcgan" and r["network"] == "generator")
    # three steps, each through G and D forward and backward, as a generator training step is once
    assert 2.5 < searched["flops_per_image"] / generated_once["flops_per_image"] < 3.5


def test_an_unknown_variant_is_a_one_line_error(tmp_path):
    result = run_module(
        "pipeline.benchmark", "variants=[fp32,fp16]", f"out={tmp_path / 'b.json'}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: unknown variant 'fp16'")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("stages", ["mpn", "gan"], "unknown stage 'gan'"),
        ("skip", "everything", "unknown part 'everything'"),
        ("device", "tpu", "unknown device 'tpu'"),
    ],
)
def test_unknown_names_are_reported(key, value, message):
    cfg = OmegaConf.create({"device": "cpu", "stages": ["mpn"], "skip": [], key: value})
    with pytest.raises(ConfigError, match=message):
        chosen_device(cfg)
        _names(cfg, "stages", STAGES, "stage")
        _names(cfg, "skip", PARTS, "part")
