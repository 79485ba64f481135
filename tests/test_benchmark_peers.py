"""``pipeline.benchmark_peers``: our networks against peers' checkouts, each in a fresh process.

The real peers (EdgeConnect, DeepFill v2's PyTorch port, Pytorch-UNet) cannot be downloaded here, so
stand-in checkouts with the same module paths and constructor signatures are written to a temporary
folder; the README gives the measured table from the real ones."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import run_module

EDGECONNECT = """
import torch
from torch import nn


class EdgeGenerator(nn.Module):
    def __init__(self, residual_blocks=8, use_spectral_norm=True, init_weights=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))
"""


@pytest.fixture
def edgeconnect(tmp_path):
    checkout = tmp_path / "edge-connect"
    (checkout / "src").mkdir(parents=True)
    (checkout / "src" / "__init__.py").write_text("")
    (checkout / "src" / "networks.py").write_text(textwrap.dedent(EDGECONNECT))
    return checkout


def test_compares_our_epn_with_the_peer_in_fresh_processes(tmp_path, edgeconnect):
    out = tmp_path / "peers.json"
    result = run_module(
        "pipeline.benchmark_peers",
        f"peers.edgeconnect={edgeconnect}",
        "size=32",
        "rounds=2",
        "warmup=0",
        "repeats=1",
        "threads=1",
        "train_batch=2",
        f"out={out}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    # Only the pairs whose peers were given: the EPN's, forward and forward + backward.
    assert [(r["pair"], r["mode"], r["batch"]) for r in rows] == [
        ("EPN vs EdgeConnect edge G", "forward", 1),
        ("EPN vs EdgeConnect edge G", "train", 2),
    ]
    for row in rows:
        ours, theirs = row["ours"], row["theirs"]
        assert ours["parameters"] == 10_761_089  # our full-width edge generator; the stand-in has 28
        assert theirs["parameters"] == 28
        assert len(ours["rounds"]) == len(theirs["rounds"]) == 2
        per_round = sorted(o / t for o, t in zip(ours["rounds"], theirs["rounds"], strict=True))
        assert row["ratio"] == pytest.approx(sum(per_round) / 2)  # the median of two rounds
    assert rows[0]["ours"]["flops"] > rows[0]["theirs"]["flops"] > 0
    assert "ratio" in result.stdout


def test_a_missing_checkout_or_none_at_all_is_a_one_line_error(tmp_path):
    missing = run_module("pipeline.benchmark_peers", f"peers.unet={tmp_path / 'nowhere'}")
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "is not a folder" in missing.stderr
    none = run_module("pipeline.benchmark_peers")
    assert none.returncode != 0 and "Traceback" not in none.stderr
    assert "no peer checkout given" in none.stderr
