"""``python -m pipeline.inpaint input=FILE_OR_DIR output=DIR [checkpoint=MODEL] [mode=blind|masked|denoise]``

Repairs photos with the model that ships with the package, or the one of ``checkpoint=``
(:class:`~pipeline.inference.inpainter.BlindInpainter`; ``method=<another system> checkpoint=RUN``, one of
pconv, glcic, parallel_attention, latent_search, cifar_gan: that system's trained stage fills the hole
in place of our EPN and IPN), and writes
``<output>/<name>.png`` (``format=jpeg quality=90``: ``<name>.jpg``; the photo's EXIF and ICC
profile kept unless ``keep_metadata=false``: :mod:`pipeline.inference.encode`, the same bytes the web page
gives) and with ``save_intermediates=true`` ``<name>_mask.png``, ``<name>_edges.png``. Folders
are searched recursively and mirrored; same-size images go through the networks together, with a
progress bar.

- ``mode=blind`` (default): the MPN finds the damage. ``mode=denoise``: the MPN's soft mask is used
  as it is (noise is damage spread thinly over the whole photo). ``mode=masked``: ``mask=`` is a
  mask (white = hole; with transparency, opaque = hole) or a copy of the photo with the damage
  painted pure green (0, 255, 0); without ``mask=``, pure-green paint in the photo itself is the
  hole.
- Any size: images larger than ``working_size`` are repaired at that size and only the fill is pasted
  back into the full-resolution original. 16-bit inputs give 16-bit outputs.
- Safe: the output folder may not be the input folder or inside it; existing outputs are skipped
  unless ``overwrite=true``; every file is written to a temporary name and renamed when complete;
  an unreadable image is reported and skipped.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from common.cli import command
from common.errors import ConfigError
from data.io import (
    ImageReadError,
)
from pipeline.inference.batch import plan_jobs, run
from pipeline.inference.encode import OutputFormat
from pipeline.inference.inpainter import InpaintSettings, build_inpainter, resolve_device

log = logging.getLogger("pipeline.inpaint")


def inpaint_cli(cfg: DictConfig) -> dict[str, list[Path]]:
    settings = InpaintSettings.from_config(cfg)
    for key in ("input", "output"):  # Path("") is the current folder: never guess it
        if not str(cfg[key]).strip():
            raise ConfigError(f"{key}= is empty: give {'an image file or a folder' if key == 'input' else 'a folder'}")
    if cfg.mask and cfg.mode != "masked":
        raise ConfigError(f"mask= is used with mode=masked (mode is {cfg.mode})")
    output_format = OutputFormat(cfg.format, cfg.quality, cfg.keep_metadata)
    mask = Path(cfg.mask) if cfg.mask else None
    jobs = plan_jobs(Path(cfg.input), Path(cfg.output), mask, cfg.mode, output_format.suffix)
    device = resolve_device(cfg.device)
    inpainter = build_inpainter(cfg.method, cfg.checkpoint, cfg.mask_checkpoint, settings, device, **cfg.pipeline)
    report = run(
        inpainter, jobs, cfg.mode, cfg.batch_size, cfg.save_intermediates, cfg.overwrite, output_format=output_format
    )
    log.info(
        "%d written to %s, %d skipped (already there; overwrite=true replaces them), %d unreadable",
        len(report["written"]),
        cfg.output,
        len(report["skipped"]),
        len(report["failed"]),
    )
    return report


@command("inpaint", "inference")
def main(cfg: DictConfig) -> None:
    report = inpaint_cli(cfg)
    if report["failed"] and not report["written"]:
        raise ImageReadError(f"none of the {len(report['failed'])} images could be read")


if __name__ == "__main__":
    main()
