"""The parts of ``python -m pipeline.evaluate`` (:mod:`pipeline.evaluate` is the command line), one job each:

- :mod:`~pipeline.evaluation.pairs`: the test pairs of the two protocols (test images × the named
  damage kinds plus each image clean, or × the bucketed test-mask set) and the report rows each
  pair counts in (damage kinds, hole-ratio buckets, overall);
- :mod:`~pipeline.evaluation.methods`: what is evaluated (ours or a baseline, blind or masked), the
  baselines run beside it (on its own mask and on the true mask) and the check of the settings;
- :mod:`~pipeline.evaluation.metrics`: per-pair scores, their summary per report row, LPIPS and FID;
- :mod:`~pipeline.evaluation.report`: the worst and best pairs, the run folder's files, the table;
- :mod:`~pipeline.evaluation.run`: the pass that runs them all (:func:`~pipeline.evaluation.run.evaluate`).
"""
