"""EPN: the module's GAN step, `python -m pipeline.train stage=epn` through Hydra, mask_source=mpn."""

import pytest
import torch

from common.checkpoint import CheckpointError, load_checkpoint
from epn.module import EPNModule
from pipeline.stages import load_stage
from pipeline.train import build_module, train
from tests.conftest import compose_train, run_module


def _batch(b=2, size=32):
    torch.manual_seed(0)
    image = torch.rand(b, 3, size, size)
    mask = torch.zeros(b, 1, size, size)
    mask[..., 8:20, 10:24] = 1
    return {
        "image": image,
        "corrupted": image * (1 - mask) + mask * 0.5,
        "mask": mask,
        "edge": (torch.rand(b, 1, size, size) > 0.9).float(),
        "corrupted_edge": (torch.rand(b, 1, size, size) > 0.9).float(),
    }


def test_losses_are_edgeconnects_and_the_generator_learns_from_them():
    module = EPNModule(generator={"base_channels": 8, "residual_blocks": 2}, discriminator={"base_channels": 8})
    batch = _batch()
    outputs = module.generate(batch)
    assert outputs["edges"].shape == (2, 1, 32, 32) and 0 <= outputs["edges"].min() <= outputs["edges"].max() <= 1
    _d_loss, _ = module.discriminator_loss(batch, {k: v.detach() for k, v in outputs.items()})
    g_loss, parts = module.generator_loss(batch, outputs)
    assert g_loss.item() == pytest.approx((parts["g_adv"] + 10 * parts["g_fm"]).item(), rel=1e-5)
    g_loss.backward()
    assert all(p.grad is not None for p in module.generator.parameters())
    opt_g, opt_d = module.configure_optimizers()
    assert opt_g.param_groups[0]["betas"] == (0.0, 0.9) and opt_d.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_fast_dev_run_through_hydra(tmp_path):
    proc = run_module(
        "pipeline.train", "stage=epn", "trainer=smoke", "+trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_smoke_run_validates_and_writes_a_grid(tmp_path):
    trainer = train(compose_train(tmp_path, "epn"), tmp_path)
    metrics = trainer.callback_metrics
    for key in ("val/precision", "val/recall", "val/precision_hole", "val/recall_hole", "val/f1_hole"):
        assert key in metrics and 0 <= metrics[key] <= 1
    assert list((tmp_path / "samples").glob("val_epn_*.png"))
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", "epn")["global_step"] == 8  # 4 batches × (D + G)


def test_mask_source_mpn_uses_a_frozen_mpn_from_a_smoke_run(tmp_path):
    mpn_dir, epn_dir = tmp_path / "mpn", tmp_path / "epn"
    train(compose_train(mpn_dir, "mpn"), mpn_dir)
    mpn_ckpt = mpn_dir / "checkpoints" / "last.ckpt"
    cfg = compose_train(epn_dir, "epn", "stage.mask_source=mpn", f"stage.mpn_checkpoint={mpn_ckpt}")

    module = build_module(cfg.stage)
    batch = _batch()
    predicted = module.predicted_mask(batch)
    expected = load_stage("mpn", mpn_ckpt)(batch["corrupted"])
    assert torch.allclose(predicted, expected) and not torch.equal(predicted, batch["mask"])

    trainer = train(cfg, epn_dir)
    state = load_checkpoint(epn_dir / "checkpoints" / "last.ckpt", "epn")["state_dict"]
    assert not any(k.startswith(("net.", "_frozen")) for k in state)  # EPN weights only
    used = trainer.lightning_module.frozen("mask_predictor")
    saved = load_checkpoint(mpn_ckpt)["state_dict"]
    assert all(torch.equal(v, saved[f"net.{k}"]) for k, v in used.net.state_dict().items())  # the MPN stayed frozen


def test_mask_source_mpn_errors(tmp_path):
    with pytest.raises(CheckpointError, match="needs stage.mpn_checkpoint"):
        build_module(compose_train(tmp_path, "epn", "stage.mask_source=mpn").stage)
    epn_dir = tmp_path / "epn"
    train(compose_train(epn_dir, "epn"), epn_dir)
    with pytest.raises(CheckpointError, match="stage 'epn', not 'mpn'"):
        build_module(
            compose_train(
                tmp_path,
                "epn",
                "stage.mask_source=mpn",
                f"stage.mpn_checkpoint={epn_dir / 'checkpoints' / 'last.ckpt'}",
            ).stage
        )
