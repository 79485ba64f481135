"""``python -m pipeline.benchmark`` and ``pipeline.benchmark_peers``: what is measured
(:mod:`~pipeline.benchmarking.measure`, :mod:`~pipeline.benchmarking.peers`) and the report
(:mod:`~pipeline.benchmarking.report`)."""
