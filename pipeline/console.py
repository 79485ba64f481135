"""``blindfill``: the command for people who repair photos (``[project.scripts]`` in pyproject.toml).

``blindfill repair PATH...`` takes plain paths (spaces, commas, brackets, any script: no Hydra
syntax) and is the same code path as ``python -m pipeline.inpaint`` (:mod:`pipeline.inference.batch`);
``serve``, ``evaluate``, ``export``, ``benchmark`` and ``train`` hand their ``key=value`` overrides to
the ``python -m pipeline.<name>`` command of that name. Nothing heavy is imported before a command
starts working, so ``--help`` is quick. A console script's folder, not the current one, leads
``sys.path``, so a ``data.py`` or ``common.py`` of the user's own does not shadow ours.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_CODES = """exit status:
  0  every photo was written (or already there and kept), or some were and others were unreadable
  1  an input error (a bad path, option or model file: one line on stderr), or no photo could be read
  2  the command line itself is wrong (argparse's usage message)"""

REPAIR_EXAMPLES = """examples:
  blindfill repair "IMG 1 (copy).jpg"                  # -> repaired/IMG 1 (copy).jpg
  blindfill repair photo.jpg -o fixed.jpg              # one photo, one file
  blindfill repair ~/Pictures/scans more.png -o out/   # folders (searched recursively) and files
  blindfill repair noisy.png --mode denoise
  blindfill repair photo.png --mode masked --mask photo_mask001.png
  blindfill repair photos/ --json > report.json

The output keeps each photo's format (JPEG, PNG, WebP, AVIF, HEIC; others become PNG) unless --format
says otherwise, and its EXIF and ICC profile. Inputs are never written to, and existing results
are kept unless --overwrite."""

PASSED_THROUGH = {
    "serve": "the web page and HTTP API (python -m pipeline.serve): e.g. blindfill serve port=8000",
    "evaluate": "score a model against the classical methods (python -m pipeline.evaluate)",
    "export": "write a model file, ONNX graphs (python -m pipeline.export)",
    "benchmark": "speed and memory on this machine (python -m pipeline.benchmark)",
    "train": "train a stage or the whole chain (python -m pipeline.train): e.g. blindfill train experiment=quickstart",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blindfill",
        description="Find the damage in photos (scratches, text, stains, noise) and repair it, with no mask needed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXIT_CODES,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    repair = commands.add_parser(
        "repair",
        help="repair photos and folders of photos",
        description="Repair photos: find the damage (blind), or fill a given mask, or denoise.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"{REPAIR_EXAMPLES}\n\n{EXIT_CODES}",
    )
    repair.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="photos and folders, mixed")
    repair.add_argument(
        "-o", "--output", type=Path, default=Path("repaired"),
        help="a folder (default: ./repaired), or for one photo a file name such as fixed.jpg",
    )  # fmt: skip
    repair.add_argument(
        "--mode", choices=("blind", "masked", "denoise"), default="blind",
        help="blind (default): find the damage; masked: fill --mask (or pure-green paint); denoise: remove noise",
    )  # fmt: skip
    repair.add_argument(
        "--mask", type=Path,
        help="--mode masked: a mask (white = hole) or a folder of them; default: <name>_mask001.png or "
        "<name>_mask.png beside the photo, else pure-green (0, 255, 0) paint in it",
    )  # fmt: skip
    repair.add_argument(
        "--mask-resize", action="store_true",
        help="resize a mask of another size to the photo's (nearest neighbour); without it such a photo is skipped",
    )  # fmt: skip
    repair.add_argument(
        "--union", action="store_true", help="--mode masked: the hole is the mask plus the damage the model finds"
    )
    repair.add_argument("--format", choices=("same", "png", "jpeg", "webp", "avif", "heif"), default="same")
    repair.add_argument("--quality", type=int, default=95, help="JPEG/WebP/AVIF/HEIC quality 1-100 (default 95)")
    repair.add_argument("--model", help="a model file or training run folder (default: the shipped model)")
    repair.add_argument("--method", default="ours", help="another system's trained stage fills the hole (with --model)")
    repair.add_argument("--overwrite", action="store_true", help="replace existing results")
    repair.add_argument("--intermediates", action="store_true", help="also write <name>_mask.png and _edges.png")
    repair.add_argument("--json", action="store_true", help="print a machine-readable report instead of lines")
    repair.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    for name, text in PASSED_THROUGH.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if argv and argv[0] in PASSED_THROUGH:
        return _pass_through(argv[0], argv[1:])
    args = parser.parse_args(argv)
    import logging

    from common.errors import BlindfillError

    logging.getLogger("pipeline.inpaint").setLevel(logging.ERROR)  # each photo gets its own line here

    try:
        return repair(args)
    except BlindfillError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _pass_through(name: str, overrides: list[str]) -> int:
    """``blindfill <name> key=value ...`` is ``python -m pipeline.<name> key=value ...``."""
    import importlib

    sys.argv = [f"blindfill {name}", *overrides]
    importlib.import_module(f"pipeline.{name}").main()
    return 0


