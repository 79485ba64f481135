"""Tests of ipn/model.py: the pinned sizes of DeepFill v2's generator and SN-PatchGAN, shapes for any
input size, the paste between the stages, per-sample masks, gradients, and the discriminator's
spectral norm."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from common.layers import Float32SpectralNorm
from common.ops import compose
from ipn.model import DeepFillGenerator, SNPatchDiscriminator


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny(in_channels: int = 6) -> DeepFillGenerator:
    torch.manual_seed(0)
    return DeepFillGenerator(in_channels, cnum=8)


def box_mask(h: int, w: int, top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, h, w)
    mask[..., top : top + height, left : left + width] = 1
    return mask


def ipn_input(image: torch.Tensor, mask: torch.Tensor, in_channels: int = 6, seed: int = 0) -> torch.Tensor:
    """``[masked RGB, ones, mask, edges]`` (the first ``in_channels`` of them)."""
    edges = (torch.rand(mask.shape, generator=torch.Generator().manual_seed(seed)) > 0.8).float()
    channels = [image * (1 - mask), torch.ones_like(mask), mask, edges]
    return torch.cat(channels, dim=1)[:, :in_channels]


def random_image(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- sizes ------------------------------------------------------------------------------------------------------------

# A gated conv with c outputs from c_in inputs (k×k) is one conv with 2c outputs: k²·c_in·2c + 2c.
# cnum = 48, so the gated widths are 24, 48 and 96.
# Coarse:  conv1 5×5 5→24 6,048; conv2↓ 24→48 20,832; conv3 48→48 41,568; conv4↓ 48→96 83,136;
#          conv5, conv6, conv7–10 (dilated), conv11, conv12: 8 × 96→96 166,080 = 1,328,640;
#          conv13↑ 96→48 83,040; conv14 48→48 41,568; conv15↑ 48→24 20,784; conv16 24→12 5,208;
#          conv17, plain conv 12→3: 9·12·3 + 3 = 327.                                   Sum 1,631,151.
# Refine, conv branch: xconv1 5×5 3→24 3,648; xconv2↓ 24→24 10,416; xconv3 24→48 20,832;
#          xconv4↓ 48→48 41,568; xconv5 48→96 83,136; xconv6–10 5 × 166,080.           Sum   990,000.
# Refine, attention branch: pmconv1 3,648; pmconv2↓ 10,416; pmconv3 20,832; pmconv4↓ 48→96 83,136;
#          pmconv5, pmconv6, pmconv9, pmconv10 4 × 166,080 (attention has no weights). Sum   782,352.
# Merge:   allconv11 192→96 331,968; allconv12 166,080; allconv13↑ 83,040; allconv14 41,568;
#          allconv15↑ 20,784; allconv16 5,208; allconv17 327.                          Sum   648,975.
# Refine 2,421,327; total 4,052,478, the reference's count. The refinement stage takes the 3-channel
# pasted image only (the reference's ``xnow = x``), so extra input channels change conv1 alone.
COARSE_PARAMS = 1_631_151
REFINE_PARAMS = 2_421_327
DEEPFILL_V2_PARAMS = 4_052_478
# blindfill's 6-channel input (+ edges): conv1 gains 5·5·1·48 = 1,200 weights.
IPN_PARAMS = DEEPFILL_V2_PARAMS + 1_200
# SN-PatchGAN, 5×5 convs with bias: 4→64 6,464; 64→128 204,928; 128→256 819,456; 3 × 256→256 1,638,656.
# Without biases it would be 5,945,600 (1,216 fewer); the reference keeps them.
SN_PATCHGAN_PARAMS = 5_946_816


def test_generator_size_matches_deepfill_v2():
    model = DeepFillGenerator(in_channels=5, cnum=48)
    assert n_params(model.coarse) == COARSE_PARAMS
    assert n_params(model.refine) == REFINE_PARAMS
    assert n_params(model) == DEEPFILL_V2_PARAMS == 4_052_478


def test_generator_size_with_edges():
    model = DeepFillGenerator(in_channels=6, cnum=48)
    assert n_params(model) == IPN_PARAMS == 4_053_678
    assert n_params(model.refine) == REFINE_PARAMS


def test_the_ipn_adds_the_edges_and_the_corrupted_rgb_to_conv1_alone():
    """blindfill's IPN input: [floor RGB, ones, mask, edges, corrupted RGB] (9 channels): conv1
    gains 4·5·5·48 weights over DeepFill v2's 5 channels, nothing else changes."""
    from ipn.module import IPNModule

    module = IPNModule(generator={"cnum": 48}, discriminator={"cnum": 8})
    assert module.generator.in_channels == 9
    assert n_params(module.generator) == DEEPFILL_V2_PARAMS + 4 * 1_200 == 4_057_278
    assert n_params(module.generator.refine) == REFINE_PARAMS


