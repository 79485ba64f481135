"""pipeline/methods/pconv/model.py: the partial convolution against its definition, and the partial-convolution U-Net's
layout (pinned parameter counts), shapes, hole-blindness and the frozen-encoder-BN phase."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.methods.pconv.model import PartialConv2d, PConvUNet


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize(("levels", "count"), [(7, 25_779_796), (8, 32_859_732)])
def test_parameter_counts_match_the_public_port(levels, count):
    """naoto0804/pytorch-inpainting-with-partial-conv's PConvUNet(layer_size=7 / 8), trainable
    parameters (its mask convolutions are frozen ones; ours are not parameters at all)."""
    model = PConvUNet(levels=levels)
    assert trainable(model) == sum(p.numel() for p in model.parameters()) == count


def reference_partial_conv(layer: PartialConv2d, x: torch.Tensor, mask: torch.Tensor):
    """The definition, window by window: sum(W ⊙ X ⊙ M) · |window| / sum(M) + b where sum(M) > 0, else 0."""
    conv = layer.conv
    k, s, p = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    full_mask = mask.expand_as(x)
    cols = F.unfold(x * full_mask, k, padding=p, stride=s)  # (B, C·k·k, L)
    mask_cols = F.unfold(full_mask, k, padding=p, stride=s)
    seen = mask_cols.sum(1, keepdim=True)  # (B, 1, L)
    out = torch.einsum("ok,bkl->bol", conv.weight.flatten(1), cols) * (cols.shape[1] / seen.clamp_min(1e-8))
    if conv.bias is not None:
        out = out + conv.bias.view(1, -1, 1)
    out = out * (seen > 0)
    h = (x.shape[-2] + 2 * p - k) // s + 1
    return out.view(x.shape[0], -1, h, out.shape[-1] // h), (seen > 0).float().view(x.shape[0], 1, h, -1)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize(("kernel", "stride"), [(3, 1), (5, 2), (7, 2)])
def test_partial_conv_matches_its_definition(kernel, stride, per_channel):
    torch.manual_seed(0)
    layer = PartialConv2d(4, 6, kernel, stride, kernel // 2)
    x = torch.randn(2, 4, 17, 13)
    mask = (torch.rand(2, 4 if per_channel else 1, 17, 13) > 0.6).float()
    mask[0, :, :9, :9] = 0  # a hole wider than one window: some windows see nothing
    out, updated = layer(x, mask)
    expected, expected_mask = reference_partial_conv(layer, x, mask)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(updated, expected_mask)
    assert (updated == 0).any() and (out[updated.expand_as(out) == 0] == 0).all()


def test_a_one_channel_mask_stands_for_every_channel():
    torch.manual_seed(0)
    layer = PartialConv2d(3, 5, 3, 1, 1)
    x, mask = torch.randn(1, 3, 12, 12), (torch.rand(1, 1, 12, 12) > 0.5).float()
    one, one_updated = layer(x, mask)
    every, every_updated = layer(x, mask.expand(-1, 3, -1, -1))
    torch.testing.assert_close(one, every)
    assert torch.equal(one_updated, every_updated)
    with pytest.raises(ValueError, match="mask must be"):
        layer(x, mask.expand(-1, 2, -1, -1))


def test_with_everything_valid_the_interior_is_a_plain_convolution():
    torch.manual_seed(0)
    layer = PartialConv2d(3, 4, 3, 1, 1)
    x = torch.randn(1, 3, 10, 10)
    out, updated = layer(x, torch.ones(1, 1, 10, 10))
    torch.testing.assert_close(out[..., 1:-1, 1:-1], layer.conv(x)[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    assert torch.equal(updated, torch.ones_like(updated))


def tiny(**kwargs) -> PConvUNet:
    return PConvUNet(width_mult=1 / 16, **kwargs)


@pytest.mark.parametrize(("shape", "levels"), [((2, 3, 40, 56), 7), ((1, 3, 33, 21), 7), ((1, 3, 64, 64), 8)])
def test_unet_keeps_the_input_size(shape, levels):
    model = tiny(levels=levels).eval()
    mask = torch.ones(shape[0], 1, *shape[2:])
    mask[..., 5:15, 4:12] = 0
    with torch.no_grad():
        assert model(torch.rand(shape), mask).shape == shape


def test_the_hole_content_does_not_reach_the_output():
    """What is under the hole is never read: partial convolutions multiply it by 0 first."""
    torch.manual_seed(0)
    model = tiny().eval()
    image, mask = torch.rand(1, 3, 48, 48), torch.ones(1, 1, 48, 48)
    mask[..., 10:30, 12:40] = 0
    other = torch.where(mask.bool(), image, torch.rand_like(image) * 100)
    with torch.no_grad():
        torch.testing.assert_close(model(image, mask), model(other, mask))


def test_a_batch_of_one_small_image_trains():
    """Padded to a 2×2 bottleneck at least: batch norm in train mode needs more than one value."""
    model = tiny().train()
    model(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32)).mean().backward()


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = tiny().train()
    mask = torch.ones(2, 1, 32, 32)
    mask[..., 8:20, 8:24] = 0
    model(torch.rand(2, 3, 32, 32), mask).square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_the_second_phase_freezes_the_encoder_batch_norms():
    model = tiny(freeze_encoder_bn=True).train()
    encoder = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    decoder = [m for m in model.decoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(encoder) == 6 and len(decoder) == 6  # no norm on the first encoder and last decoder layer
    assert not any(m.training for m in encoder) and all(m.training for m in decoder)
    assert all(m.training for m in tiny().train().encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="levels"):
        PConvUNet(levels=3)
    with pytest.raises(ValueError, match="upsampling"):
        PConvUNet(upsampling="bicubic")


def test_loss_terms_and_weights():
    from pipeline.methods.pconv.model import PCONV_LOSS_WEIGHTS, pconv_loss

    torch.manual_seed(0)
    target = torch.rand(2, 3, 16, 16)
    hole = torch.zeros(2, 1, 16, 16)
    hole[..., 4:9, 5:11] = 1
    total, terms = pconv_loss(target, target, hole)
    assert set(terms) == {"valid", "hole", "tv"} and terms["valid"] == terms["hole"] == 0
    truth_tv = terms["tv"].item()  # the truth's own variation over the dilated hole
    assert total.item() == pytest.approx(0.1 * truth_tv)
    flat = torch.full_like(target, 0.3)
    assert pconv_loss(flat, flat, hole)[1]["tv"] == 0
    ramp = torch.linspace(0, 1, 16).expand(1, 3, 16, 16)  # tv counts only pairs inside the dilated hole
    region = torch.zeros(16, 16)
    region[3:10, 4:12] = 1
    expected = (region[:, 1:] * region[:, :-1]).sum() * 3 * (1 / 15) / ramp.numel()
    assert pconv_loss(ramp, ramp, hole[:1])[1]["tv"].item() == pytest.approx(expected.item())

    inside = target + 0.5 * hole  # wrong in the hole only, by a constant
    total, terms = pconv_loss(inside, target, hole)
    assert terms["valid"].item() == 0
    assert terms["hole"].item() == pytest.approx(0.5 * hole.expand_as(target).mean().item())
    assert terms["tv"].item() > truth_tv  # the step at the hole's border lies inside the dilated hole
    assert total.item() == pytest.approx(6 * terms["hole"].item() + 0.1 * terms["tv"].item())
    assert PCONV_LOSS_WEIGHTS == {"valid": 1.0, "hole": 6.0, "perceptual": 0.05, "style": 120.0, "tv": 0.1}

    outside = target + 0.5 * (1 - hole)  # wrong outside only: the composite is the truth
    _, terms = pconv_loss(outside, target, hole)
    assert terms["hole"].item() == 0 and terms["valid"].item() > 0 and terms["tv"].item() == pytest.approx(truth_tv)


def test_loss_with_vgg16_pools_from_a_weights_file(tmp_path):
    from torchvision.models import vgg16

    from common.errors import CheckpointError
    from common.vgg import VGG16Pools
    from pipeline.methods.pconv.model import pconv_loss

    path = tmp_path / "vgg16-features.pth"
    torch.manual_seed(0)
    torch.save(vgg16(weights=None).features.state_dict(), path)
    features = VGG16Pools(path)
    target = torch.rand(1, 3, 32, 32)
    maps = features(target)
    assert [(k, v.shape[1:]) for k, v in maps.items()] == [
        ("pool1", (64, 16, 16)),
        ("pool2", (128, 8, 8)),
        ("pool3", (256, 4, 4)),
    ]
    hole = torch.zeros(1, 1, 32, 32)
    hole[..., 8:20, 8:20] = 1
    output = torch.rand(1, 3, 32, 32, requires_grad=True)
    total, terms = pconv_loss(output, target, hole, features)
    assert {"perceptual", "style_out", "style_comp"} <= set(terms) and all(v > 0 for v in terms.values())
    total.backward()
    assert output.grad.abs().sum() > 0 and not any(p.requires_grad for p in features.parameters())
    with pytest.raises(CheckpointError, match="VGG-16 weights"):
        VGG16Pools(tmp_path / "missing.pth")


def tiny_module(**generator):
    from pipeline.methods.pconv.module import PConvModule
    from pipeline.model import StageFeed

    return PConvModule(generator={"width_mult": 1 / 16, **generator}, feed=StageFeed())


def test_the_stage_fills_only_the_hole():
    torch.manual_seed(0)
    module = tiny_module().eval()
    corrupted, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 6:20, 10:26] = 1
    with torch.no_grad():
        out = module(corrupted, mask)
    assert out["refined"].shape == out["output"].shape == corrupted.shape
    keep = (mask == 0).expand_as(corrupted)
    assert torch.equal(out["output"][keep], corrupted[keep])
    assert out["output"].min() >= 0 and out["output"].max() <= 1


def test_phase_two_keeps_the_encoder_statistics():
    """With ``freeze_encoder_bn`` a training forward updates the decoder's batch-norm statistics
    only (the paper's fine-tuning phase)."""
    torch.manual_seed(0)
    module = tiny_module(freeze_encoder_bn=True).train()
    before = {k: v.clone() for k, v in module.state_dict().items() if "running_mean" in k}
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:16, 8:16] = 1
    module(torch.rand(2, 3, 32, 32), mask)["refined"].mean().backward()
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("generator.decoder") for k in changed)


def test_trains_through_the_cli(tmp_path):
    from tests.conftest import run_module

    result = run_module("pipeline.train", "stage=pconv", "debug=smoke", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert any((tmp_path / "samples").glob("val_pconv_*.png"))


def test_the_benchmark_measures_the_stage(tmp_path):
    import json

    from tests.conftest import run_module

    out = tmp_path / "b.json"
    result = run_module(
        "pipeline.benchmark", "stages=[pconv]", "width_mult=0.0625", "sizes=[32]", "variants=[fp32]",
        "skip=[peak,data,pipeline,photos,startup]", "train.batch_size=2", "train.size=32", "warmup=0", "repeats=1",
        "threads=1", f"out={out}", f"hydra.run.dir={tmp_path / 'run'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [(r["stage"], r["network"]) for r in report["train"]] == [("pconv", "generator")]
    assert [(r["stage"], r["size"]) for r in report["inference"]] == [("pconv", 32)]
    assert report["networks"]["pconv"]["generator"] == sum(p.numel() for p in PConvUNet(width_mult=0.0625).parameters())
