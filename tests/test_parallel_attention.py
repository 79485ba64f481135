"""The parallel CNN + contextual-attention completion network ("Image Inpainting using Deep Learning
Models", first approach) and its experiment: layout, count, shapes, the paper's discriminators."""

import pytest
import torch
from torch import nn

from ipn.layers import ContextualAttention
from pipeline.methods.glcic.model import GlobalLocalDiscriminator
from pipeline.methods.glcic.parallel_attention import ParallelAttentionNet
from tests.conftest import compose_config


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def convs(stack: nn.Module) -> list[nn.Module]:
    return [m for m in stack.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_parameter_count_is_pinned():
    # GLCIC's completion network (6,072,131) + the attention branch's two 3×3/256 convolutions with
    # batch norm (2 × 590,592) + the fusion convolution's 256 extra input channels (589,824).
    assert count(ParallelAttentionNet()) == 7_843_139 == 6_072_131 + 2 * 590_592 + 589_824


def test_layout_is_the_papers_sequence():
    net = ParallelAttentionNet()
    encoder = convs(net.encoder)
    assert [c.kernel_size[0] for c in encoder] == [5, 3, 3, 3, 3, 3]  # 6 convs, 5×5 first
    assert [c.stride[0] for c in encoder] == [1, 2, 1, 2, 1, 1] and encoder[-1].out_channels == 256
    assert [c.dilation[0] for c in convs(net.dilated)] == [2, 4, 8, 16]
    assert isinstance(net.attention, ContextualAttention) and (net.attention.ksize, net.attention.rate) == (3, 2)
    assert [(c.in_channels, c.out_channels) for c in convs(net.attention_convs)] == [(256, 256), (256, 256)]
    assert convs(net.fusion)[0].in_channels == 512  # both 256-channel embeddings, concatenated
    decoder = convs(net.decoder)
    assert [type(c).__name__ for c in decoder] == ["ConvTranspose2d", "Conv2d", "ConvTranspose2d", "Conv2d"]
    assert [c.out_channels for c in decoder] == [128, 128, 64, 32] and net.head.out_channels == 3
    assert all(isinstance(m, nn.BatchNorm2d) for m in (net.encoder[0][1], net.attention_convs[1][1]))


def test_full_width_forward_and_backward_at_128_against_the_papers_discriminators():
    torch.manual_seed(0)
    net = ParallelAttentionNet()
    discriminator = GlobalLocalDiscriminator(image_size=128, local_size=56, global_layers=5, local_layers=4)
    assert count(discriminator) == 31_953_409
    mask = torch.zeros(2, 1, 128, 128)
    mask[..., 40:90, 30:80] = 1
    x = torch.cat([torch.rand(2, 3, 128, 128), mask], dim=1)
    y = net(x)
    assert y.shape == (2, 3, 128, 128) and y.min() >= 0 and y.max() <= 1
    logits = discriminator(y, mask)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("shape", [(37, 45), (64, 64), (33, 128)])
def test_any_size_comes_back_at_its_size(shape):
    net = ParallelAttentionNet(width_mult=0.125).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 4, *shape)).shape == (1, 3, *shape)


def test_the_attention_matches_against_the_inputs_mask(monkeypatch):
    """The last input channel is the hole: the attention copies only from outside it."""
    net = ParallelAttentionNet(width_mult=0.125).eval()
    seen = {}
    attend = net.attention.forward

    def recording(foreground, background, mask):
        seen["mask"] = mask
        return attend(foreground, background, mask)

    monkeypatch.setattr(net.attention, "forward", recording)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:40, 8:30] = 1
    with torch.no_grad():
        net(torch.cat([torch.rand(1, 3, 64, 64), mask], dim=1))
    torch.testing.assert_close(seen["mask"], mask)


def test_the_experiment_is_the_papers_setup():
    from pipeline.training.stage import build_module

    cfg = compose_config("train", "experiment=parallel_attention")
    assert cfg.stage.name == "glcic" and cfg.data.size == 128 and cfg.trainer.max_epochs == 60
    module = build_module(cfg.stage)
    assert type(module.generator) is ParallelAttentionNet and module.system == "parallel_attention"
    assert count(module.generator) == 7_843_139 and count(module.discriminator) == 31_953_409
    assert (module.discriminator.image_size, module.discriminator.local_size) == (128, 56)
    assert module.hparams.completion_steps == module.hparams.discriminator_steps == 0  # trained as one
    assert module.hparams.adv_weight == 4e-4


def test_an_unknown_completion_network_is_refused():
    from pipeline.methods.glcic.module import build_completion_net

    with pytest.raises(ValueError, match="unknown completion network 'unet'"):
        build_completion_net({"name": "unet"})
