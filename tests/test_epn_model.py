"""Tests of epn/model.py: EdgeConnect's pinned parameter counts, output shapes for any input size,
the 70×70 receptive field of the PatchGAN, where spectral norm and biases are, and gradients."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epn.model import EdgeGenerator, PatchDiscriminator, ResnetBlock, receptive_field


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_generator(**kwargs) -> EdgeGenerator:
    return EdgeGenerator(base_channels=8, residual_blocks=2, **kwargs)


def convs(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def has_sn(conv: nn.Module) -> bool:
    return hasattr(conv, "parametrizations") and "weight" in conv.parametrizations


# --- parameter counts -------------------------------------------------------------------------


def test_generator_has_edgeconnects_parameter_count():
    # Spectral norm's u / v are buffers, so only the original weights and the biases count.
    # The reference keeps the bias of encoder / decoder convs under SN, drops it in the res blocks.
    #   encoder  7×7  3→64:     3·64·49   + 64  =      9,472
    #            4×4 64→128:   64·128·16  + 128 =    131,200
    #            4×4 128→256: 128·256·16  + 256 =    524,544
    #   middle   8 blocks × 2 × 3×3 256→256, no bias: 16 · 589,824 = 9,437,184
    #   decoder  4×4ᵀ 256→128: 256·128·16 + 128 =    524,416
    #            4×4ᵀ 128→64:  128·64·16  + 64  =    131,136
    #            7×7  64→1:     64·49     + 1   =      3,137
    #   total                                      10,761,089
    assert n_params(EdgeGenerator()) == 10_761_089


def test_discriminator_has_edgeconnects_parameter_count():
    # All five 4×4 convs are spectrally normalised and have no bias:
    #   in·64·16 + 64·128·16 + 128·256·16 + 256·512·16 + 512·16
    #   = in·1,024 + 131,072 + 524,288 + 2,097,152 + 8,192 = in·1,024 + 2,760,704
    assert n_params(PatchDiscriminator(in_channels=2)) == 2_762_752
    assert n_params(PatchDiscriminator(in_channels=3)) == 2_763_776


def test_without_spectral_norm_every_conv_has_a_bias():
    # Generator: + 16 residual-block biases of 256; discriminator: + 64 + 128 + 256 + 512 + 1.
    assert n_params(EdgeGenerator(use_spectral_norm=False)) == 10_761_089 + 16 * 256
    assert n_params(PatchDiscriminator(use_spectral_norm=False)) == 2_762_752 + 961
    plain = tiny_generator(use_spectral_norm=False), PatchDiscriminator(base_channels=8, use_spectral_norm=False)
    for model in plain:
        assert all(not has_sn(c) and c.bias is not None for c in convs(model))


# --- generator ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 37, 50), (1, 3, 9, 7), (1, 3, 4, 8), (1, 3, 1, 1)])
def test_generator_keeps_the_input_size_and_outputs_probabilities(shape):
    torch.manual_seed(0)
    edges = tiny_generator()(torch.rand(shape))
    assert edges.shape == (shape[0], 1, *shape[2:])
    assert edges.min() >= 0 and edges.max() <= 1


def test_full_size_generator_forward():
    torch.manual_seed(0)
    with torch.no_grad():
        edges = EdgeGenerator().eval()(torch.rand(1, 3, 64, 64))
    assert edges.shape == (1, 1, 64, 64)
    assert edges.min() >= 0 and edges.max() <= 1


def test_generator_does_not_pad_valid_sizes():
    """A multiple of 4 that is at least 12 runs the reference's layers on the input as is."""
    torch.manual_seed(0)
    model = tiny_generator().eval()
    x = torch.rand(2, 3, 12, 20)
    with torch.no_grad():
        expected = torch.sigmoid(model.decoder(model.middle(model.encoder(x))))
        assert torch.equal(model(x), expected)


