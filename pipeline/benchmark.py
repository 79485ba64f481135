"""``python -m pipeline.benchmark [stages=[ipn]] [sizes=[256]] [variants=[fp32]] [skip=[train]] [device=cuda]``

Training throughput, inference latency, FLOPs, % of the matmul peak and peak memory of each stage
and of the blind pipeline, on this machine. What is timed, and how:
:mod:`pipeline.benchmarking.measure`; the printed lines, tables and JSON:
:mod:`pipeline.benchmarking.report`. Everything goes to ``out`` (JSON, default ``benchmark.json`` in
the run folder ``runs/benchmark/<time>/``).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.cli import command
from pipeline.benchmarking.measure import Benchmark
from pipeline.benchmarking.report import print_report


def output_path(cfg: DictConfig) -> Path:
    """``out``, else ``benchmark.json`` in the Hydra run folder."""
    if cfg.get("out"):
        return Path(str(cfg.out)).expanduser()
    return Path(HydraConfig.get().runtime.output_dir) / "benchmark.json"


@command("benchmark", "pipeline", "data", "stages", "inference")
def main(cfg: DictConfig) -> None:
    out = output_path(cfg)
    print_report(Benchmark(cfg, out).run(), out)


if __name__ == "__main__":
    main()
