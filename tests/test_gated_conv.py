import pytest
import torch
import torch.nn.functional as F

from ipn.layers import GatedConv2d, GatedUpConv2d


def test_gated_conv_is_elu_of_features_times_sigmoid_of_gate():
    torch.manual_seed(0)
    layer = GatedConv2d(4, 6, kernel_size=3)
    x = torch.randn(2, 4, 9, 11)
    raw = F.conv2d(x, layer.conv.weight, layer.conv.bias, padding=1)
    expected = F.elu(raw[:, :6]) * torch.sigmoid(raw[:, 6:])
    assert torch.allclose(layer(x), expected, atol=1e-6)
    # DeepFill v2's "cnum" layer: one conv of 2·out channels
    assert sum(p.numel() for p in layer.parameters()) == 3 * 3 * 4 * 12 + 12


def test_gate_can_close_a_region():
    layer = GatedConv2d(1, 1, kernel_size=1)
    with torch.no_grad():
        layer.conv.weight[:] = torch.tensor([[[[1.0]]], [[[100.0]]]])
        layer.conv.bias.zero_()
    x = torch.tensor([[[[1.0, -1.0]]]])
    out = layer(x).detach()
    assert out[0, 0, 0, 0] == pytest.approx(1.0, abs=1e-6)  # gate open
    assert out[0, 0, 0, 1].abs() < 1e-6  # gate closed: the feature is suppressed


@pytest.mark.parametrize("stride,dilation,size", [(1, 1, (16, 20)), (2, 1, (8, 10)), (1, 4, (16, 20))])
def test_same_padding_strides_and_dilations(stride, dilation, size):
    layer = GatedConv2d(3, 5, kernel_size=3, stride=stride, dilation=dilation)
    assert layer(torch.rand(1, 3, 16, 20)).shape == (1, 5, *size)


def test_activations_and_up_block():
    x = torch.randn(1, 2, 6, 7)
    assert (GatedConv2d(2, 3, activation="relu")(x) >= 0).all()
    with pytest.raises(ValueError, match="activation"):
        GatedConv2d(2, 3, activation="gelu")
    up = GatedUpConv2d(2, 4)
    assert up(x).shape == (1, 4, 12, 14)
    with torch.no_grad():  # nearest ×2 then the 3×3 gated conv
        assert torch.allclose(up(x), up.conv(F.interpolate(x, scale_factor=2, mode="nearest")))
