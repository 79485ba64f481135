"""Repairing many photos from files: the jobs (each photo, its mask file and where its results
go), grouped by size and run through a :class:`~pipeline.inference.inpainter.BlindInpainter` with
decoding and encoding overlapping the networks (``pipeline.inpaint``, the command line, and the
benchmark use it)."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from common.errors import ConfigError
from data.io import (
    IMAGE_EXTENSIONS,
    ImageReadError,
    green_mask,
    image_size,
    list_images,
    load_array,
    read_mask,
    read_metadata,
    to_float,
)
from pipeline.inference.encode import PNG, OutputFormat, write_image
from pipeline.inference.inpainter import BlindInpainter

log = logging.getLogger("pipeline.inpaint")


@dataclass
class Job:
    """One image to repair: its file, its mask file (or None), where its results go, in what
    format (None: the run's); in masked mode whether a mask of another size is resized to the
    photo's (nearest) rather than refused, and whether the hole is the mask plus the damage the
    model finds (``union``)."""

    source: Path
    mask: Path | None
    target: Path
    format: OutputFormat | None = None
    mask_resize: bool = False
    union: bool = False


def find_mask(mask_root: Path, relative: Path) -> Path | None:
    """The mask of the photo at ``relative`` in a mask folder: ``<name>.*`` or ``<name>_mask.*``."""
    for name in (relative.stem, f"{relative.stem}_mask"):
        for ext in IMAGE_EXTENSIONS:
            for candidate in (
                mask_root / relative.parent / f"{name}{ext}",
                mask_root / relative.parent / f"{name}{ext.upper()}",
            ):
                if candidate.is_file():
                    return candidate
    return None


def mask_beside(photo: Path) -> Path | None:
    """The mask file LaMa's layout puts beside ``photo``: ``<name>_mask001.png`` (LaMa numbers its
    masks), else ``<name>_mask.png``; None where there is neither (the photo's pure-green paint is
    then the hole)."""
    for name in (f"{photo.stem}_mask001.png", f"{photo.stem}_mask.png"):
        if (photo.parent / name).is_file():
            return photo.parent / name
    return None


def check_mask(mask: Path | None) -> None:
    """A given ``mask`` (a file or a folder of them) must exist and be a regular file or a folder."""
    if mask is not None and not mask.exists():
        raise ConfigError(f"mask {mask} does not exist")
    if mask is not None and not (mask.is_file() or mask.is_dir()):
        raise ConfigError(f"mask {mask} is not a regular file or a folder")


def given_mask(mask: Path, source: Path, relative: Path) -> Path:
    """The mask file of the photo ``source`` (at ``relative`` under its input folder) from a given
    ``mask``: the file itself, or the file of the photo's name in a mask folder (:func:`find_mask`)."""
    if mask.is_file():
        return mask
    found = find_mask(mask, relative)
    if found is None:
        raise ConfigError(f"no mask for {source} in {mask} (looked for {relative.stem}.* and {relative.stem}_mask.*)")
    return found


