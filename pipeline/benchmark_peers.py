"""``python -m pipeline.benchmark_peers peers.edgeconnect=DIR peers.deepfill=DIR peers.unet=DIR``

Our networks against the public implementations of the same architectures, run unmodified from
their own checkouts (nothing of theirs is copied here):

- ``peers.edgeconnect``: github.com/knazeri/edge-connect, ``src/networks.py``'s ``EdgeGenerator``
  (spectral norm on), against our EPN;
- ``peers.deepfill``: github.com/nipponjo/deepfillv2-pytorch, ``model/networks.py``'s ``Generator``
  (``cnum_in=5, cnum=48``), against our IPN;
- ``peers.unet``: github.com/milesial/Pytorch-UNet, ``unet.UNet(3, 1)``, against our MPN at the
  published width (``width_mult=1``) and at the shipped model's width;
- the blind pipeline as users run it (the shipped model, a damaged bundled photo) against the chain
  U-Net → Canny (scikit-image, as EdgeConnect's loader) → EdgeConnect's edge generator → DeepFill v2
  → compositing, all with random weights (their cost does not depend on the weights).

Each measurement runs in a fresh process (spawned) with the same harness on both sides: batch 1
forward under ``torch.inference_mode`` in eval mode, and forward + backward of ``output.mean()``
at ``train_batch`` in train mode. Rounds alternate which side goes first; a ratio (ours / theirs,
< 1 = ours faster) is the median over rounds of each round's ratio, so drift of the machine's
speed between rounds cancels. Results go to ``out`` (JSON) and a table.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.cli import command
from pipeline.benchmarking.peers import run


@command("benchmark_peers")
def main(cfg: DictConfig) -> None:
    out = (
        Path(str(cfg.out)).expanduser() if cfg.get("out") else Path(HydraConfig.get().runtime.output_dir) / "peers.json"
    )
    run(cfg, out)


if __name__ == "__main__":
    main()