def test_discriminator_size_matches_sn_patchgan():
    assert n_params(SNPatchDiscriminator(in_channels=4, cnum=64)) == SN_PATCHGAN_PARAMS


def test_last_layers_are_plain_convs_to_rgb():
    model = tiny()
    for head in (model.coarse.conv17, model.refine.decoder.allconv17):
        assert type(head) is nn.Conv2d and head.out_channels == 3


def test_constructor_validates():
    with pytest.raises(ValueError, match="cnum"):
        DeepFillGenerator(cnum=3)
    with pytest.raises(ValueError, match="in_channels"):
        DeepFillGenerator(in_channels=2, cnum=8)


# --- generator behaviour ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 64, 64), (1, 45, 70)])
def test_outputs_have_the_input_size_and_range(shape):
    b, h, w = shape
    mask = box_mask(h, w, h // 4, w // 3, h // 2, w // 3).expand(b, -1, -1, -1)
    x = ipn_input(random_image(b, h, w), mask)
    with torch.no_grad():
        coarse, refined = tiny().eval()(x, mask)
    for out in (coarse, refined):
        assert out.shape == (b, 3, h, w)
        assert torch.isfinite(out).all()
        assert out.min() >= -1 and out.max() <= 1


@pytest.mark.parametrize("cnum", [6, 10])
def test_widths_that_are_not_multiples_of_four(cnum):
    """``width_mult`` scales cnum = 48 to e.g. 6 (smoke runs): floor division keeps it valid."""
    mask = box_mask(32, 32, 8, 8, 12, 16)
    with torch.no_grad():
        coarse, refined = DeepFillGenerator(6, cnum=cnum).eval()(ipn_input(random_image(1, 32, 32), mask), mask)
    assert coarse.shape == refined.shape == (1, 3, 32, 32)


def test_full_size_forward_is_quick():
    torch.manual_seed(0)
    model = DeepFillGenerator(in_channels=5, cnum=48).eval()
    mask = box_mask(64, 64, 16, 16, 24, 32)
    x = ipn_input(random_image(1, 64, 64), mask, in_channels=5)
    start = time.perf_counter()
    with torch.no_grad():
        coarse, refined = model(x, mask)
    assert time.perf_counter() - start < 5
    assert coarse.shape == refined.shape == (1, 3, 64, 64)


def test_refinement_input_is_the_pasted_image():
    """Outside the hole the refinement stage sees the input image, inside it the coarse result;
    a continuous mask blends the two; attention gets the mask thresholded at 0.5."""
    model, seen = tiny(), {}
    model.refine.register_forward_pre_hook(lambda m, args: seen.update(pasted=args[0], hard=args[1]))
    image = random_image(1, 64, 64)
    mask = box_mask(64, 64, 8, 20, 30, 24)
    mask[..., 8:12, 20:44] = 0.3  # a soft border inside the box
    x = ipn_input(image, mask)
    with torch.no_grad():
        coarse, _ = model.eval()(x, mask)

    pasted, known = seen["pasted"], (mask == 0).expand_as(image)
    assert pasted.shape == (1, 3, 64, 64)
    assert torch.equal(pasted[known], x[:, :3][known])
    assert torch.equal(pasted[known], image[known])  # the masked image is the image outside the hole
    hole = (mask == 1).expand_as(image)
    assert torch.allclose(pasted[hole], coarse[hole])
    assert torch.allclose(pasted, coarse * mask + x[:, :3] * (1 - mask))
    assert torch.equal(seen["hard"], (mask > 0.5).float())


def test_the_paste_is_the_shared_compose():
    coarse, image = torch.full((1, 3, 2, 2), 1.0), torch.full((1, 3, 2, 2), -1.0)
    mask = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(1, 1, 2, 2)
    expected = torch.tensor([-1.0, 1.0, 0.0, -0.5]).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    assert torch.equal(compose(image, coarse, mask), expected)


@pytest.mark.parametrize("size", [(64, 64), (45, 70)])
def test_masks_are_per_sample(size):
    h, w = size
    model = tiny().eval()
    masks = torch.cat([box_mask(h, w, 4, 6, h // 3, w // 4), box_mask(h, w, h // 2, w // 2, h // 3, w // 3)])
    x = ipn_input(random_image(2, h, w, seed=1), masks)
    with torch.no_grad():
        batched = model(x, masks)
        alone = [model(x[i : i + 1], masks[i : i + 1]) for i in range(2)]
    for stage in range(2):
        assert torch.allclose(batched[stage], torch.cat([a[stage] for a in alone]), atol=1e-5)


def test_gradients_reach_every_parameter():
    """Including the attention branch's encoder, through contextual attention. The image must leave
    hole-free keys: attention matches on an (H/8)×(W/8) grid with 3×3 patches, and a hole that
    touches every key (e.g. 12×16 in 32×32) makes its output zero."""
    model = tiny().train()
    mask = box_mask(64, 64, 16, 16, 12, 16).expand(2, -1, -1, -1)
    x = ipn_input(random_image(2, 64, 64), mask)
    target = random_image(2, 64, 64, seed=3)
    coarse, refined = model(x, mask)
    ((coarse - target).abs().mean() + (refined - target).abs().mean()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


# --- discriminator ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size, scores", [((64, 64), (1, 1)), ((256, 256), (4, 4)), ((70, 45), (2, 1))])
def test_discriminator_scores_shape(size, scores):
    torch.manual_seed(0)
    model = SNPatchDiscriminator(in_channels=4, cnum=8)
    out = model(torch.rand(2, 4, *size))
    assert out.shape == (2, 32, *scores)
    assert torch.isfinite(out).all()


def test_discriminator_has_six_spectral_norm_convs_each_followed_by_leaky_relu():
    model = SNPatchDiscriminator(in_channels=4, cnum=8)
    layers = list(model.layers)
    convs = [m for m in layers if isinstance(m, nn.Conv2d)]
    assert len(convs) == 6 and len(layers) == 12
    for conv, act in zip(layers[::2], layers[1::2]):
        assert parametrize.is_parametrized(conv, "weight")
        assert isinstance(conv.parametrizations.weight[0], Float32SpectralNorm)
        assert conv.kernel_size == (5, 5) and conv.stride == (2, 2) and conv.padding == (2, 2)
        assert conv.bias is not None
        assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2
    assert [c.out_channels for c in convs] == [8, 16, 32, 32, 32, 32]


def test_attention_options_are_passed_on():
    model = DeepFillGenerator(6, cnum=8, attention={"rate": 1, "softmax_scale": 5.0, "fuse": False}).eval()
    attention = model.refine.contextual_attention
    assert (attention.rate, attention.softmax_scale, attention.fuse) == (1, 5.0, False)
    assert model.size_multiple == 4
    mask = box_mask(30, 42, 8, 10, 10, 12)
    with torch.no_grad():
        _coarse, refined = model(ipn_input(random_image(1, 30, 42), mask), mask)
    assert refined.shape == (1, 3, 30, 42)