def test_generator_layout():
    model = EdgeGenerator(base_channels=8, residual_blocks=3)
    widths = [c.out_channels for c in convs(model.encoder)], [c.out_channels for c in convs(model.decoder)]
    assert widths == ([8, 16, 32], [16, 8, 1])
    assert len(model.middle) == 3 and all(isinstance(b, ResnetBlock) for b in model.middle)
    first, second = convs(model.middle[0])
    assert (first.dilation, second.dilation) == ((2, 2), (1, 1))
    assert not isinstance(model.decoder[-1], nn.ReLU)


def test_residual_block_adds_its_input_without_a_final_relu():
    torch.manual_seed(0)
    block = ResnetBlock(4, dilation=2).eval()
    x = torch.randn(1, 4, 6, 6)
    with torch.no_grad():
        out = block(x)
        assert torch.allclose(out, x + block.conv_block(x))
    assert (out < 0).any()


def test_spectral_norm_on_every_generator_conv_but_the_last():
    model = tiny_generator()
    *normed, last = convs(model)
    assert last is model.decoder[-1]
    assert all(has_sn(c) for c in normed)
    assert not has_sn(last) and last.bias is not None
    # As in the reference: residual-block convs drop the bias under SN, encoder / decoder keep it.
    assert all(c.bias is None for c in convs(model.middle))
    assert all(c.bias is not None for c in convs(model.encoder) + convs(model.decoder))


def test_instance_norms_have_no_parameters_or_running_stats():
    model = tiny_generator()
    norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(norms) == 3 + 2 * 2 + 2
    assert sum(n_params(m) for m in norms) == 0
    assert all(not m.track_running_stats and not list(m.buffers()) for m in norms)


def test_weights_are_initialised_normal():
    torch.manual_seed(0)
    model = EdgeGenerator(init_std=0.02)
    weight = model.middle[0].conv_block[1].parametrizations.weight.original
    assert abs(weight.mean().item()) < 1e-3 and abs(weight.std().item() - 0.02) < 1e-3
    assert all(c.bias is None or not c.bias.any() for c in convs(model))


def test_gradients_reach_every_generator_parameter():
    torch.manual_seed(0)
    model = tiny_generator().train()
    model(torch.rand(2, 3, 16, 16)).mean().backward()
    # The encoder / decoder biases sit right before a non-affine instance norm, which removes any
    # per-channel constant: their gradient exists but is zero up to rounding (the reference's
    # layout). Every other parameter must get a real gradient.
    before_norm = {id(c.bias) for c in convs(model.encoder) + convs(model.decoder)[:-1]}
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if id(p) not in before_norm:
            assert p.grad.abs().sum() > 0, name


# --- discriminator -----------------------------------------------------------------------------


def test_discriminator_shapes_and_features():
    torch.manual_seed(0)
    model = PatchDiscriminator(base_channels=8)
    outputs, features = model(torch.rand(2, 2, 256, 256))
    assert outputs.shape == (2, 1, 30, 30)
    assert [f.shape[1:] for f in features] == [
        (8, 128, 128),
        (16, 64, 64),
        (32, 32, 32),
        (64, 31, 31),
        (1, 30, 30),
    ]
    # Raw logits by default: outputs is conv5 itself, with values outside [0, 1].
    assert outputs is features[-1]
    assert (outputs < 0).any()


def test_discriminator_sigmoid_option():
    torch.manual_seed(0)
    outputs, features = PatchDiscriminator(base_channels=8, use_sigmoid=True)(torch.rand(1, 2, 64, 64))
    assert torch.allclose(outputs, torch.sigmoid(features[-1]))
    assert (features[-1] < 0).any()


def test_spectral_norm_and_no_bias_on_every_discriminator_conv():
    model = PatchDiscriminator(base_channels=8)
    assert len(convs(model)) == 5
    assert all(has_sn(c) and c.bias is None for c in convs(model))
    assert not [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]


def test_receptive_field_is_70_analytically():
    assert receptive_field(PatchDiscriminator(base_channels=8)) == 70
    with pytest.raises(TypeError):
        receptive_field(tiny_generator())


