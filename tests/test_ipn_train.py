"""IPN: inputs and composition, the edge guide it is fed, DeepFill v2 losses, optional VGG losses,
training through Hydra."""

import pytest
import torch

from common.checkpoint import read_model_file
from common.classical import FLOORS
from common.errors import CheckpointError
from common.ops import compose, edge_hole
from ipn.module import IPNModule, generator_inputs
from pipeline.model import StageFeed
from pipeline.training.stage import build_module, train
from tests.conftest import compose_train, run_module
from tests.test_checkpoint import Exploit

TINY = dict(generator={"cnum": 8}, discriminator={"cnum": 8}, feed=StageFeed())


def _batch(b=2, size=32):
    torch.manual_seed(0)
    image = torch.rand(b, 3, size, size)
    mask = torch.zeros(b, 1, size, size)
    mask[0, :, 8:20, 10:24] = 1
    mask[1, :, 4:12, 4:30] = 0.7
    edge = (torch.rand(b, 1, size, size) > 0.9).float()
    return {
        "image": image,
        "corrupted": image * (1 - mask) + mask * 0.5,
        "mask": mask,
        "edge": edge,
        "corrupted_edge": (torch.rand(b, 1, size, size) > 0.9).float(),
    }


def test_generator_input_and_composition():
    batch = _batch()
    x = generator_inputs(batch["corrupted"], batch["mask"], batch["edge"])
    assert x.shape == (2, 6, 32, 32)
    assert torch.all(x[0, :3, 8:20, 10:24] == 0)  # the hole is mid-gray (0 in [-1, 1])
    assert torch.allclose(x[:, :3, 0, 0], batch["corrupted"][:, :, 0, 0] * 2 - 1)
    assert torch.equal(x[:, 3:4], torch.ones_like(batch["mask"])) and torch.equal(x[:, 4:5], batch["mask"])
    generated = torch.zeros_like(batch["image"])
    out = compose(batch["corrupted"], generated, batch["mask"])
    known = batch["mask"] == 0
    assert torch.equal(out[known.expand_as(out)], batch["corrupted"][known.expand_as(out)])
    assert torch.allclose(out[1, :, 5, 5], batch["corrupted"][1, :, 5, 5] * 0.3)  # soft mask blends


def test_losses_are_deepfill_v2s():
    module = IPNModule(**TINY)
    batch = _batch()
    outputs = module.generate(batch)
    for key in ("coarse", "refined", "output"):
        assert outputs[key].shape == (2, 3, 32, 32) and outputs[key].min() >= 0 and outputs[key].max() <= 1
    g_loss, parts = module.generator_loss(batch, outputs)
    total = 0.1 * parts["g_adv"] + parts["l1_coarse"] + parts["l1_refine"]  # mmagic's / EdgeConnect's 0.1
    assert g_loss.item() == pytest.approx(total.item(), rel=1e-5)
    # hole-normalised: the refined term's hole part is the composite's L1 over the (soft) hole's area
    mask, error = outputs["mask"], (outputs["output"] - batch["image"]).abs().mean(1, keepdim=True)
    assert parts["l1_hole"].item() == pytest.approx(((error * mask).sum() / mask.sum()).item(), rel=1e-5)
    d_loss, _ = module.discriminator_loss(batch, {k: v.detach() for k, v in outputs.items()})
    assert torch.isfinite(d_loss)
    opt_g, opt_d = module.configure_optimizers()
    assert (
        opt_g.param_groups[0]["betas"] == (0.5, 0.999)
        and opt_d.param_groups[0]["lr"] == opt_g.param_groups[0]["lr"] == 1e-4
    )
    assert module.adversarial.kind == "hinge"


