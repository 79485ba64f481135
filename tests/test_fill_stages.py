"""What every other system's stage (pipeline.methods.fill_stages) shares: as in the papers, a pixel
is missing or known; a mostly destroyed one (m > 0.5) is repainted whole, not blended back in."""

from __future__ import annotations

import pytest
import torch

from common.ops import harden_hole
from pipeline.methods.cifar_gan.module import CifarGANModule
from pipeline.methods.dcgan.module import DCGANModule
from pipeline.methods.glcic.module import GLCICModule
from pipeline.methods.pconv.module import PConvModule
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


def test_mostly_destroyed_pixels_become_whole_holes():
    mask = torch.tensor([0.0, 0.3, 0.5, 0.6, 1.0]).view(1, 1, 1, 5)
    assert harden_hole(mask).flatten().tolist() == pytest.approx([0, 0.3, 0.5, 1, 1])
    assert harden_hole(mask.double()).dtype == torch.float64


@pytest.mark.parametrize("method", sorted(TINY))
def test_a_mostly_destroyed_pixel_is_repainted_whole(method):
    """A pixel at m = 0.6 comes out exactly as at m = 1: none of the damage under it stays; at
    m = 0.3 it stays a soft blend."""
    torch.manual_seed(0)
    stage = TINY[method]().eval()
    corrupted = torch.rand(1, 3, 32, 32)
    soft = torch.zeros(1, 1, 32, 32)
    soft[..., 8:20, 10:24] = 0.6
    soft[..., 12:16, 14:20] = 1.0
    soft[..., 22:24, 10:24] = 0.3
    hard = torch.where(soft > 0.5, 1.0, soft)
    with torch.no_grad():
        torch.manual_seed(1)  # the latent search starts from a random z
        from_soft = stage(corrupted, soft)
        torch.manual_seed(1)
        from_hard = stage(corrupted, hard)
    torch.testing.assert_close(from_soft["output"], from_hard["output"], rtol=0, atol=0)
    keep = (soft == 0).expand_as(corrupted)
    assert torch.equal(from_soft["output"][keep], corrupted[keep])
    if method != "latent_search":  # the search's fill is Poisson-blended before compositing
        faint = from_soft["output"][..., 22:24, 10:24]
        fill = from_soft["refined"][..., 22:24, 10:24].clamp(0, 1)
        torch.testing.assert_close(faint, 0.7 * corrupted[..., 22:24, 10:24] + 0.3 * fill)
