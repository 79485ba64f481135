"""``python -m pipeline.train stage=<mpn|epn|ipn|joint> [data=...] [trainer=...] [logger=...] [callbacks=...]``

Trains one stage with Lightning; ``experiment=all`` trains the chain mpn → epn → ipn → joint in one
run folder and ends with the inference model (``model.safetensors``) and a blind-inpainting grid of
the test split; ``experiment=quickstart`` is that on the bundled sample set in under 30 CPU
minutes. A run writes to ``runs/<stage>/<timestamp>/``: the resolved ``config.yaml``,
``checkpoints/`` (``last.ckpt`` and the best by the stage's monitored metric), logger output and
``samples/`` grids. ``ckpt_path=.../last.ckpt`` resumes a killed run (optimizer and step state);
``init_from=...ckpt`` loads weights only (fine-tuning). ``last.ckpt`` is written at every
validation and when training stops on an exception or Ctrl-C; ``trainer.val_check_interval=1000``
validates (and so checkpoints) every 1000 steps of long epochs.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.cli import command
from common.errors import ConfigError
from pipeline.training.chain import train_chain
from pipeline.training.stage import check_launch, check_used, train


@command("train", "pipeline", "data", "stages")
def main(cfg: DictConfig) -> None:
    check_launch()
    hydra = HydraConfig.get()
    check_used(cfg, list(hydra.overrides.task), dict(hydra.runtime.choices))
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.get("chain"):
        train_chain(cfg, run_dir)
    elif cfg.get("stage") is not None:
        train(cfg, run_dir)
    else:
        raise ConfigError("choose a stage (`stage=mpn`, see conf/stage/) or the whole chain (`experiment=all`)")


if __name__ == "__main__":
    main()
