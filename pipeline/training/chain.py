"""The chain (``experiment=all``): mpn → epn → ipn → joint in one run folder, each step fed by the
steps before it, the mask rule calibrated after the MPN, the pipeline selected on validation photos
(:mod:`pipeline.training.selection`) and exported with a blind-inpainting grid of the test split."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict
from torch.utils.data import DataLoader

from data.datamodule import build_datamodule
from pipeline.training.stage import best_checkpoint, train

log = logging.getLogger("pipeline.training")


def step_config(cfg: DictConfig, step: str, checkpoints: dict[str, Path], step_dir: Path) -> DictConfig:
    """The config of one step of the chain: that stage's config, the trainer with the step's
    overrides, logs in the step's folder, and the earlier steps' checkpoints: the joint starts from
    them; the EPN and the IPN are fed by them (``chain.feed_trained``: the MPN's masks and the
    EPN's edges, as inference gives them, EdgeConnect's third stage)."""
    sub = cfg.copy()
    with open_dict(sub):
        if sub.get("logger") and "save_dir" in sub.logger:
            sub.logger.save_dir = str(step_dir)
        sub.stage = cfg.chain.stages[step].copy()
        trainer = cfg.trainer.copy()
        OmegaConf.set_struct(trainer, False)  # a step may add Trainer arguments (max_time, ...)
        step_trainer = OmegaConf.to_container(cfg.chain.trainer.get(step) or {}, resolve=True)
        sub.trainer = OmegaConf.merge(trainer, {k: v for k, v in step_trainer.items() if v is not None})
        if step == "joint":
            for name in ("mpn", "epn", "ipn"):
                sub.stage[f"{name}_checkpoint"] = str(checkpoints[name])
        elif "feed" in sub.stage.module and cfg.chain.get("feed_trained", True):
            # Trained on what inference feeds: the trained earlier stages stand in for the truth.
            for name in ("mpn", "epn"):
                if name in checkpoints:
                    sub.stage.module.feed[f"{name}_checkpoint"] = str(checkpoints[name])
        sub.chain = None
    return sub


def pipeline_candidates(checkpoints: dict[str, Path]) -> dict:
    """The inference pipelines a chain can ship: the three stage checkpoints together and, when
    it ran, the joint one."""
    from common.checkpoint import load_module
    from pipeline.model import STAGES, BlindPipeline, load_pipeline

    candidates = {"stages": BlindPipeline(**{n: load_module(checkpoints[n], cls) for n, cls in STAGES.items()})}
    if "joint" in checkpoints:
        candidates["joint"] = load_pipeline(checkpoints["joint"])
    return {name: pipeline.eval().requires_grad_(False) for name, pipeline in candidates.items()}


def held_out_samples(cfg: DictConfig, split: str, clean_share: float):
    """The samples of a held-out ``split`` ("val", "test") of the run's data, as inference sees
    them (no truth edges), ``clean_share`` of them intact photos."""
    data_cfg = cfg.copy()
    with open_dict(data_cfg):
        data_cfg.data.edges, data_cfg.data.num_workers, data_cfg.data.clean_share = False, 0, clean_share
    return build_datamodule(data_cfg).split(split)


def selection_batches(cfg: DictConfig, clean_share: float) -> list[dict]:
    """The validation split as the selection sees it: held-out photos, ``clean_share`` intact."""
    batch_size = int(cfg.data.batch_size)
    return list(DataLoader(held_out_samples(cfg, "val", clean_share), batch_size=batch_size, shuffle=False))


def calibrated_mask_rule(cfg: DictConfig, mpn_checkpoint: Path, run_dir: Path) -> dict:
    """The blind mask rule (``hole_threshold``, ``soft_floor``) of the trained MPN, chosen once on
    the validation photos right after the MPN step (:func:`pipeline.training.selection.calibrate_mask_rule`):
    the later steps train on the masks this rule makes, and the shipped model carries it, so the
    IPN learns on the holes it will meet. Kept in ``<run>/mask_rule.json`` (a resumed chain reads
    it back)."""
    from common.checkpoint import load_module
    from mpn.module import MPNModule
    from pipeline.model import BlindPipeline
    from pipeline.training.selection import calibrate_mask_rule, mask_calibration

    path = run_dir / "mask_rule.json"
    if path.is_file():
        return json.loads(path.read_text())
    selection = cfg.chain.get("selection") or {}
    bound = float(selection.get("harm_bound", 0.01))
    batches = selection_batches(cfg, float(selection.get("clean_share", 0.25)))
    pipeline = BlindPipeline(mpn=load_module(mpn_checkpoint, MPNModule), **cfg.pipeline).eval()
    rule, table = calibrate_mask_rule(pipeline, batches, bound)
    with torch.no_grad():
        predicted = torch.cat([pipeline.masks(b["corrupted"])["predicted_mask"] for b in batches])
    calibration = mask_calibration(predicted, torch.cat([b["mask"] for b in batches]))
    report = {**rule, "harm_bound": bound, "mask_rules": table, "mpn_calibration": calibration}
    if rank_zero_only.rank == 0:
        path.write_text(json.dumps(report, indent=2, default=float) + "\n")
    log.info("mask rule for the later steps and the shipped model: %s", rule)
    return report


def select_pipeline(cfg: DictConfig, checkpoints: dict[str, Path], run_dir: Path):
    """Choose what the chain ships, on what a user gets (:mod:`pipeline.training.selection`): each
    candidate (the three stages, the joint run) with the chain's mask rule, scored blind and in
    masked mode on the validation photos, beside its classical floor (the same pipeline with the
    IPN's correction switched off: its ``prefill`` fill). The best one ships, and never one below
    the floor: if the floor scores best, the floor ships. Writes ``selection.json``."""
    from pipeline.inference.inpainter import BlindInpainter
    from pipeline.training.selection import floor_pipeline, score_pipeline

    selection = cfg.chain.get("selection") or {}
    bound = float(selection.get("harm_bound", 0.01))
    batches = selection_batches(cfg, float(selection.get("clean_share", 0.25)))
    rule = {k: cfg.pipeline[k] for k in ("hole_threshold", "soft_floor")}
    report, best = {"harm_bound": bound, **rule, "candidates": {}}, None
    candidates = pipeline_candidates(checkpoints)
    if candidates["stages"].ipn.hparams.get("prefill"):  # an IPN without a floor (prefill=null) has none to rank
        candidates["floor"] = floor_pipeline(candidates["stages"])
    for name, pipeline in candidates.items():
        pipeline.hole_threshold, pipeline.soft_floor = rule["hole_threshold"], rule["soft_floor"]
        scores = score_pipeline(BlindInpainter(pipeline), batches, bound)
        report["candidates"][name] = scores
        log.info("candidate %s: %s", name, _describe(scores))
        if best is None or scores["selection"] > report["candidates"][best[0]]["selection"]:
            best = (name, pipeline)
    report["chosen"] = best[0]
    (run_dir / "selection.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    log.info("shipping the %s pipeline (selection.json)", best[0])
    return best[1]


def _describe(scores: dict) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in scores.items())


@torch.no_grad()
def test_split_grid(cfg: DictConfig, inpainter, path: Path, rows: int) -> dict[str, float]:
    """Blind inpainting of ``rows`` test-split samples spread over the held-out photos (seeded
    damage, a quarter of them intact photos) as a grid *corrupted / true mask / predicted mask /
    edges / output / truth*; returns the PSNR / SSIM of the input and of the output on them."""
    from torch.utils.data import default_collate

    from common.images import labelled_grid, save_grid
    from common.metrics import psnr, ssim
    from pipeline.training.selection import PSNR_CAP

    split = held_out_samples(cfg, "test", clean_share=0.25)
    batch = default_collate([split[int(i)] for i in torch.linspace(0, len(split) - 1, rows).round()])
    result = inpainter.inpaint(batch["corrupted"])
    columns = {
        "corrupted": batch["corrupted"],
        "true mask": batch["mask"],
        "predicted mask": result["mask"],
        "edges": result["edges"],
        "output": result["output"],
        "truth": batch["image"],
    }
    save_grid(labelled_grid(columns, max_rows=rows), path)
    image, cap = batch["image"], PSNR_CAP  # an intact photo left alone would be infinite
    return {
        "psnr_corrupted": psnr(batch["corrupted"], image, reduction="none").clamp(max=cap).mean().item(),
        "psnr_output": psnr(result["output"], image, reduction="none").clamp(max=cap).mean().item(),
        "ssim_corrupted": ssim(batch["corrupted"], image).item(),
        "ssim_output": ssim(result["output"], image).item(),
    }


def set_mask_rule(cfg: DictConfig, rule: dict) -> None:
    """Make ``rule``'s ``hole_threshold`` and ``soft_floor`` the chain's pipeline settings (what
    the later steps' feeds and the joint run use, and what the shipped model stores)."""
    with open_dict(cfg):
        cfg.pipeline.hole_threshold, cfg.pipeline.soft_floor = rule["hole_threshold"], rule["soft_floor"]


def train_chain(cfg: DictConfig, run_dir: Path) -> dict[str, Path]:
    """``experiment=all``: each step of ``chain.steps`` in ``<run>/<step>/``, then
    the shipped pipeline chosen and calibrated on the validation photos (:func:`select_pipeline`,
    ``selection.json``), ``model.safetensors`` and ``blind_inpainting.png`` in ``<run>``. A step with a ``DONE`` file
    is skipped and one with a ``last.ckpt`` resumes, so re-running in the same folder continues an
    interrupted run. In a distributed run every process trains the steps; the first one alone
    writes the files and chooses what ships."""
    from pipeline.inference.inpainter import BlindInpainter
    from pipeline.model import save_pipeline

    run_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank == 0:  # read from the launcher's environment: no Trainer exists yet
        OmegaConf.save(cfg, run_dir / "config.yaml")  # unresolved: each step resolves its own stage
    checkpoints: dict[str, Path] = {}
    for step in cfg.chain.steps:
        step_dir = run_dir / step
        done = step_dir / "DONE"
        if done.is_file():
            checkpoints[step] = Path(done.read_text().strip())
            log.info("step %s already finished: %s", step, checkpoints[step])
            if step == "mpn":
                set_mask_rule(cfg, calibrated_mask_rule(cfg, checkpoints["mpn"], run_dir))
            continue
        sub = step_config(cfg, step, checkpoints, step_dir)
        last = step_dir / "checkpoints" / "last.ckpt"
        if last.is_file():
            sub.ckpt_path = str(last)
            log.info("step %s resumes from %s", step, last)
        log.info("step %s of %s", step, list(cfg.chain.steps))
        trainer = train(sub, step_dir)
        if trainer.interrupted:
            sys.exit(f"interrupted in step {step}; continue with the same command and hydra.run.dir={run_dir}")
        checkpoints[step] = best_checkpoint(trainer)
        if trainer.is_global_zero:
            done.write_text(f"{checkpoints[step]}\n")
        if step == "mpn":
            set_mask_rule(cfg, calibrated_mask_rule(cfg, checkpoints["mpn"], run_dir))
    if rank_zero_only.rank != 0:
        return checkpoints

    pipeline = select_pipeline(cfg, checkpoints, run_dir)
    model_path = save_pipeline(pipeline, run_dir / "model.safetensors")
    log.info("inference model: %s", model_path)
    if cfg.chain.demo_rows:
        grid = run_dir / "blind_inpainting.png"
        scores = test_split_grid(cfg, BlindInpainter(pipeline), grid, cfg.chain.demo_rows)
        log.info(
            "blind inpainting of the test split: %s -> %s", grid, ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
        )
    return checkpoints
