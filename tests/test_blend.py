"""common/blend.py: Poisson blending keeps the known pixels, takes the fill's gradients and the
image's boundary values, so a fill that is right up to a constant offset is blended back exactly."""

from __future__ import annotations

import numpy as np
import torch

from common.blend import poisson_blend, poisson_blend_array


def smooth(h: int = 24, w: int = 30, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.interpolate(torch.rand(1, 3, 4, 5, generator=g), size=(h, w), mode="bicubic")[0].clamp(
        0, 1
    )


def test_a_fill_off_by_a_constant_is_blended_back_to_the_image():
    image = smooth()
    mask = torch.zeros(1, 24, 30)
    mask[:, 6:15, 8:20] = 1
    mask[:, 18:24, 0:5] = 1  # a second hole, on the image's corner
    out = poisson_blend((image + 0.3)[None], image[None], mask[None])[0]
    torch.testing.assert_close(out, image.clamp(0, 1), atol=1e-5, rtol=0)


def test_known_pixels_are_kept_and_the_fill_gradients_followed():
    image, fill = smooth(seed=1), smooth(seed=2)
    mask = torch.zeros(1, 24, 30)
    mask[:, 5:19, 6:25] = 1
    out = poisson_blend(fill[None], image[None], mask[None])[0]
    keep = (mask == 0).expand_as(image)
    assert torch.equal(out[keep], image[keep])
    # Inside the hole, the Laplacian of the result is the fill's (away from the boundary rows).
    lap = lambda x: 4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:]  # noqa: E731
    inner = (slice(None), slice(6, 17), slice(7, 23))
    unclamped = (
        torch.from_numpy(
            poisson_blend_array(fill.permute(1, 2, 0).numpy(), image.permute(1, 2, 0).numpy(), (mask[0] > 0.5).numpy())
        )
        .permute(2, 0, 1)
        .float()
    )
    torch.testing.assert_close(lap(unclamped)[inner], lap(fill)[inner], atol=1e-4, rtol=0)
    assert out.min() >= 0 and out.max() <= 1


def test_no_hole_and_all_hole():
    image, fill = smooth(8, 8), smooth(8, 8, seed=3)
    assert torch.equal(poisson_blend(fill[None], image[None], torch.zeros(1, 1, 8, 8))[0], image)
    assert torch.equal(poisson_blend(fill[None], image[None], torch.ones(1, 1, 8, 8))[0], fill.clamp(0, 1))
    assert np.array_equal(
        poisson_blend_array(np.ones((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4), bool)), np.zeros((4, 4, 3))
    )
