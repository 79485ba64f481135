"""pipeline/methods/glcic/model.py and stage=glcic: GLCIC's completion network and global + local discriminator
(pinned counts, shapes, the local patch on the hole), its three training phases, and the
discriminator as a choice of the IPN stage."""

from __future__ import annotations

import csv
import inspect

import pytest
import torch

from pipeline.methods.glcic.model import GLCICCompletionNet, GlobalLocalDiscriminator, crop_windows, hole_windows


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_match_the_public_implementation():
    """otenim/GLCIC-PyTorch's CompletionNetwork() and ContextDiscriminator((3, 128, 128),
    (3, 256, 256), arc="places2"): the paper's 256² layout."""
    assert count(GLCICCompletionNet()) == 6_072_131
    assert count(GlobalLocalDiscriminator()) == 45_063_681
    # The user's "first approach": one layer fewer each, 128² image, 56² patch (our count).
    assert count(GlobalLocalDiscriminator(image_size=128, local_size=56, global_layers=5, local_layers=4)) == 31_953_409


def test_completion_network_layout():
    net = GLCICCompletionNet()
    convs = [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert [m.dilation[0] for m in convs if isinstance(m, torch.nn.Conv2d)][6:10] == [2, 4, 8, 16]
    assert [m.stride[0] for m in convs] == [1, 2, 1, 2] + [1] * 8 + [2, 1, 2, 1, 1]
    assert [m.out_channels for m in convs][-5:] == [128, 128, 64, 32, 3]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 16  # all but the last layer


def test_full_width_forward_and_backward_shapes():
    torch.manual_seed(0)
    net, d = GLCICCompletionNet().train(), GlobalLocalDiscriminator(image_size=64, local_size=32)
    x = torch.rand(2, 4, 64, 64)
    y = net(x)
    assert y.shape == (2, 3, 64, 64) and y.min() >= 0 and y.max() <= 1
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:30, 20:40] = 1
    logits = d(y * 2 - 1, mask)
    assert logits.shape == (2, 1)
    logits.mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("shape", [(1, 4, 37, 50), (2, 4, 33, 33)])
def test_any_size_comes_back_at_its_size(shape):
    with torch.no_grad():
        assert GLCICCompletionNet(width_mult=1 / 16).eval()(torch.rand(shape)).shape == (shape[0], 3, *shape[2:])


def test_the_local_patch_is_centred_on_the_hole():
    mask = torch.zeros(3, 1, 64, 64)
    mask[0, :, 20:30, 40:50] = 1  # centre (25, 45)
    mask[1, :, 58:64, 0:4] = 1  # in a corner: the window moves inside
    windows = hole_windows(mask, 16)
    assert windows == [(17, 37), (48, 0), (24, 24)]  # no hole: the image's centre
    x = torch.arange(3 * 2 * 64 * 64, dtype=torch.float32).view(3, 2, 64, 64)
    patches = crop_windows(x, windows, 16)
    assert patches.shape == (3, 2, 16, 16) and torch.equal(patches[0], x[0, :, 17:33, 37:53])
    with pytest.raises(ValueError, match="does not fit"):
        hole_windows(mask, 65)


def test_the_discriminator_looks_at_the_hole_locally():
    """Changing pixels inside the local window changes what the local path sees; the global path
    is fixed to its size."""
    torch.manual_seed(0)
    d = GlobalLocalDiscriminator(image_size=32, local_size=16, width_mult=1 / 16).eval()
    seen = []
    d.local_path.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    x, mask = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 2:6, 24:30] = 1
    with torch.no_grad():
        d(x, mask)
    ((top, left),) = hole_windows(mask, 16)
    assert torch.equal(seen[0], x[..., top : top + 16, left : left + 16])
    with pytest.raises(ValueError, match="image_size"):
        d(torch.rand(1, 3, 48, 48), torch.zeros(1, 1, 48, 48))


def tiny_module(**kwargs):
    from pipeline.methods.glcic.module import GLCICModule
    from pipeline.model import StageFeed

    return GLCICModule(
        generator={"width_mult": 1 / 16},
        discriminator={"image_size": 32, "width_mult": 1 / 16},
        feed=StageFeed(),
        **kwargs,
    )


def test_the_hole_is_filled_with_the_mean_colour_and_only_the_hole_changes():
    torch.manual_seed(0)
    module = tiny_module(mean_pixel=(0.2, 0.4, 0.6)).eval()
    seen = []
    module.generator.register_forward_hook(lambda _m, args, _o: seen.append(args[0]))
    corrupted, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 6:20, 10:26] = 1
    with torch.no_grad():
        out = module(corrupted, mask)
    filled = seen[0]
    assert filled.shape == (2, 4, 32, 32) and torch.equal(filled[:, 3:], mask)
    assert torch.allclose(filled[0, :3, 10, 12], torch.tensor([0.2, 0.4, 0.6]))
    keep = (mask == 0).expand_as(corrupted)
    assert torch.equal(out["output"][keep], corrupted[keep])


