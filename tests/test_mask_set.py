"""Tests of pipeline/evaluation/mask_set.py: the bucketed test-mask set (buckets, border band, purity, save /
load) and its command line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_masks import assert_valid, bbox, rng

from data.masks import MaskSourceError, hole_ratio
from pipeline.evaluation.mask_set import BucketedTestMasks, main

REPO = Path(__file__).resolve().parents[1]


def test_bucketed_default_set():
    ms = BucketedTestMasks()
    assert len(ms) == 6 * 2 * 100 and ms.size == (256, 256) and ms.border_px == 25
    start = time.perf_counter()
    counts = {}
    for k in range(len(ms)):
        mask, info = ms[k]
        lo, hi = info["bucket"]
        assert lo <= info["ratio"] < hi
        assert info["ratio"] == hole_ratio(mask)
        if info["border"]:
            b = ms.border_px
            assert not mask[:b].any() and not mask[-b:].any()
            assert not mask[:, :b].any() and not mask[:, -b:].any()
        counts[(info["bucket"], info["border"])] = counts.get((info["bucket"], info["border"]), 0) + 1
    elapsed = time.perf_counter() - start
    print(f"BucketedTestMasks default set: {len(ms)} masks in {elapsed:.2f} s")
    assert set(counts.values()) == {100} and len(counts) == 12


def test_bucketed_masks_look_free_form():
    ms = BucketedTestMasks(size=128, per_bucket=3)
    for k in range(len(ms)):
        mask, _ = ms[k]
        top, bottom, left, right = bbox(mask)
        assert mask.sum() < (bottom - top) * (right - left)  # not a filled rectangle


def test_bucketed_reproducible_and_pure():
    a = BucketedTestMasks(size=96, per_bucket=3, seed=4)
    b = BucketedTestMasks(size=96, per_bucket=3, seed=4)
    c = BucketedTestMasks(size=96, per_bucket=3, seed=5)
    bigger = BucketedTestMasks(size=96, per_bucket=5, seed=4)
    for k in range(len(a)):
        np.testing.assert_array_equal(a[k][0], b[k][0])
        assert not np.array_equal(a[k][0], c[k][0])
    # Mask i of (bucket, border) does not depend on how many masks the set has, nor on order.
    for k in reversed(range(len(a))):
        bucket, border, i = a.key(k)
        k_big = (2 * bucket + border) * 5 + i
        assert bigger.key(k_big) == (bucket, border, i)
        np.testing.assert_array_equal(a[k][0], bigger[k_big][0])


def test_bucketed_indexing_and_info():
    ms = BucketedTestMasks(size=64, per_bucket=2)
    assert ms.key(0) == (0, False, 0) and ms.key(2) == (0, True, 0) and ms.key(len(ms) - 1) == (5, True, 1)
    _mask, info = ms[-1]
    assert info["bucket"] == (0.5, 0.6) and info["border"] is True and info["index"] == 1
    with pytest.raises(IndexError):
        ms[len(ms)]
    assert ms.filename(2) == "0_0.01-0.10_border_0000.png"


def test_bucketed_as_generator_resizes():
    ms = BucketedTestMasks(size=64, per_bucket=2)
    r = rng(0)
    assert_valid(ms(64, 64, r), 64, 64)
    assert_valid(ms(128, 96, r), 128, 96)


def test_bucketed_infeasible():
    with pytest.raises(ValueError):
        BucketedTestMasks(size=256, border=200)

    def nothing(height, width, rng):
        return np.zeros((height, width), np.float32)

    with pytest.raises(RuntimeError, match="bucket 0"):
        BucketedTestMasks(size=32, per_bucket=1, source=nothing)[0]


def test_bucketed_save_load_roundtrip(tmp_path):
    ms = BucketedTestMasks(size=64, per_bucket=3, seed=2)
    out = ms.save(tmp_path / "set")
    names = sorted(p.name for p in out.glob("*.png"))
    assert len(names) == len(ms) and "5_0.50-0.60_noborder_0002.png" in names
    png = cv2.imread(str(out / names[0]), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8 and set(np.unique(png)) <= {0, 255}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["params"]["seed"] == 2 and manifest["params"]["size"] == [64, 64]
    assert len(manifest["files"]) == len(ms)

    loaded = BucketedTestMasks.load(out)
    assert len(loaded) == len(ms)
    for k in range(len(ms)):
        (m1, i1), (m2, i2) = ms[k], loaded[k]
        np.testing.assert_array_equal(m1, m2)
        assert i1 == i2
        assert manifest["files"][k]["ratio"] == i1["ratio"]
    clone = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(clone[5][0], ms[5][0])


def test_bucketed_load_errors(tmp_path):
    with pytest.raises(MaskSourceError, match="manifest"):
        BucketedTestMasks.load(tmp_path)
    out = BucketedTestMasks(size=64, per_bucket=2).save(tmp_path / "set")
    victim = out / "3_0.30-0.40_border_0001.png"

    cv2.imwrite(str(victim), np.zeros((64, 64), np.uint8))
    loaded = BucketedTestMasks.load(out)
    k = [loaded.filename(j) for j in range(len(loaded))].index(victim.name)
    with pytest.raises(MaskSourceError, match="ratio"):
        loaded[k]

    victim.unlink()
    with pytest.raises(MaskSourceError, match="missing"):
        BucketedTestMasks.load(out)


def test_cli(tmp_path, capsys):
    out = tmp_path / "masks"
    assert main(["--out", str(out), "--size", "64", "--per-bucket", "2", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "0.50-0.60" in printed and "noborder" in printed
    assert len(list(out.glob("*.png"))) == 24
    with pytest.raises(SystemExit, match="^error: .* exists and is not empty"):  # not empty
        main(["--out", str(out), "--size", "64", "--per-bucket", "2"])
    assert main(["--out", str(out), "--size", "64", "--per-bucket", "2", "--overwrite"]) == 0


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.evaluation.mask_set", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_cli_module_entry_point(tmp_path):
    out = tmp_path / "set"
    proc = run_cli("--out", str(out), "--size", "48", "--per-bucket", "1")
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").is_file()


@pytest.mark.parametrize("args", [["--size", "48", "--per-bucket", "1"], ["--size", "0"]])
def test_cli_errors_are_one_line(tmp_path, args):
    out = tmp_path / "set"
    out.mkdir()
    (out / "something").write_text("")
    proc = run_cli("--out", str(out), *args)
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
