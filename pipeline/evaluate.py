"""``python -m pipeline.evaluate``: compare inpainting methods on identical inputs: per kind of damage,
per hole-ratio bucket and on clean photos, with classical baselines in the same table.

Usage::

    python -m pipeline.evaluate [checkpoint=MODEL] [mode=blind|masked] [protocol=damage|buckets|denoise] [data=...]
    python -m pipeline.evaluate method=<baseline> [mask_checkpoint=MODEL] [mode=blind|masked] [data=...]

- **Test pairs** (:mod:`pipeline.evaluation.pairs`), from every image of the data config's test
  split (``data=``, exactly as in training):

  - ``protocol=damage`` (default): every test image × every damage kind of ``damage_kinds``
    (:mod:`data.damage`: scratch, text, pasted_photo, noise_blotch, graffiti; null = all) ×
    ``per_kind`` draws, each a pure function of ``(seed, image, kind, draw)`` (the donor of
    ``pasted_photo``, another test image, drawn from the same generator), plus every test image
    once **clean** (mask 0, corrupted = image). Report rows: each kind, each hole-ratio bucket of
    the true hole, ``all damaged``, ``clean``.
  - ``protocol=buckets``: every test image × ``masks_per_bucket`` masks of each bucket of the
    fixed test-mask set (:class:`pipeline.evaluation.mask_set.BucketedTestMasks`: ``mask_set=DIR`` as written
    by ``python -m pipeline.evaluation.mask_set``, else generated at ``data.size`` from ``seed``), corrupted by
    ``corruption`` with a generator seeded by ``(seed, image, mask)``. Report rows: each bucket, ``all``.

  - ``protocol=denoise`` (:mod:`pipeline.evaluation.denoise`): every test image clean and with
    each noise setting of its table; ours in denoise and blind mode beside the classical
    denoisers, PSNR and SSIM of the whole image, its own report files.

  The inputs depend on nothing else, so every method sees bit-identical inputs; ``metrics.json``
  records their SHA-256 (``inputs_sha256``) to prove it. ``limit=`` keeps the first pairs.
- **Methods** (:mod:`pipeline.evaluation.methods`): ``ours`` (``checkpoint=``, null: the shipped model,
  :class:`~pipeline.inference.inpainter.BlindInpainter`) or a baseline of :mod:`pipeline.methods.classical`.
  ``mode=blind``: ours finds the mask with its MPN; a baseline fills the mask that the model of
  ``mask_checkpoint=`` finds (its MPN, then its mask rule), so ``method=telea mode=blind
  mask_checkpoint=M`` and ``checkpoint=M`` differ only in the filling. ``mode=masked``: ours gets
  the true (soft) mask; a baseline, which only takes hard holes, gets the true mask hardened by
  :meth:`BlindPipeline.mask_rule <pipeline.model.BlindPipeline.mask_rule>`.
- **Baselines beside it** (``baselines: [telea]``, any of :mod:`pipeline.methods.classical`; ``[]`` for
  none), in the same pass on the same pairs: each on the method's own final mask (``telea (own
  mask)``; blind mode only) and on the true mask hardened by the mask rule (``telea (true mask)``).
- **Mask rule**: the model's stored settings, each overridden by ``pipeline.hole_threshold=``,
  ``pipeline.dilate=`` or ``pipeline.edge_sigma=`` (``conf/evaluate.yaml``; null keeps the stored
  value); without a model (a baseline in masked mode), :class:`~pipeline.model.BlindPipeline`'s
  defaults with the same overrides.
- **Metrics** (:mod:`pipeline.evaluation.metrics`, from :mod:`common.metrics`, per pair and
  method, then the mean over the pairs of each report row): PSNR (capped at 100 dB, so a clean
  photo left alone scores 100, not infinity), SSIM, L1 of the whole image and inside the true hole
  (``m > 0.5``); ``psnr_input``, the damaged input's PSNR (did repair help?); of the mask the
  method used (composited with or filled): ``final_iou`` (``> 0.5``, after dilation, vs the true
  hole), ``flagged`` (its share ``> 0.5``; ``flagged_max`` the largest of a row), ``soft_mask``
  (its mean); in blind mode the MPN's m̂: ``mask_iou`` (``m̂ > hole_threshold``, before
  dilation, vs the true hole), BCE and MAE against the true soft mask (as the MPN's validation);
  for ours, precision and recall of the edges inside the true hole against Canny of the truth
  (sigma ``edge_sigma``), pooled over the row's pairs as EdgeConnect pools them. IoUs are not
  defined on clean photos (no true hole). LPIPS (per pair) and FID (per row and method) only with
  weights given by path (``lpips_weights=``, ``fid_weights=``): nothing is downloaded.
- **Buckets**: by the hole ratio of the *true* mask (``mask > 0.5``), which the damage may
  change (soft borders, text that replaces the hole): ``1-10%`` ... ``50-60%`` (the mask set's
  buckets; :data:`pipeline.evaluation.mask_set.DEFAULT_BUCKETS` for ``protocol=damage``), plus ``<1%`` /
  ``>=60%`` rows when pairs fall outside them.
- **Output** (:mod:`pipeline.evaluation.report`) in the run folder (``runs/evaluate/<time>/``,
  ``hydra.run.dir=`` to choose): a table on the terminal (per report row, one line per method),
  ``metrics.json`` (``scores``: row -> method -> scores; method, mode, protocol and its settings,
  checkpoints, data, seed, counts, time per image), ``metrics.csv`` (one line per row and method,
  every score), ``pairs.csv`` (every pair's scores, one line per pair and method, for paired
  comparisons) and ``worst_best.png`` (the method's worst and best pairs by hole PSNR, worst first).

The pass itself is :func:`pipeline.evaluation.run.evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.cli import command
from pipeline.evaluation.run import evaluate

__all__ = ["evaluate", "main"]


@command("evaluate", "inference", "data")
def main(cfg: DictConfig) -> None:
    evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