def plan_jobs(
    input_path: Path,
    output: Path,
    mask: Path | None,
    mode: str,
    suffix: str = ".png",
    formats: Callable[[Path], OutputFormat] | None = None,
) -> list[Job]:
    """The images under ``input_path`` with their masks and result paths (``<stem><suffix>``, or
    with ``formats`` each photo's own format and its suffix); refuses an output folder that is the
    input folder or inside it. In masked mode each photo's mask is ``mask`` (:func:`given_mask`),
    else the one beside it (:func:`mask_beside`), else its green paint."""
    if not input_path.exists():
        raise ConfigError(f"input {input_path} does not exist")
    if not (input_path.is_file() or input_path.is_dir()):  # a FIFO or a device would block the reader forever
        raise ConfigError(f"input {input_path} is not a regular file or a folder")
    input_root = input_path if input_path.is_dir() else input_path.parent
    out, root = output.resolve(), input_root.resolve()
    if out == root or (input_path.is_dir() and out.is_relative_to(root)):
        raise ConfigError(
            f"output {output} is {'the input folder' if out == root else 'inside the input folder'}: "
            "choose another folder (inputs are never written to)"
        )
    check_mask(mask)
    if mask is not None:
        mask_root = (mask if mask.is_dir() else mask.parent).resolve()
        if out == mask_root or (mask.is_dir() and out.is_relative_to(mask_root)):
            raise ConfigError(
                f"output {output} is in the mask folder: choose another folder (masks are never written to)"
            )
    if input_path.is_dir():
        files = list_images(input_path)
        if not files:
            raise ConfigError(f"input folder {input_path} holds no images (no file of a format Pillow reads)")
    else:
        files = [input_path]

    beside = {}  # masked mode without mask=: LaMa's <name>_mask001.png (or <name>_mask.png) beside the photo
    if mode == "masked" and mask is None:
        beside = {source: found for source in files if (found := mask_beside(source)) is not None}
        files = [source for source in files if source not in set(beside.values())]  # a mask is not a photo
    jobs, targets = [], {}
    for source in files:
        relative = source.relative_to(input_root)
        output_format = formats(source) if formats else None
        ending = output_format.suffix if output_format else suffix
        target = output / relative.parent / f"{relative.stem}{ending}"
        if target in targets:  # photo.jpg and photo.png: keep both
            target = output / relative.parent / f"{relative.stem}_{source.suffix.lstrip('.').lower()}{ending}"
        targets[target] = source
        mask_file = given_mask(mask, source, relative) if mode == "masked" and mask is not None else beside.get(source)
        jobs.append(Job(source, mask_file, target, output_format))
    check_output(output, [job.target for job in jobs])
    return jobs


def check_output(output: Path, targets: list[Path]) -> None:
    """Find output problems before any work is done: ``output`` must be a folder (made if missing)
    that this process can write into, and no result may land on an existing folder."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} is a file, not a folder: choose a folder for the results")
    try:
        output.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=output)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"output {output} cannot be written to ({err.strerror or err})") from None
    for target in targets:
        if target.is_dir():
            raise ConfigError(
                f"{target} is a folder, where a result would be written: move it or choose another output"
            )


def batches(jobs: list[Job], batch_size: int, inpainter: BlindInpainter, mode: str) -> Iterator[list[Job]]:
    """Same-size images the inpainter repairs whole (:meth:`~pipeline.inference.inpainter.BlindInpainter.strategy`)
    together, sizes read from the headers (nothing decoded); larger images, and unreadable
    headers, come alone."""
    by_size: dict = {}
    for job in jobs:
        size = image_size(job.source)
        alone = size is None or inpainter.strategy(size[1], size[0], mode) != "whole"
        by_size.setdefault(("alone", job.source) if alone else size, []).append(job)
    for group in by_size.values():
        for start in range(0, len(group), batch_size):
            yield group[start : start + batch_size]


def load_job(job: Job, mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A job's photo ``(H, W, 3)`` (uint8 or uint16, :func:`data.io.load_array`) and, in masked
    mode, its hole ``(H, W)`` float32 in {0, 1}."""
    image = load_array(job.source)
    if mode != "masked":
        return image, None
    mask = read_mask(job.mask) if job.mask is not None else green_mask(image)
    if job.mask is None and mask.sum() == 0:
        raise ImageReadError(f"{job.source}: mode=masked needs mask= or a hole painted pure green (0, 255, 0)")
    height, width = image.shape[:2]
    if mask.shape != (height, width) and job.mask_resize:
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    if mask.shape != (height, width):
        raise ImageReadError(
            f"{job.mask}: the mask is {mask.shape[1]} × {mask.shape[0]}, the photo {width} × {height} "
            "(give a mask of the photo's size, or resize it: --mask-resize)"
        )
    return image, mask


def _write_results(job: Job, result: dict, save_intermediates: bool, sixteen_bit: bool, output_format) -> None:
    output_format = job.format or output_format
    metadata = read_metadata(job.source) if output_format.keep_metadata else None
    write_image(result["output"], job.target, output_format, metadata, sixteen_bit)
    if save_intermediates:  # masks and edges are data: always PNG, at the photo's depth
        write_image(result["mask"], job.target.with_name(f"{job.target.stem}_mask.png"))
        write_image(result["edges"], job.target.with_name(f"{job.target.stem}_edges.png"))


