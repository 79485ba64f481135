"""The fixed, bucketed test-mask set and the command that writes it.

:class:`BucketedTestMasks` is a reproducible test set binned by hole ratio, with and without a
border band free of holes, following the partial-convolution protocol (Liu et al., ECCV 2018).
Masks follow the convention of :mod:`data.masks`: ``(H, W)`` float32, 1 = hole.

Command line, to write the default test-mask set::

    python -m pipeline.evaluation.mask_set --out DIR [--size 256] [--per-bucket 100] [--seed 0] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from common.cli import cli
from common.errors import ConfigError
from data.masks import (
    FreeFormMasks,
    MaskGenerator,
    MaskSourceError,
    check_size,
    hole_ratio,
    read_gray,
    resize_nearest,
)

__all__ = ["DEFAULT_BUCKETS", "BucketedTestMasks", "main"]

DEFAULT_BUCKETS = ((0.01, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.5), (0.5, 0.6))


class BucketedTestMasks:
    """The fixed test-mask set of the partial-convolution protocol, binned by hole ratio.

    Liu et al., "Image Inpainting for Irregular Holes Using Partial Convolutions", ECCV 2018,
    evaluate on masks grouped by hole-to-image area ratio - 0.01-0.1, 0.1-0.2, ..., 0.5-0.6 - each
    with and without a border constraint (no hole within 50 px of the border of their 512 x 512
    masks). Their masks (from video occlusion) cannot be regenerated, so this set
    uses random free-form strokes with the same bucketing.

    Mask ``i`` of bucket ``b`` with border flag ``f`` is a pure function of ``(seed, b, f, i)``
    (its generator is ``numpy.random.default_rng([seed, b, f, i])``): draw a target ratio
    uniformly in the bucket; starting from an empty canvas, add ``source`` masks (union) until the
    hole ratio reaches the target - with the border flag the border band is cleared before every
    measurement; if the ratio ends outside ``[lo, hi)``, start again from a new target. So every
    mask has ``lo <= ratio < hi``, and border masks have no hole in the band.

    Args:
        size: side of the square masks, or ``(H, W)``.
        per_bucket: masks per (bucket, border flag).
        seed: seed of the whole set.
        buckets: ``(lo, hi)`` hole-ratio ranges.
        border: border band in px *at the reference size 512* (PConv's); the band used is
            ``round(border * min(H, W) / 512)`` px, i.e. 25 px at 256 x 256.
        source: mask generator whose masks are added until the target ratio is reached; default
            one DeepFill v2 brush stroke per call with widths scaled to the size
            (``FreeFormMasks(min_strokes=1, max_strokes=1, scale_width=True)``).

    Usage: ``len(ms)``; ``ms[k] -> (mask, info)`` with ``mask`` ``(H, W)`` float32 (1 = hole) and
    ``info = {"bucket": (lo, hi), "border": bool, "ratio": float, "index": i}``; entries are
    ordered bucket-major, then no-border before border, then ``i``. Masks are computed on demand,
    so the object is small to pickle. :meth:`save` writes the set as PNGs plus ``manifest.json``;
    :meth:`load` reads one back.

    The set is also a mask generator: ``ms(h, w, rng)`` returns a uniformly chosen entry, resized
    with nearest-neighbour interpolation when ``(h, w)`` differs from the set's size (the border
    band is then resized along with it).
    """

    MANIFEST = "manifest.json"
    REF_SIZE = 512

    def __init__(
        self,
        size: int | Sequence[int] = 256,
        per_bucket: int = 100,
        seed: int = 0,
        buckets: Sequence[Sequence[float]] = DEFAULT_BUCKETS,
        border: int = 50,
        source: MaskGenerator | None = None,
        max_attempts: int = 1000,
    ) -> None:
        if isinstance(size, (int, np.integer)):
            size = (int(size), int(size))
        self.size = check_size(*size)
        if per_bucket < 1:
            raise ValueError("per_bucket must be >= 1")
        self.per_bucket = int(per_bucket)
        self.seed = int(seed)
        self.buckets = tuple((float(lo), float(hi)) for lo, hi in buckets)
        if not self.buckets or any(not 0 <= lo < hi <= 1 for lo, hi in self.buckets):
            raise ValueError(f"buckets must be (lo, hi) with 0 <= lo < hi <= 1, got {buckets}")
        self.border = int(border)
        height, width = self.size
        self.border_px = round(self.border * min(height, width) / self.REF_SIZE)
        inner = max(0, height - 2 * self.border_px) * max(0, width - 2 * self.border_px)
        if inner / (height * width) <= max(lo for lo, _ in self.buckets):
            raise ValueError(
                f"a {self.border_px} px border leaves {inner / (height * width):.2f} of a "
                f"{height}x{width} image, too little for the buckets {self.buckets}"
            )
        if source is None:
            source = FreeFormMasks(min_strokes=1, max_strokes=1, scale_width=True)
        self.source = source
        self.max_attempts = int(max_attempts)
        self._root: str | None = None
        self._records: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.buckets) * 2 * self.per_bucket

    def key(self, k: int) -> tuple[int, bool, int]:
        """Entry ``k`` -> ``(bucket index, border flag, index in its group)``."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"index {k} out of range for {len(self)} masks")
        k %= len(self)
        group, i = divmod(k, self.per_bucket)
        b, f = divmod(group, 2)
        return b, bool(f), i

    def filename(self, k: int) -> str:
        b, f, i = self.key(k)
        lo, hi = self.buckets[b]
        return f"{b}_{lo:.2f}-{hi:.2f}_{'border' if f else 'noborder'}_{i:04d}.png"

    def _generate(self, b: int, border: bool, i: int) -> np.ndarray:
        lo, hi = self.buckets[b]
        height, width = self.size
        n_pixels = height * width
        bp = self.border_px if border else 0
        rng = np.random.default_rng([self.seed, b, int(border), i])
        ratio = 0.0
        for _ in range(self.max_attempts):
            target = rng.uniform(lo, hi)
            canvas = np.zeros((height, width), np.float32)
            ratio, stalled = 0.0, 0
            # Give up on this target once the source stops adding holes (e.g. it only draws in
            # the border band, or the canvas is saturated).
            while ratio < target and stalled < 50:
                np.maximum(canvas, self.source(height, width, rng), out=canvas)
                if bp:
                    canvas[:bp], canvas[-bp:], canvas[:, :bp], canvas[:, -bp:] = 0, 0, 0, 0
                new_ratio = cv2.countNonZero(canvas) / n_pixels
                stalled = stalled + 1 if new_ratio == ratio else 0
                ratio = new_ratio
            if lo <= ratio < hi:
                return canvas
        raise RuntimeError(
            f"no mask with hole ratio in [{lo}, {hi}) after {self.max_attempts} attempts "
            f"(bucket {b}, border={border}, index {i}, last ratio {ratio:.3f}); "
            f"the source {self.source!r} may not suit this bucket"
        )

    def __getitem__(self, k: int) -> tuple[np.ndarray, dict[str, Any]]:
        b, f, i = self.key(k)
        mask = self._generate(b, f, i) if self._records is None else self._read(k)
        info = {"bucket": self.buckets[b], "border": f, "ratio": hole_ratio(mask), "index": i}
        return mask, info

    def __call__(self, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        height, width = check_size(height, width)
        mask, _ = self[int(rng.integers(len(self)))]
        return resize_nearest(mask, height, width)

    def params(self) -> dict[str, Any]:
        return {
            "size": list(self.size),
            "per_bucket": self.per_bucket,
            "seed": self.seed,
            "buckets": [list(b) for b in self.buckets],
            "border": self.border,
            "border_px": self.border_px,
            "ref_size": self.REF_SIZE,
            "source": repr(self.source),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write every mask as ``{b}_{lo:.2f}-{hi:.2f}_{border|noborder}_{i:04d}.png`` (0 / 255)
        plus ``manifest.json`` (parameters and per-file ratio) into ``directory``. Returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = []
        for k in range(len(self)):
            mask, info = self[k]
            name = self.filename(k)
            ok, buf = cv2.imencode(".png", (mask * 255).astype(np.uint8))
            if not ok:
                raise OSError(f"could not encode {name}")
            buf.tofile(str(directory / name))
            files.append(
                {
                    "file": name,
                    "bucket": list(info["bucket"]),
                    "border": info["border"],
                    "index": info["index"],
                    "ratio": info["ratio"],
                }
            )
        manifest = {
            "format": "blindfill-bucketed-masks",
            "version": 1,
            "params": self.params(),
            "files": files,
        }
        (directory / self.MANIFEST).write_text(json.dumps(manifest, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> BucketedTestMasks:
        """Read a set written by :meth:`save`. The manifest is checked against the file names and
        the files' presence here, and every mask's shape and ratio when it is read; any mismatch
        raises :class:`MaskSourceError`."""
        directory = Path(directory)
        manifest_path = directory / cls.MANIFEST
        if not manifest_path.is_file():
            raise MaskSourceError(f"{str(directory)!r} has no {cls.MANIFEST}; not a saved mask set")
        try:
            manifest = json.loads(manifest_path.read_text())
            params = manifest["params"]
            ms = cls(
                size=params["size"],
                per_bucket=params["per_bucket"],
                seed=params["seed"],
                buckets=params["buckets"],
                border=params["border"],
            )
            records = list(manifest["files"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise MaskSourceError(f"invalid manifest {str(manifest_path)!r}: {exc}") from exc
        expected = [ms.filename(k) for k in range(len(ms))]
        if [r.get("file") if isinstance(r, dict) else None for r in records] != expected:
            raise MaskSourceError(
                f"manifest {str(manifest_path)!r} lists {len(records)} files that do not match "
                f"its parameters ({len(ms)} expected, named like {ms.filename(0)!r})"
            )
        missing = [r["file"] for r in records if not (directory / r["file"]).is_file()]
        if missing:
            raise MaskSourceError(
                f"{len(missing)} of {len(records)} mask files listed in {str(manifest_path)!r} "
                f"are missing, e.g. {missing[:3]}"
            )
        ms._root, ms._records = str(directory), records
        return ms

    def _read(self, k: int) -> np.ndarray:
        path = os.path.join(self._root, self._records[k]["file"])
        mask = (read_gray(path) > 127).astype(np.float32)
        if mask.shape != self.size:
            raise MaskSourceError(f"mask file {path!r} is {mask.shape}, the manifest says {self.size}")
        expected = float(self._records[k]["ratio"])
        if abs(hole_ratio(mask) - expected) > 0.5 / mask.size:
            raise MaskSourceError(
                f"mask file {path!r} has hole ratio {hole_ratio(mask):.6f}, the manifest says {expected:.6f}"
            )
        return mask

    def summary(self) -> list[dict[str, Any]]:
        """Per (bucket, border flag): count and mean / min / max ratio (computes every mask)."""
        rows: dict[tuple[int, bool], list[float]] = {}
        for k in range(len(self)):
            b, f, _ = self.key(k)
            rows.setdefault((b, f), []).append(self[k][1]["ratio"])
        return [
            {
                "bucket": self.buckets[b],
                "border": f,
                "count": len(r),
                "mean": float(np.mean(r)),
                "min": float(np.min(r)),
                "max": float(np.max(r)),
            }
            for (b, f), r in rows.items()
        ]

    def __repr__(self) -> str:
        where = f", root={self._root!r}" if self._root else ""
        return (
            f"{type(self).__name__}(size={self.size}, per_bucket={self.per_bucket}, "
            f"seed={self.seed}, buckets={len(self.buckets)}, border={self.border}{where})"
        )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.evaluation.mask_set",
        description="Write the bucketed test-mask set (PNG, 255 = hole, plus manifest.json).",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--size", type=int, default=256, help="mask side in px (default 256)")
    parser.add_argument("--per-bucket", type=int, default=100, help="masks per bucket and border flag")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    return parser.parse_args(argv)


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Refuse to write into an existing file or a non-empty folder unless ``overwrite``."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty (use --overwrite)")


def print_summary(masks: BucketedTestMasks) -> None:
    """One line per (bucket, border flag): count and mean / min / max hole ratio."""
    print(f"{'bucket':>11}  {'border':>8}  {'count':>5}  {'mean':>6}  {'min':>6}  {'max':>6}")
    for row in masks.summary():
        lo, hi = row["bucket"]
        flag = "border" if row["border"] else "noborder"
        print(
            f"{lo:.2f}-{hi:.2f}  {flag:>8}  {row['count']:5d}  {row['mean']:6.3f}  {row['min']:6.3f}  {row['max']:6.3f}"
        )


@cli
def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    check_output_folder(out, args.overwrite)
    try:
        masks = BucketedTestMasks(size=args.size, per_bucket=args.per_bucket, seed=args.seed)
    except ValueError as err:  # a size or count the set refuses: a command-line value, not a bug
        raise ConfigError(str(err)) from None
    start = time.perf_counter()
    masks.save(out)
    elapsed = time.perf_counter() - start
    print_summary(BucketedTestMasks.load(out))
    print(f"{len(masks)} masks of {masks.size[0]}x{masks.size[1]} written to {out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