def test_receptive_field_is_70_empirically():
    """The input pixels one central output cell depends on form a 70×70 square.

    All weights are set to the same positive constant, so no two paths cancel; a few train-mode
    forwards let spectral norm's power iteration converge on the new weights, then eval mode
    freezes u / v.
    """
    model = PatchDiscriminator(base_channels=8)
    with torch.no_grad():
        for c in convs(model):
            c.parametrizations.weight.original.fill_(0.01)
        for _ in range(3):
            model.train()(torch.rand(1, 2, 32, 32))
    model.eval()

    x = torch.rand(1, 2, 128, 128, requires_grad=True)
    outputs, _ = model(x)
    assert outputs.shape[-2:] == (14, 14)
    outputs[0, 0, 7, 7].backward()
    seen = x.grad.abs().sum(dim=(0, 1)) > 0
    rows, cols = seen.any(dim=1).nonzero().squeeze(1), seen.any(dim=0).nonzero().squeeze(1)
    # Cell 7 of a stride-8 stack whose paddings add up to 1 + 2 + 4 + 8 + 8 = 23 starts at 8·7 - 23.
    assert (rows.min().item(), rows.max().item()) == (33, 33 + 69)
    assert (cols.min().item(), cols.max().item()) == (33, 33 + 69)
    assert seen.sum().item() == 70 * 70


def test_generator_inputs_follow_edgeconnect():
    from epn.module import generator_inputs

    corrupted = torch.full((1, 3, 16, 16), 0.25)  # gray 0.25 (the luma weights sum to 1)
    edges = torch.ones(1, 1, 16, 16)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 0, 0], mask[..., 0, 1] = 1.0, 0.3  # one destroyed pixel, one partly
    x = generator_inputs(corrupted, mask, edges)
    assert x.shape == (1, 3, 16, 16)
    assert x[0, 0, 0, 0] == 1.0 and x[0, 0, 0, 1] == pytest.approx(0.25 * 0.7 + 0.3)  # gray·(1−m)+m
    # edges cut where m > 0.5 and EDGE_MARGIN (5) px around it, where the hole's outline shows in Canny
    assert x[0, 1, :6, :6].max() == 0 and x[0, 1, 6:, :].min() == 1 and x[0, 1, :, 6:].min() == 1
    assert torch.equal(x[:, 2:], mask)


def test_width_mult_scales_and_absurd_widths_are_refused_before_allocating():
    assert EdgeGenerator(width_mult=0.25).encoder[1].out_channels == 16
    with pytest.raises(ValueError, match="out of range"):
        EdgeGenerator(base_channels=10**9)  # would be terabytes: refused at once
    with pytest.raises(ValueError, match="residual_blocks"):
        EdgeGenerator(residual_blocks=10**6)
    with pytest.raises(ValueError, match="width_mult"):
        PatchDiscriminator(width_mult=float("nan"))


def test_spectral_norm_is_the_stock_one_and_float32_under_autocast():
    """``common.layers.sn`` is torch's spectral-norm parametrization (same numbers, same state-dict
    keys, ``dim`` 1 for transposed convs) whose power iteration and σ stay float32 under autocast."""
    from torch.nn.utils.parametrizations import spectral_norm

    from common.layers import sn

    for make in (lambda: nn.Conv2d(8, 16, 3), lambda: nn.ConvTranspose2d(8, 16, 4)):
        torch.manual_seed(0)
        ours = sn(make())
        torch.manual_seed(0)
        stock = spectral_norm(make())
        assert ours.state_dict().keys() == stock.state_dict().keys()
        for _ in range(3):  # training forwards: power iterations
            assert torch.equal(ours.weight, stock.weight)
        ours.eval()
        expected = ours.weight
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert ours.weight.dtype == torch.float32
            assert torch.equal(ours.weight, expected)
            ours.train()
            ours.weight  # noqa: B018 (a power iteration under autocast)
        assert ours.parametrizations.weight[0]._u.dtype == torch.float32