def _with_found(inpainter: BlindInpainter, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``union``: the given hole ``(H, W)`` plus the damage the model finds in ``image`` (the blind
    mask rule's mask at the photo's size, :meth:`~pipeline.inference.inpainter.BlindInpainter.mask_array`)."""
    return np.maximum(mask, inpainter.mask_array(image, "blind")["mask"]).astype(np.float32)


def _load_group(group: list[Job], mode: str) -> tuple[list[tuple], list[tuple[Job, ImageReadError]]]:
    """Decode a group's photos (and masks): ``(job, image, mask)`` for each readable one, and the
    unreadable ones with their errors."""
    loaded, failed = [], []
    for job in group:
        try:
            loaded.append((job, *load_job(job, mode)))
        except ImageReadError as err:
            failed.append((job, err))
    return loaded, failed


def run(
    inpainter: BlindInpainter,
    jobs: list[Job],
    mode: str,
    batch_size: int = 4,
    save_intermediates: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    output_format: OutputFormat = PNG,
    shares: bool = False,
) -> dict:
    """Repair ``jobs``; returns the files ``written``, ``skipped`` (output exists) and ``failed``
    (with each failure's message in ``reasons``, by source), and with ``shares`` the share of each
    written photo that was repaired (``repaired``, by target: 0 where no damage was found).
    Photos above the working size go one at a time through
    :meth:`~pipeline.inference.inpainter.BlindInpainter.inpaint_array`, in their own pixels (bounded memory).

    Decoding and encoding overlap the networks: one thread decodes the next group while the
    current one is repaired, another encodes and writes the previous results (on a 9-megapixel
    JPEG they are nearly half of the work). At most three groups are held at once: the one
    written, the one repaired and the one read ahead."""
    report: dict = {"written": [], "skipped": [], "failed": [], "reasons": {}, "repaired": {}}
    todo = []
    for job in jobs:
        if job.target.exists() and not overwrite:
            report["skipped"].append(job.target)
        else:
            todo.append(job)
    bar = tqdm(total=len(todo), unit="img", desc=f"inpaint ({mode})", disable=not progress)
    groups = list(batches(todo, batch_size, inpainter, mode))
    writing: Future | None = None

    def written(future: Future | None) -> None:
        if future is not None:
            for job in future.result():  # a write's error (a full disk) ends the run here, as before
                report["written"].append(job.target)
                bar.update(1)

    def write(results: list[tuple[Job, dict, bool]]) -> list[Job]:
        for job, outputs, sixteen_bit in results:
            _write_results(job, outputs, save_intermediates, sixteen_bit, output_format)
        return [job for job, *_ in results]

    with ThreadPoolExecutor(1, "inpaint-read") as reader, ThreadPoolExecutor(1, "inpaint-write") as writer:
        reading = reader.submit(_load_group, groups[0], mode) if groups else None
        for index in range(len(groups)):
            loaded, failed = reading.result()
            reading = reader.submit(_load_group, groups[index + 1], mode) if index + 1 < len(groups) else None
            for job, err in failed:
                log.warning("skipped: %s", err)
                report["failed"].append(job.source)
                report["reasons"][job.source] = str(err)
                bar.update(1)
            if not loaded:
                continue
            loaded = [
                (job, image, _with_found(inpainter, image, mask) if job.union else mask) for job, image, mask in loaded
            ]
            if len(loaded) == 1:
                job, image, mask = loaded[0]
                del loaded  # the photo's only reference is ``image``, repaired in place
                keep = save_intermediates or shares
                result = inpainter.inpaint_array(image, mask, mode, in_place=True, intermediates=keep)
                if shares:
                    report["repaired"][job.target] = float((result["mask"] > 0).mean())
                results = [(job, result, False)]
                del image, result
            else:
                images = torch.stack([torch.from_numpy(to_float(image)).permute(2, 0, 1) for _, image, _ in loaded])
                masks = torch.stack([torch.from_numpy(m)[None] for *_, m in loaded]) if mode == "masked" else None
                result = inpainter.inpaint(images, masks, mode)
                results = [
                    (job, {key: result[key][i] for key in ("output", "mask", "edges")}, image.dtype == np.uint16)
                    for i, (job, image, _) in enumerate(loaded)
                ]
                if shares:
                    for i, (job, _, _) in enumerate(loaded):
                        report["repaired"][job.target] = float((result["mask"][i] > 0).float().mean())
                del images, masks, result, loaded
            written(writing)  # the previous group's files, before this one's are queued
            writing = writer.submit(write, results)
            del results
        written(writing)
    bar.close()
    return report
