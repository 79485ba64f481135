"""What every other system's stage (pipeline.model.FILL_STAGES) shares: the hole it fills is
binary, as in the papers, so soft damage the mask rule kept is repainted, not blended back in."""

from __future__ import annotations

import pytest
import torch

from common.ops import binary_hole
from ipn.cifar_gan_module import CifarGANModule
from ipn.dcgan_module import DCGANModule
from ipn.glcic_module import GLCICModule
from ipn.pconv_module import PConvModule
from pipeline.model import StageFeed

TINY = {
    "pconv": lambda: PConvModule(generator={"width_mult": 1 / 16}, feed=StageFeed()),
    "glcic": lambda: GLCICModule(
        generator={"width_mult": 1 / 16}, discriminator={"image_size": 32, "width_mult": 1 / 16}, feed=StageFeed()
    ),
    "parallel_attention": lambda: GLCICModule(
        generator={"name": "parallel_attention", "width_mult": 1 / 16},
        discriminator={"image_size": 32, "width_mult": 1 / 16},
        feed=StageFeed(),
    ),
    "latent_search": lambda: DCGANModule(
        generator={"width_mult": 1 / 8}, discriminator={"width_mult": 1 / 8}, feed=StageFeed(), search_steps=2
    ),
    "cifar_gan": lambda: CifarGANModule(
        generator={"width_mult": 0.25}, discriminator={"width_mult": 0.25}, feed=StageFeed()
    ),
}


def test_binary_hole_is_every_pixel_the_mask_touches():
    mask = torch.tensor([0.0, 1e-3, 0.5, 1.0]).view(1, 1, 1, 4)
    assert binary_hole(mask).flatten().tolist() == [0, 1, 1, 1]
    assert binary_hole(mask.double()).dtype == torch.float64


@pytest.mark.parametrize("method", sorted(TINY))
def test_a_soft_hole_is_repainted_as_a_whole_one(method):
    """A pixel at m = 0.6 comes out exactly as at m = 1: none of the damage under it stays."""
    torch.manual_seed(0)
    stage = TINY[method]().eval()
    corrupted = torch.rand(1, 3, 32, 32)
    soft = torch.zeros(1, 1, 32, 32)
    soft[..., 8:20, 10:24] = 0.6
    soft[..., 12:16, 14:20] = 1.0
    with torch.no_grad():
        torch.manual_seed(1)  # the latent search starts from a random z
        from_soft = stage(corrupted, soft)["output"]
        torch.manual_seed(1)
        from_hard = stage(corrupted, (soft > 0).float())["output"]
    torch.testing.assert_close(from_soft, from_hard, rtol=0, atol=0)
    keep = (soft == 0).expand_as(corrupted)
    assert torch.equal(from_soft[keep], corrupted[keep])
