"""DCGAN at 64² (Radford, Metz and Chintala, ICLR 2016) and latent-search inpainting with it (Yeh et
al., "Semantic Image Inpainting with Deep Generative Models", CVPR 2017).

The networks follow the PyTorch DCGAN example (``pytorch/examples``, ``dcgan/main.py``: the
best-known public implementation; bias-free convolutions, batch norm everywhere but D's first
layer and both output layers): generator 3,576,704 parameters, discriminator 2,765,568 (pinned in
the tests).

:func:`latent_search` fills a hole by searching the generator's latent space for the image whose
known pixels match (Yeh et al.'s importance-weighted context loss, plus λ times the prior loss
``log(1 − D(G(z)))``), then Poisson-blends it into the hole. ``mirror_weight`` adds the symmetry
term of the user's "Image Inpainting using Deep Learning Models" (faces are nearly symmetric): the
generated hole should match the known pixels of the mirrored image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from common.blend import poisson_blend
from common.layers import scaled_width

LATENT = 100  # z's size (the paper's)
SIZE = 64  # the image side the networks are built for


class DCGANGenerator(nn.Module):
    """``z`` ``(B, latent)`` in [−1, 1] -> ``(B, 3, 64, 64)`` in [−1, 1] (tanh): a 4×4 transposed
    convolution to 512 × 4², then four stride-2 4×4 transposed convolutions (256, 128, 64, 3),
    batch norm and ReLU between them."""

    def __init__(self, latent: int = LATENT, width_mult: float = 1.0):
        super().__init__()
        widths = [scaled_width(c, width_mult) for c in (512, 256, 128, 64)]
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent, widths[0], 4, 1, 0, bias=False)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.BatchNorm2d(c_in), nn.ReLU(True), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False)]
        layers += [nn.BatchNorm2d(widths[-1]), nn.ReLU(True), nn.ConvTranspose2d(widths[-1], 3, 4, 2, 1, bias=False)]
        self.layers = nn.Sequential(*layers, nn.Tanh())
        self.latent = latent

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z.view(z.shape[0], self.latent, 1, 1))


class DCGANDiscriminator(nn.Module):
    """``(B, 3, 64, 64)`` in [−1, 1] -> real/fake logits ``(B,)``: four stride-2 4×4 convolutions
    (64, 128, 256, 512; LeakyReLU 0.2, batch norm after all but the first), a 4×4 convolution to 1."""

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0):
        super().__init__()
        widths = [scaled_width(c, width_mult) for c in (64, 128, 256, 512)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True)]
        self.layers = nn.Sequential(*layers, nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (SIZE, SIZE):
            raise ValueError(f"the DCGAN discriminator takes {SIZE}² images, got {tuple(x.shape[-2:])}")
        return self.layers(x).flatten()


def init_dcgan(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: convolutions N(0, 0.02), batch norm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def importance_weights(known: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Yeh et al.'s weights ``(B, 1, H, W)`` from the known-pixel mask ``known`` ``(B, 1, H, W)``
    (1 = known): a known pixel weighs the share of hole pixels in its ``window`` × ``window``
    neighbourhood (within the image); hole pixels weigh 0. Known pixels far from the hole do not
    constrain the search."""
    hole_share = F.avg_pool2d(1 - known, window, stride=1, padding=window // 2, count_include_pad=False)
    return hole_share * known


def latent_search(
    generator: nn.Module,
    discriminator: nn.Module | None,
    corrupted: torch.Tensor,
    mask: torch.Tensor,
    steps: int = 1500,
    prior_weight: float = 0.003,
    lr: float = 0.01,
    window: int = 7,
    mirror_weight: float = 0.0,
    blend: bool = True,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Fill the hole of ``corrupted`` ``(B, 3, 64, 64)`` in [0, 1] (``mask`` ``(B, 1, 64, 64)``,
    1 = hole) with the generator's image closest to its known pixels.

    Minimises over z (Adam at ``lr``, ``steps`` iterations, z clipped to [−1, 1] after each): the
    importance-weighted L1 context loss ``‖W ⊙ (G(z) − y)‖₁`` + ``prior_weight`` ·
    ``log(1 − D(G(z)))`` (Yeh et al.'s λ = 0.003; skipped without a discriminator) + ``mirror_weight``
    · ``‖W_m ⊙ (G(z) − mirror(y))‖²`` (``W_m``: hole pixels whose mirror image is known). Each image
    has its own z, started from a seeded uniform draw. Returns ``generated`` (G(z*), ``(B, 3, 64,
    64)`` in [0, 1]) and ``output``: the generated hole Poisson-blended into the image (``blend``),
    or composited."""
    networks = [m for m in (generator, discriminator) if m is not None]
    modes = [(m, m.training, [p.requires_grad for p in m.parameters()]) for m in networks]
    try:
        # Callers may be in inference mode (BlindInpainter): the search needs autograd on z.
        with torch.inference_mode(False), torch.enable_grad():
            for m in networks:
                m.eval().requires_grad_(False)
            corrupted, mask = corrupted.clone(), mask.clone()
            known = (mask <= 0.5).to(corrupted.dtype)
            target = corrupted * 2 - 1
            weights = importance_weights(known, window)
            mirrored, mirror_weights = target.flip(-1), (1 - known) * known.flip(-1)
            g = torch.Generator(device="cpu").manual_seed(seed)
            z = (torch.rand(corrupted.shape[0], generator.latent, generator=g) * 2 - 1).to(corrupted.device)
            z.requires_grad_(True)
            optimizer = torch.optim.Adam([z], lr=lr)
            for _ in range(steps):
                image = generator(z)
                loss = (weights * (image - target)).abs().flatten(1).sum(1)
                if discriminator is not None and prior_weight > 0:
                    loss = loss - prior_weight * F.softplus(discriminator(image))  # log(1 − sigmoid(l))
                if mirror_weight > 0:
                    loss = loss + mirror_weight * (mirror_weights * (image - mirrored)).square().flatten(1).sum(1)
                optimizer.zero_grad(set_to_none=True)
                loss.sum().backward()
                optimizer.step()
                with torch.no_grad():
                    z.clamp_(-1, 1)
            with torch.no_grad():
                generated = (generator(z.detach()) + 1) / 2  # detached: hooks (FLOP counters) see no graph
    finally:
        for m, training, flags in modes:
            m.train(training)
            for p, flag in zip(m.parameters(), flags):
                p.requires_grad_(flag)
    fill = poisson_blend(generated, corrupted, mask) if blend else generated
    return {"generated": generated, "output": torch.where(mask > 0.5, fill, corrupted)}
