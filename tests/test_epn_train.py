"""EPN: the module's GAN step, `python -m pipeline.train stage=epn` through Hydra, and the feed
(the true mask through the pipeline's mask rule, or a frozen MPN's)."""

import pytest
import torch

from common.checkpoint import load_module, read_model_file
from common.errors import CheckpointError, ConfigError
from epn.module import EPNModule
from mpn.module import MPNModule
from pipeline.model import StageFeed
from pipeline.training.stage import build_module, train
from tests.conftest import compose_train, run_module


def _batch(b=2, size=32):
    torch.manual_seed(0)
    image = torch.rand(b, 3, size, size)
    mask = torch.zeros(b, 1, size, size)
    mask[..., 8:20, 10:24] = 1
    mask[..., 8:20, 24] = 0.3  # a soft rim
    return {
        "image": image,
        "corrupted": image * (1 - mask) + mask * 0.5,
        "mask": mask,
        "edge": (torch.rand(b, 1, size, size) > 0.9).float(),
        "corrupted_edge": (torch.rand(b, 1, size, size) > 0.9).float(),
    }


def _module(**kwargs):
    tiny = {"generator": {"base_channels": 8, "residual_blocks": 2}, "discriminator": {"base_channels": 8}}
    return EPNModule(**tiny, **kwargs)


def test_losses_are_edgeconnects_and_the_generator_learns_from_them():
    module = _module(feed=StageFeed())
    batch = _batch()
    outputs = module.generate(batch)
    edges = outputs["predicted_edges"]
    assert edges.shape == (2, 1, 32, 32) and 0 <= edges.min() <= edges.max() <= 1
    _d_loss, _ = module.discriminator_loss(batch, {k: v.detach() for k, v in outputs.items()})
    g_loss, parts = module.generator_loss(batch, outputs)
    assert g_loss.item() == pytest.approx((parts["g_adv"] + 10 * parts["g_fm"]).item(), rel=1e-5)
    g_loss.backward()
    assert all(p.grad is not None for p in module.generator.parameters())
    opt_g, opt_d = module.configure_optimizers()
    assert opt_g.param_groups[0]["betas"] == (0.0, 0.9) and opt_d.param_groups[0]["lr"] == pytest.approx(1e-5)


@pytest.mark.parametrize(
    ("config", "network", "matched"),
    [
        ({"name": "sn_patch", "width_mult": 1 / 16}, "SNPatchDiscriminator", 6),
        (
            {"name": "global_local", "image_size": 32, "width_mult": 1 / 16},
            "GlobalLocalDiscriminator",
            13,
        ),  # 6 convs + FC global, 5 + FC local
    ],
)
def test_another_discriminator_trains_the_edges_with_feature_matching(config, network, matched):
    """stage/discriminator=sn_patch|global_local: EdgeConnect's losses against DeepFill's or GLCIC's
    discriminator, feature matching over its activations (each (Leaky)ReLU's output)."""
    module = EPNModule(generator={"base_channels": 8, "residual_blocks": 2}, discriminator=config, feed=StageFeed())
    assert type(module.discriminator).__name__ == network
    first = next(m for m in module.discriminator.modules() if isinstance(m, torch.nn.Conv2d))
    assert first.in_channels == 2  # [gray, edges], as EdgeConnect's
    batch = _batch()
    outputs = module.generate(batch)
    logits, features = module._discriminate(batch, outputs, outputs["predicted_edges"])
    assert len(features) == matched and logits.requires_grad
    d_loss, _ = module.discriminator_loss(batch, {k: v.detach() for k, v in outputs.items()})
    g_loss, parts = module.generator_loss(batch, outputs)
    assert torch.isfinite(d_loss) and parts["g_fm"] > 0
    assert g_loss.item() == pytest.approx((parts["g_adv"] + 10 * parts["g_fm"]).item(), rel=1e-5)
    g_loss.backward()
    assert all(p.grad is not None for p in module.generator.parameters())