def test_the_edge_guide_is_the_one_inference_gives():
    """Truth's Canny inside the hole and its margin (standing in for the EPN), Canny of the
    corrupted image outside them, on the mask the pipeline's rule makes of the true mask."""
    batch = _batch()
    outputs = IPNModule(**TINY).generate(batch)
    mask, hole = outputs["mask"], edge_hole(outputs["mask"]) > 0
    assert torch.equal(mask, StageFeed().pipeline.mask_rule(batch["mask"]))
    assert torch.equal(outputs["edges"][hole], batch["edge"][hole])
    assert torch.equal(outputs["edges"][~hole], batch["corrupted_edge"][~hole])


def test_vgg_losses_from_a_weights_path_only(tmp_path):
    from torchvision.models import vgg19

    path = tmp_path / "vgg19.pth"
    torch.save(vgg19(weights=None).state_dict(), path)
    module = IPNModule(**TINY, vgg_weights=str(path))
    batch = _batch(size=32)
    loss, parts = module.generator_loss(batch, module.generate(batch))
    assert parts["perceptual"] > 0 and parts["style"] >= 0
    expected = (
        0.1 * parts["g_adv"]
        + parts["l1_coarse"]
        + parts["l1_refine"]
        + 0.1 * parts["perceptual"]
        + 250 * parts["style"]
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not any(p.requires_grad for p in module.frozen("vgg").parameters())
    assert not any(k.startswith("vgg") for k in module.state_dict())  # checkpoints do not carry it
    with pytest.raises(CheckpointError, match="never downloads"):
        IPNModule(**TINY, vgg_weights=str(tmp_path / "missing.pth"))
    marker = tmp_path / "pwned"
    torch.save({"features.0.weight": Exploit(marker)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="VGG-19 weights .* is not a plain weights file and was not loaded"):
        IPNModule(**TINY, vgg_weights=str(tmp_path / "evil.pth"))
    assert not marker.exists()


def test_smoke_run_through_hydra(tmp_path):
    proc = run_module("pipeline.train", "stage=ipn", "debug=smoke", f"hydra.run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((tmp_path / "samples").glob("val_ipn_*.png"))
    assert read_model_file(tmp_path / "checkpoints" / "last.ckpt", "ipn").checkpoint["global_step"] == 8


def test_trains_on_a_frozen_mpn_and_epn(tmp_path):
    mpn_dir, epn_dir, ipn_dir = tmp_path / "mpn", tmp_path / "epn", tmp_path / "ipn"
    train(compose_train(mpn_dir, "mpn"), mpn_dir)
    train(compose_train(epn_dir, "epn"), epn_dir)
    cfg = compose_train(
        ipn_dir,
        "ipn",
        f"stage.module.feed.mpn_checkpoint={mpn_dir}/checkpoints/last.ckpt",
        f"stage.module.feed.epn_checkpoint={epn_dir}/checkpoints/last.ckpt",
        "stage.module.feed.masked_share=0",  # every sample on the MPN's mask (the share is drawn per call)
    )
    module = build_module(cfg.stage)
    batch = _batch()
    outputs = module.generate(batch)
    mask, edges = outputs["mask"], outputs["edges"]
    assert not torch.equal(mask, batch["mask"]) and not torch.equal(edges, batch["edge"])
    hole = edge_hole(mask) > 0
    assert torch.equal(edges[~hole], batch["corrupted_edge"][~hole])  # known-region edges kept outside the hole
    fed = module.fed(batch)
    assert torch.equal(edges[hole], fed["predicted_edges"][hole])  # the frozen EPN's inside it
    trainer = train(cfg, ipn_dir)
    metrics = trainer.callback_metrics
    for key in ("val/psnr", "val/ssim", "val/l1", "val/psnr_hole", "val/l1_hole"):
        assert key in metrics and torch.isfinite(metrics[key])
    state = read_model_file(ipn_dir / "checkpoints" / "last.ckpt", "ipn").state
    assert all(k.startswith(("generator.", "discriminator.")) for k in state)


def test_generator_learns_to_fill_a_fixed_batch():
    """Reconstruction alone (adv_weight 0) must fill holes. Measured (seed 0, 4 samples 64²,
    cnum 8, lr 1e-3): hole L1 0.239 -> 0.150 (0.63×) in 100 steps; asserted: below 0.75× the start."""
    from lightning import seed_everything

    from common.metrics import l1
    from data.corruption import Corruptor
    from data.datamodule import InpaintingSamples
    from data.masks import FreeFormMasks
    from data.sample import sample

    seed_everything(0)
    samples = InpaintingSamples(
        sample("val", 64, crops_per_photo=2), FreeFormMasks(), Corruptor(), train=False, edges=True
    )
    batch = {
        k: torch.stack([samples[i][k] for i in range(4)])
        for k in ("image", "corrupted", "mask", "edge", "corrupted_edge")
    }
    module = IPNModule(**TINY, adv_weight=0.0, lr=1e-3)
    optimizer, _ = module.configure_optimizers()

    def hole_l1():
        with torch.no_grad():
            return l1(module.generate(batch)["output"], batch["image"], mask=batch["mask"]).item()

    start = hole_l1()
    for _ in range(100):
        loss, _ = module.generator_loss(batch, module.generate(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert hole_l1() < 0.75 * start


@pytest.mark.parametrize("prefill", FLOORS)
def test_step_0_returns_the_classical_floor_exactly(prefill):
    """With a floor (``prefill``), the generator corrects a classical fill from zero-initialised
    heads: before training the output is the floor in the hole (a pixel more than half destroyed
    wholly replaced) and the input elsewhere, and the parameters are the plain generator's."""
    from common.classical import classical_fill
    from common.ops import harden_hole

    module = IPNModule(**TINY, prefill=prefill)
    assert sum(p.numel() for p in module.generator.parameters()) == sum(
        p.numel() for p in IPNModule(**TINY, prefill=None).generator.parameters()
    )
    batch = _batch()
    mask = batch["mask"]
    outputs = module(batch["corrupted"], mask, batch["edge"], batch["corrupted_edge"])
    floor = classical_fill(batch["corrupted"], mask, prefill)
    assert torch.allclose(outputs["coarse"], floor, atol=1e-6)
    assert torch.allclose(outputs["output"], compose(batch["corrupted"], floor, harden_hole(mask)), atol=1e-6)
    loss, _ = module.generator_loss(batch, {**outputs, "mask": mask})
    loss.backward()
    assert module.generator.coarse.conv17.weight.grad.abs().sum() > 0  # the correction learns


def test_floor_and_composite_choices_are_checked():
    with pytest.raises(ValueError, match="prefill"):
        IPNModule(**TINY, prefill="patchmatch")
    with pytest.raises(ValueError, match="composite"):
        IPNModule(**TINY, composite="average")


def test_a_share_of_the_feed_is_the_binary_hole_users_give():
    """StageFeed(masked_share=...): per sample, either the blind rule's mask of the prediction (here
    the truth, no MPN) or masked mode's binary hole of the true mask."""
    torch.manual_seed(0)
    batch = _batch()
    batch["mask"][:, :, 24:30, 2:12] = 0.3  # faint damage: the blind rule keeps it soft, a given hole drops it
    rule = StageFeed().pipeline
    blind, given = rule.mask_rule(batch["mask"]), rule.masked_hole(batch["mask"])
    assert not torch.equal(blind, given) and set(given.unique().tolist()) <= {0.0, 1.0}
    seen = set()
    feed = StageFeed(masked_share=0.5)
    for shift in range(8):  # new damage each time, as in training
        batch["mask"][:, :, 0, shift] = 0.05 * (shift + 1)
        blind, given = rule.mask_rule(batch["mask"]), rule.masked_hole(batch["mask"])
        mask = feed(batch)["mask"]
        assert torch.equal(mask, feed(batch)["mask"])  # the same sample, the same draw (validation)
        for i in range(mask.shape[0]):
            kind = "given" if torch.equal(mask[i], given[i]) else "blind" if torch.equal(mask[i], blind[i]) else None
            assert kind is not None
            seen.add(kind)
    assert seen == {"given", "blind"}
    assert all(torch.equal(StageFeed()(batch)["mask"], blind) for _ in range(3))
