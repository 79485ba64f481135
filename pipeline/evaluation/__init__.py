"""The parts of ``python -m pipeline.evaluate`` (:mod:`pipeline.evaluate` runs them), one job each:

- :mod:`~pipeline.evaluation.pairs`: the test pairs (test images × the bucketed test-mask set,
  corrupted per pair) and the hole-ratio buckets of the report;
- :mod:`~pipeline.evaluation.methods`: what is evaluated (ours or a baseline, blind or masked) and
  the check of the settings;
- :mod:`~pipeline.evaluation.metrics`: per-pair scores, their per-bucket summary, LPIPS and FID;
- :mod:`~pipeline.evaluation.report`: the worst and best pairs, the run folder's files, the table.
"""
