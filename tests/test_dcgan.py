"""pipeline/methods/dcgan/ (stage=dcgan): the 64² DCGAN (pinned counts), Yeh et al.'s latent search (importance
weights, the search recovering a generated image's hole, the mirror term) and the stage filling holes
at any size in the pipeline's IPN place."""

from __future__ import annotations

import pytest
import torch

from pipeline.methods.dcgan.model import (
    DCGANDiscriminator,
    DCGANGenerator,
    importance_weights,
    init_dcgan,
    latent_search,
)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_pytorch_example():
    """pytorch/examples dcgan/main.py: Generator(ngpu=1) with nz 100, ngf 64; Discriminator with ndf 64."""
    assert count(DCGANGenerator()) == 3_576_704
    assert count(DCGANDiscriminator()) == 2_765_568


def test_full_width_shapes_and_backward():
    g, d = DCGANGenerator(), DCGANDiscriminator()
    image = g(torch.rand(2, 100) * 2 - 1)
    assert image.shape == (2, 3, 64, 64) and image.abs().max() <= 1
    logits = d(image)
    assert logits.shape == (2,)
    logits.sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    with pytest.raises(ValueError, match="64²"):
        d(torch.rand(1, 3, 32, 32))


def test_importance_weights_follow_the_definition():
    known = torch.ones(1, 1, 16, 16)
    known[..., 5:9, 6:10] = 0
    w = importance_weights(known, window=7)
    assert torch.all(w[known == 0] == 0)
    assert w[0, 0, 0, 15] == 0  # far from the hole: no weight
    # Next to the hole: the share of hole pixels in its 7×7 window.
    assert w[0, 0, 5, 5].item() == pytest.approx(known[0, 0, 2:9, 2:9].eq(0).float().mean().item())
    assert w[0, 0, 0, 0].item() == pytest.approx(0.0)


def tiny_networks(seed: int = 0):
    torch.manual_seed(seed)
    g, d = DCGANGenerator(width_mult=1 / 8), DCGANDiscriminator(width_mult=1 / 8)
    init_dcgan(g), init_dcgan(d)
    return g.eval(), d.eval()


def test_the_search_finds_the_hole_of_a_generated_image():
    g, d = tiny_networks()
    with torch.no_grad():
        truth = (g(torch.rand(2, 100) * 2 - 1) + 1) / 2
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 20:44, 16:48] = 1
    start = latent_search(g, d, truth, mask, steps=0, blend=False)["generated"]
    found = latent_search(g, d, truth, mask, steps=300, lr=0.05, prior_weight=0.0, blend=False)
    hole = mask.bool().expand_as(truth)
    before, after = (start - truth)[hole].abs().mean(), (found["generated"] - truth)[hole].abs().mean()
    assert after < 0.5 * before, (before, after)
    assert torch.equal(found["output"][~hole], truth[~hole])  # known pixels kept


def test_the_search_leaves_the_networks_as_it_found_them_and_works_in_inference_mode():
    g, d = tiny_networks()
    g.train()
    image, mask = torch.rand(1, 3, 64, 64), torch.zeros(1, 1, 64, 64)
    mask[..., 10:30, 10:30] = 1
    with torch.inference_mode():
        out = latent_search(g, d, image, mask, steps=3)
    assert out["output"].shape == (1, 3, 64, 64) and g.training and not d.training
    assert all(p.requires_grad for p in [*g.parameters(), *d.parameters()]) and all(
        p.grad is None for p in g.parameters()
    )


def test_the_mirror_term_pulls_the_hole_towards_the_mirrored_image():
    g, _ = tiny_networks(1)
    image = torch.rand(1, 3, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 4:24] = 1  # left side: its mirror (the right side) is known
    hole = mask.bool().expand_as(image)
    mirrored = image.flip(-1)

    def error(weight):
        out = latent_search(g, None, image, mask, steps=150, lr=0.05, mirror_weight=weight, blend=False)["generated"]
        return (out - mirrored)[hole].abs().mean()

    assert error(10.0) < error(0.0)


def tiny_stage(**kwargs):
    from pipeline.methods.dcgan.module import DCGANModule
    from pipeline.model import StageFeed

    return DCGANModule(
        generator={"width_mult": 1 / 8}, discriminator={"width_mult": 1 / 8}, feed=StageFeed(), **kwargs
    ).eval()


def test_the_stage_fills_at_64_and_pastes_back_at_any_size():
    stage = tiny_stage(search_steps=3)
    corrupted, mask = torch.rand(2, 3, 40, 52), torch.zeros(2, 1, 40, 52)
    mask[..., 8:20, 10:30] = 1
    with torch.no_grad():
        out = stage(corrupted, mask)
    assert out["refined"].shape == out["output"].shape == corrupted.shape
    keep = (mask == 0).expand_as(corrupted)
    assert torch.equal(out["output"][keep], corrupted[keep])


def test_trains_through_the_cli_and_keeps_its_discriminator_for_the_prior(tmp_path):
    from pipeline.model import load_fill_stage
    from tests.conftest import run_module

    result = run_module("pipeline.train", "stage=dcgan", "debug=smoke", "stage.module.val_search_steps=2",
                        f"hydra.run.dir={tmp_path}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert any((tmp_path / "samples").glob("val_dcgan_*.png"))
    stage = load_fill_stage(tmp_path, "latent_search")
    assert stage.discriminator is not None and not stage.training


def test_the_experiment_trains_at_the_papers_batch():
    from tests.conftest import compose_config

    cfg = compose_config("train", "experiment=dcgan")
    assert cfg.stage.name == "dcgan" and cfg.data.batch_size == 64 and cfg.data.size == 128