def test_the_discriminator_is_a_config_choice(tmp_path):
    for choice, network in [("patch", "PatchDiscriminator"), ("global_local", "GlobalLocalDiscriminator")]:
        cfg = compose_train(tmp_path, "epn", f"stage/discriminator={choice}")
        assert type(build_module(cfg.stage).discriminator).__name__ == network
    cfg = compose_train(tmp_path, "epn", "stage/discriminator=sn_patch", f"hydra.run.dir={tmp_path}")
    assert train(cfg, tmp_path).global_step == 2 * cfg.trainer.limit_train_batches


def test_the_true_mask_reaches_the_stage_through_the_pipelines_mask_rule():
    batch = _batch()
    mask = _module(feed=StageFeed(pipeline={"dilate": 1})).generate(batch)["mask"]
    hole = torch.zeros_like(batch["mask"])
    hole[..., 7:21, 9:25] = 1  # the hard hole grown by 1 px swallows the soft rim
    assert torch.equal(mask, torch.maximum(batch["mask"], hole))


def test_without_a_feed_training_is_a_clear_error():
    with pytest.raises(ConfigError, match="no feed is attached"):
        _module().generate(_batch())


def test_fast_dev_run_through_hydra(tmp_path):
    proc = run_module("pipeline.train", "stage=epn", "debug=fast_dev_run", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_smoke_run_validates_and_writes_a_grid(tmp_path):
    trainer = train(compose_train(tmp_path, "epn"), tmp_path)
    metrics = trainer.callback_metrics
    for key in ("val/precision", "val/recall", "val/precision_hole", "val/recall_hole", "val/f1_hole"):
        assert key in metrics and 0 <= metrics[key] <= 1
    assert list((tmp_path / "samples").glob("val_epn_*.png"))
    last = read_model_file(tmp_path / "checkpoints" / "last.ckpt", "epn")
    assert last.checkpoint["global_step"] == 8  # 4 batches × (D + G)


def test_a_frozen_mpn_from_a_smoke_run_feeds_the_epn(tmp_path):
    mpn_dir, epn_dir = tmp_path / "mpn", tmp_path / "epn"
    train(compose_train(mpn_dir, "mpn"), mpn_dir)
    mpn_ckpt = mpn_dir / "checkpoints" / "last.ckpt"
    cfg = compose_train(epn_dir, "epn", f"stage.module.feed.mpn_checkpoint={mpn_ckpt}")

    module = build_module(cfg.stage)
    batch = _batch()
    fed = module.fed(batch)["mask"]
    mpn = load_module(mpn_ckpt, MPNModule)
    expected = module.frozen("feed").pipeline.mask_rule(mpn(batch["corrupted"])["predicted_mask"])
    assert torch.allclose(fed, expected) and not torch.equal(fed, batch["mask"])

    trainer = train(cfg, epn_dir)
    state = read_model_file(epn_dir / "checkpoints" / "last.ckpt", "epn").state
    assert all(k.startswith(("generator.", "discriminator.")) for k in state)  # EPN weights only
    used = trainer.lightning_module.frozen("feed").pipeline.mpn
    saved = read_model_file(mpn_ckpt).state
    assert all(torch.equal(v, saved[k]) for k, v in used.state_dict().items())  # the MPN stayed frozen


def test_a_feed_checkpoint_of_another_stage_is_refused(tmp_path):
    epn_dir = tmp_path / "epn"
    train(compose_train(epn_dir, "epn"), epn_dir)
    wrong = epn_dir / "checkpoints" / "last.ckpt"
    with pytest.raises(CheckpointError, match="holds a 'epn' model, not 'mpn'"):
        build_module(compose_train(tmp_path, "epn", f"stage.module.feed.mpn_checkpoint={wrong}").stage)
    proc = run_module(
        "pipeline.train", "stage=epn", "debug=smoke", f"stage.module.feed.mpn_checkpoint={tmp_path / 'nope.ckpt'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert proc.returncode != 0 and "error: model file" in proc.stderr and "Traceback" not in proc.stderr
