"""Tests of mpn/model.py: shapes for any input size, the norm options, gradients, the pinned size
of the default model, determinism and the mask range."""

from __future__ import annotations

import pytest
import torch

from common.layers import pad_to_multiple
from mpn.model import UNet


def tiny(norm: str = "batch") -> UNet:
    return UNet(base_channels=8, depth=3, norm=norm, max_channels=32)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 3, 37, 53), (1, 3, 8, 8), (1, 3, 5, 7), (1, 3, 1, 1)])
def test_logits_have_the_input_size(shape):
    torch.manual_seed(0)
    logits = tiny().eval()(torch.rand(shape))
    assert logits.shape == (shape[0], 1, *shape[2:])
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
@pytest.mark.parametrize("size", [(1, 1), (5, 7), (8, 8)])
def test_batch_of_one_trains_with_every_norm(norm, size):
    """A batch of one image as small as 1×1 must not hit BatchNorm's / InstanceNorm's "more than 1
    value per channel" error in train mode: the padding keeps the bottleneck at least 2×2."""
    model = tiny(norm).train()
    logits = model(torch.rand(1, 3, *size))
    logits.mean().backward()
    assert logits.shape == (1, 1, *size)


def test_bottleneck_is_at_least_two_by_two():
    model, seen = tiny(), []
    model.encoder[-1].register_forward_hook(lambda m, i, o: seen.append(o.shape[-2:]))
    model.eval()(torch.rand(1, 3, 3, 40))
    assert tuple(seen[0]) == (2, 5)  # 3 -> padded 16 -> /8 = 2; 40 -> /8 = 5


def test_norm_options_and_conv_biases():
    none, batch, instance = tiny("none"), tiny("batch"), tiny("instance")
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in none.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in batch.modules())
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in instance.modules())
    # 3×3 convs carry a bias only without a norm; the 1×1 head always has one.
    assert all(m.bias is not None for m in none.modules() if isinstance(m, torch.nn.Conv2d))
    assert all(m.bias is None for m in batch.modules() if isinstance(m, torch.nn.Conv2d) and m is not batch.head)
    assert batch.head.bias is not None
    with pytest.raises(ValueError, match="norm must be one of"):
        UNet(norm="group")


def test_widths_double_and_cap():
    assert UNet(base_channels=64, depth=4).widths == [64, 128, 256, 512, 512]
    assert tiny().widths == [8, 16, 32, 32]


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_gradients_reach_every_parameter(norm):
    torch.manual_seed(0)
    model = tiny(norm).train()
    x, target = torch.rand(2, 3, 32, 32), (torch.rand(2, 1, 32, 32) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(model(x), target).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_default_parameter_count_is_pinned():
    """The default model (base 64, depth 4, batch norm, cap 512): widths c = [64, 128, 256, 512, 512].

    A 3×3 conv–BN–ReLU from a to b channels has P(a, b) = 9·a·b (no bias) + 2·b (BN weight, bias).
    Encoder level 0: P(3, 64) + P(64, 64); level i = 1..4: P(c[i-1], c[i]) + P(c[i], c[i]).
    Decoder to level i = 0..3: P(c[i+1], c[i]) (after the upsampling) + P(2·c[i], c[i]) + P(c[i], c[i]).
    Head: 1×1 conv 64 -> 1 with bias, 65.

    encoder  38,848 + 221,696 + 885,760 + 3,540,992 + 4,720,640 =  9,407,936
    decoder 184,704 + 738,048 + 2,950,656 + 9,440,256           = 13,313,664
    total   9,407,936 + 13,313,664 + 65                         = 22,721,665
    """
    c = [64, 128, 256, 512, 512]

    def P(a, b):
        return 9 * a * b + 2 * b

    encoder = P(3, c[0]) + P(c[0], c[0]) + sum(P(c[i - 1], c[i]) + P(c[i], c[i]) for i in range(1, 5))
    decoder = sum(P(c[i + 1], c[i]) + P(2 * c[i], c[i]) + P(c[i], c[i]) for i in range(4))
    assert (encoder, decoder) == (9_407_936, 13_313_664)

    model = UNet()
    assert n_params(model) == encoder + decoder + 65 == 22_721_665
    assert n_params(model.encoder) == encoder and n_params(model.decoder) == decoder


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    model, x = tiny().eval(), torch.rand(2, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))
    # Eval-mode batch norm uses running statistics: an image's logits do not depend on its batch.
    with torch.no_grad():
        torch.testing.assert_close(model(x[:1]), model(x)[:1])


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_eval_folds_batch_norm_into_the_convolutions(memory_format):
    """In eval mode each conv + batch norm runs as one convolution with folded weights: the
    logits are those of conv, then norm, up to rounding; training still runs the norm layers."""
    torch.manual_seed(0)
    model = tiny()
    model.train()
    with torch.no_grad():  # running statistics and affine parameters away from their defaults
        for _ in range(3):
            model(torch.rand(4, 3, 32, 32) * 2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.2, 0.2)
    model.eval().to(memory_format=memory_format)
    x = torch.rand(2, 3, 40, 24).contiguous(memory_format=memory_format)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    seen = []
    hooks = [m.register_forward_hook(lambda *_: seen.append(1)) for m in norms]
    with torch.inference_mode():
        folded = model(x)
    assert not seen  # the norm layers were not run
    for hook in hooks:
        hook.remove()

    def unfolded(block, inputs):  # the Sequential's own conv → norm → ReLU
        return torch.nn.Sequential.forward(block, inputs)

    from mpn.model import ConvNormReLU

    with torch.inference_mode(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(ConvNormReLU, "forward", unfolded)
        reference = model(x)
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-5)
    assert {k for k, _ in model.state_dict().items()} == {k for k, _ in tiny().state_dict().items()}


def test_the_stage_predicts_the_sigmoid_of_the_logits():
    from mpn.module import MPNModule

    torch.manual_seed(0)
    module, x = MPNModule(generator={"base_channels": 4, "depth": 2}).eval(), torch.rand(2, 3, 20, 20)
    outputs = module(x)
    mask = outputs["predicted_mask"]
    assert mask.shape == (2, 1, 20, 20)
    assert mask.min() >= 0 and mask.max() <= 1
    torch.testing.assert_close(mask, torch.sigmoid(module.generator(x)))
    torch.testing.assert_close(outputs["mask_logits"], module.generator(x))


def test_width_mult_scales_base_and_cap():
    assert UNet(width_mult=0.25).widths == [16, 32, 64, 128, 128]
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=40)


def test_pad_to_multiple_reflects_then_falls_back_to_replicate():
    x = torch.arange(5.0).view(1, 1, 1, 5).expand(1, 1, 5, 5)
    padded, pads = pad_to_multiple(x, 8)
    assert padded.shape[-2:] == (8, 8) and pads == (1, 2, 1, 2)
    assert padded[0, 0, 0].tolist() == [1, 0, 1, 2, 3, 4, 3, 2]  # reflect
    padded, pads = pad_to_multiple(x, 8, min_size=16)
    assert padded.shape[-2:] == (16, 16) and pads == (5, 6, 5, 6)
    assert padded[0, 0, 0].tolist() == [0] * 6 + [1, 2, 3] + [4] * 7  # replicate: pad 6 >= side 5
    same, pads = pad_to_multiple(torch.rand(1, 1, 16, 24), 8)
    assert pads == (0, 0, 0, 0) and same.shape[-2:] == (16, 24)
