"""Signal that survives: at initialisation every generator's activations keep roughly the scale of
its input, layer after layer (full widths, a shape-only batch), and a generator trained briefly on
colours learns all three colour directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from epn.model import EdgeGenerator
from ipn.layers import GatedConv2d
from ipn.model import DeepFillGenerator
from mpn.model import UNet
from pipeline.methods.cifar_gan.model import CifarGANGenerator
from pipeline.methods.dcgan.model import LATENT, DCGANGenerator
from pipeline.methods.glcic.model import GLCICCompletionNet
from pipeline.methods.glcic.parallel_attention import ParallelAttentionNet
from pipeline.methods.pconv.model import PConvUNet

# The outputs that carry a layer's signal: its nonlinearity, its normalisation, or a gated conv.
_LAYER_OUTPUTS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.BatchNorm2d, nn.InstanceNorm2d, GatedConv2d)


def rms(x: torch.Tensor) -> float:
    return x.detach().float().pow(2).mean().sqrt().item()


def activation_scales(network: nn.Module, *inputs: torch.Tensor) -> dict[str, float]:
    """The RMS of every layer output of ``network`` on ``inputs``, relative to the first input's."""
    scales, hooks = {}, []

    def record(name):
        def hook(module, inputs, output) -> None:  # returns None: the output is left as it is
            scales.setdefault(name, rms(output))

        return hook

    for name, module in network.named_modules():
        if isinstance(module, _LAYER_OUTPUTS):
            hooks.append(module.register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            network.train()(*inputs)  # as at training step 0: batch norm on the batch statistics
    finally:
        for hook in hooks:
            hook.remove()
    reference = rms(inputs[0])
    return {name: value / reference for name, value in scales.items()}


def _mask(batch: int, size: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4 : size // 2, size // 4 : 3 * size // 4] = 1
    return mask


def _image_and_mask(channels: int, size: int, batch: int = 2):
    torch.manual_seed(0)
    mask = _mask(batch, size)
    x = torch.rand(batch, channels, size, size) * 2 - 1
    x[:, -1:] = mask
    return x, mask


STEPS = 80

GENERATORS = {
    "deepfill_v2 (IPN)": lambda: (DeepFillGenerator(in_channels=6), *_image_and_mask(6, 64)),
    "edgeconnect (EPN)": lambda: (EdgeGenerator(in_channels=3), _image_and_mask(3, 64)[0]),
    "unet (MPN)": lambda: (UNet(in_channels=3), _image_and_mask(3, 64)[0]),
    "pconv": lambda: (PConvUNet(in_channels=3, levels=7), _image_and_mask(3, 128)[0][:, :3], _mask(2, 128)),
    "glcic": lambda: (GLCICCompletionNet(in_channels=4), _image_and_mask(4, 64)[0]),
    "parallel_attention": lambda: (ParallelAttentionNet(in_channels=4), _image_and_mask(4, 64)[0]),
    "dcgan": lambda: (DCGANGenerator(), torch.randn(2, LATENT, 1, 1)),
    "cifar_gan": lambda: (CifarGANGenerator(in_channels=4), _image_and_mask(4, 32)[0]),
}


@pytest.mark.parametrize("name", list(GENERATORS))
def test_activations_keep_their_scale_through_every_generator(name):
    network, *inputs = GENERATORS[name]()
    scales = activation_scales(network, *inputs)
    assert scales, f"{name}: no layer output was measured"
    shrunk = {k: v for k, v in scales.items() if not 0.1 <= v <= 10}
    assert not shrunk, f"{name}: layers whose activations left [0.1, 10]× the input's scale: {shrunk}"


def _fill_colours(network: DeepFillGenerator, colours: torch.Tensor, size: int) -> torch.Tensor:
    """The mean colour ``(N, 3)`` the refined output gives the hole of flat images of ``colours``
    ``(N, 3)``."""
    image, mask = colours[:, :, None, None].expand(-1, 3, size, size), _mask(colours.shape[0], size)
    x = torch.cat([(image * 2 - 1) * (1 - mask), torch.ones_like(mask), mask], dim=1)
    _, refined = network(x, mask)
    return ((refined + 1) / 2 * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3))


@pytest.mark.parametrize("init", ["ours", "tensorflow"])
def test_a_briefly_trained_generator_learns_every_colour_direction(init):
    """A short training on filling flat images of random colours: the linear map from the image's
    colour to the fill's colour (least squares over 64 colours) is of full rank 3, its smallest
    singular value at least a quarter of its largest; with the reference's TensorFlow
    initialisation (Xavier weights, zero biases) it is not: the signal has died on the way."""
    torch.manual_seed(0)
    network, size = DeepFillGenerator(in_channels=5, cnum=16), 16  # cnum 16: 4 channels before the RGB head
    if init == "tensorflow":
        for module in network.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        colours = torch.rand(16, 3, generator=generator)
        image, mask = colours[:, :, None, None].expand(-1, 3, size, size), _mask(16, size)
        x = torch.cat([(image * 2 - 1) * (1 - mask), torch.ones_like(mask), mask], dim=1)
        coarse, refined = network(x, mask)
        loss = ((coarse + 1) / 2 - image).abs().mean() + ((refined + 1) / 2 - image).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        colours = torch.rand(64, 3, generator=generator)
        filled = _fill_colours(network.eval(), colours, size)
    design = torch.cat([colours, torch.ones(64, 1)], dim=1)
    gain = torch.linalg.lstsq(design, filled).solution[:3]  # fill ≈ colour @ gain + offset
    singular = torch.linalg.svdvals(gain)
    full_rank = bool(singular[-1] >= 0.25 * singular[0])
    assert full_rank == (init == "ours"), f"{init} initialisation: singular values {singular.tolist()}"