def test_the_loss_is_mse_in_the_hole_plus_the_paper_weight_of_the_adversarial_term():
    from pipeline.methods.glcic.module import GLCICModule

    torch.manual_seed(0)
    module = tiny_module(completion_steps=0, discriminator_steps=0).train()
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    outputs = module(image, mask) | {"mask": mask}
    loss, parts = module.generator_loss({"image": image}, outputs)
    expected = ((outputs["refined"] - image) * mask).square().mean()
    torch.testing.assert_close(parts["mse"], expected)
    torch.testing.assert_close(loss, parts["mse"] + 4e-4 * parts["g_adv"])
    defaults = {k: v.default for k, v in inspect.signature(GLCICModule).parameters.items()}
    assert (defaults["gan_loss"], defaults["adv_weight"], defaults["lr"]) == ("nsgan", 4e-4, 1.0)
    assert (defaults["completion_steps"], defaults["discriminator_steps"]) == (90_000, 10_000)
    loss, parts = tiny_module().train().generator_loss({"image": image}, outputs)  # phase 1: the MSE alone
    assert set(parts) == {"mse"} and loss == parts["mse"]


def test_the_three_phases_train_what_the_paper_says(tmp_path):
    """One iteration of each phase: the completion network alone (D untouched), D alone (the
    completion network untouched), then both; the phase clock survives a checkpoint."""
    from hydra.utils import instantiate

    from pipeline.training.stage import train
    from tests.conftest import compose_train

    cfg = compose_train(
        tmp_path, "glcic", "stage.module.completion_steps=1", "stage.module.discriminator_steps=1",
        "trainer.limit_train_batches=3", f"hydra.run.dir={tmp_path}",
    )  # fmt: skip
    module = instantiate(cfg.stage.module, _convert_="all")
    assert type(module.discriminator).__name__ == "GlobalLocalDiscriminator"
    trainer = train(cfg, tmp_path)
    with open(next(tmp_path.rglob("metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    phases = [float(r["train/phase"]) for r in rows if r.get("train/phase")]
    assert phases == [0.0, 1.0, 2.0]
    d_losses = [r["train/d_loss"] for r in rows if r.get("train/phase")]
    assert d_losses[0] == "" and d_losses[1] and d_losses[2]
    assert trainer.global_step == 1 + 1 + 2  # one optimizer step, one, then two
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["glcic_iterations"] == 3


def test_each_phase_steps_the_networks_the_paper_says():
    from unittest import mock

    torch.manual_seed(0)
    module = tiny_module(completion_steps=1, discriminator_steps=1)
    image, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 8:20] = 1
    batch = {"image": image, "corrupted": image, "mask": mask}
    steps = []
    module.generate = lambda b: module(b["corrupted"], mask) | {"mask": mask}
    module.discriminator_step = lambda b, o: steps.append("D") or (torch.tensor(0.0), {})
    module.generator_step = lambda b, o: steps.append("G") or (torch.tensor(0.0), {})
    with mock.patch.object(type(module), "log_training"):
        for _ in range(3):
            module.training_step(batch, 0)
    assert steps == ["G", "D", "D", "G"] and module.phase() == "joint"


def test_the_ipn_trains_against_the_global_local_discriminator(tmp_path):
    from pipeline.training.stage import build_module, train
    from tests.conftest import compose_train

    cfg = compose_train(tmp_path, "ipn", "stage/discriminator=global_local", f"hydra.run.dir={tmp_path}")
    assert cfg.stage.module.discriminator.image_size == cfg.data.size
    module = build_module(cfg.stage)
    assert type(module.discriminator).__name__ == "GlobalLocalDiscriminator"
    assert module.discriminator.global_path[0][0].in_channels == 4  # [RGB, mask], as the SN-PatchGAN's
    trainer = train(cfg, tmp_path)
    assert trainer.global_step == 2 * cfg.trainer.limit_train_batches
    with pytest.raises(Exception, match="unknown discriminator"):
        from common.discriminators import build_discriminator

        build_discriminator({"name": "nope"}, 3, "sn_patch")


def test_outside_training_the_fill_is_poisson_blended():
    from common.blend import poisson_blend

    torch.manual_seed(0)
    module = tiny_module().eval()
    plain = tiny_module(blend=None).eval()
    plain.load_state_dict(module.state_dict())
    corrupted, mask = torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    with torch.no_grad():
        blended, raw = module(corrupted, mask), plain(corrupted, mask)
    torch.testing.assert_close(raw["refined"], blended["refined"])
    torch.testing.assert_close(blended["output"], poisson_blend(raw["refined"], corrupted, mask))
    assert not torch.allclose(blended["output"], raw["output"])
    module.train()  # the losses see the network's own output
    torch.testing.assert_close(module(corrupted, mask)["output"], compose_of(module, corrupted, mask))


def compose_of(module, corrupted, mask):
    from common.ops import compose

    return compose(corrupted, module(corrupted, mask)["refined"], mask)