def plan(args) -> list:
    """The jobs of ``blindfill repair``: each path's photos (a folder's mirrored under
    ``<output>/<folder name>/``, files directly in ``<output>``), or for one photo and an output
    with an image suffix that one file."""
    from common.errors import ConfigError
    from data.io import IMAGE_EXTENSIONS
    from pipeline.inference.batch import Job, check_mask, check_output, given_mask, mask_beside, plan_jobs
    from pipeline.inference.encode import OutputFormat, same_format

    def output_format(path: Path) -> OutputFormat:
        """``--format``, or with ``same`` the format of ``path`` (a photo, or the ``-o`` file)."""
        return OutputFormat(same_format(path) if args.format == "same" else args.format, args.quality)

    paths = [Path(p).expanduser() for p in args.paths]
    single_file = args.output.suffix.lower() in IMAGE_EXTENSIONS and not args.output.is_dir()
    if single_file:
        if len(paths) != 1 or not paths[0].is_file():
            raise ConfigError(f"-o {args.output} is a file name: give exactly one photo, or a folder for -o")
        if paths[0].resolve() == args.output.resolve():
            raise ConfigError(f"-o {args.output} is the input itself: inputs are never written to")
        check_mask(args.mask)
        mask = None
        if args.mode == "masked":
            photo = paths[0]
            mask = mask_beside(photo) if args.mask is None else given_mask(args.mask, photo, Path(photo.name))
        check_output(args.output.parent, [args.output])
        return [Job(paths[0], mask, args.output, output_format(args.output), args.mask_resize, args.union)]
    jobs, seen = [], set()
    for path in paths:
        folder = args.output / path.resolve().name if path.is_dir() else args.output
        for job in plan_jobs(path, folder, args.mask, args.mode, formats=output_format):
            if job.target in seen:
                raise ConfigError(f"two photos would both be written to {job.target}: repair them in separate runs")
            seen.add(job.target)
            job.mask_resize, job.union = args.mask_resize, args.union
            jobs.append(job)
    return jobs


def repair(args) -> int:
    """``blindfill repair``: plan, repair (:func:`pipeline.inference.batch.run`), and say what was
    done, a line per photo and the summary last (or ``--json``)."""
    from common.errors import ConfigError
    from pipeline.inference.batch import run
    from pipeline.inference.inpainter import InpaintSettings, build_inpainter, resolve_device

    if not 1 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 1..100, got {args.quality}")
    if args.mask is not None and args.mode != "masked":
        raise ConfigError("--mask is used with --mode masked")
    if (args.union or args.mask_resize) and args.mode != "masked":
        raise ConfigError(f"--{'union' if args.union else 'mask-resize'} is used with --mode masked")
    jobs = plan(args)
    settings = InpaintSettings(mode=args.mode)
    inpainter = build_inpainter(args.method, args.model, None, settings, resolve_device(args.device))
    report = run(
        inpainter, jobs, args.mode, save_intermediates=args.intermediates, overwrite=args.overwrite,
        progress=False, shares=True,
    )  # fmt: skip
    photos = [_photo_report(job, report) for job in jobs]
    summary = {
        status: sum(p["status"] == status for p in photos) for status in ("repaired", "clean", "kept", "skipped")
    }
    if args.json:
        listed = [{k: v for k, v in photo.items() if k != "line"} for photo in photos]
        print(json.dumps({"photos": listed, "summary": summary}, indent=2, ensure_ascii=False))
    else:
        for photo in photos:
            print(photo["line"])
        print(
            f"{summary['repaired']} repaired, {summary['clean']} without damage found, {summary['kept']} kept "
            f"(already there), {summary['skipped']} skipped"
        )
    return 1 if report["failed"] and not report["written"] and not report["skipped"] else 0


def _photo_report(job, report: dict) -> dict:
    """What was done to one photo: ``status`` repaired | clean | kept | skipped, its line."""
    entry = {"input": str(job.source), "output": str(job.target)}
    if job.source in report["reasons"]:
        reason = report["reasons"][job.source].removeprefix(f"{job.source}: ")
        return {**entry, "status": "skipped", "reason": reason, "line": f"{job.source}: skipped: {reason}"}
    if job.target in report["skipped"]:
        line = f"{job.source}: kept {job.target}, which exists (--overwrite replaces it)"
        return {**entry, "status": "kept", "line": line}
    share = report["repaired"].get(job.target, 0.0)
    if share == 0:
        return {
            **entry,
            "status": "clean",
            "repaired_share": 0.0,
            "line": f"{job.source}: no damage found -> {job.target}",
        }
    line = f"{job.source}: repaired {100 * share:.1f} % of the photo -> {job.target}"
    return {**entry, "status": "repaired", "repaired_share": share, "line": line}


if __name__ == "__main__":
    sys.exit(main())
