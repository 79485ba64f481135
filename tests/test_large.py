"""Large photos in row strips (pipeline/large.py) give what whole-image float tensors gave."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.ops import compose
from pipeline import large
from pipeline.inference import BlindInpainter, working_shape


@pytest.mark.parametrize(
    "n_in,n_out,mode,antialias",
    [(70, 38, "bilinear", True), (93, 51, "bilinear", True), (38, 70, "bilinear", False), (38, 71, "bicubic", False),
     (20, 45, "nearest", False), (600, 257, "bilinear", True), (5, 1, "bilinear", True)],
)  # fmt: skip
def test_resize_matrix_is_interpolate_along_one_axis(n_in, n_out, mode, antialias):
    x = torch.rand(1, 1, n_in, 9)
    options = {} if mode == "nearest" else {"align_corners": False, "antialias": antialias}
    expected = F.interpolate(x, size=(n_out, 9), mode=mode, **options)[0, 0]
    assert torch.allclose(large.resize_matrix(n_in, n_out, mode, antialias) @ x[0, 0], expected, atol=1e-6)


def test_downscale_in_strips_is_the_antialiased_resize(monkeypatch):
    monkeypatch.setattr(large, "STRIP_ROWS", 7)  # many strips, one ragged
    image = np.random.default_rng(0).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    expected = F.interpolate(x, size=(30, 41), mode="bilinear", antialias=True, align_corners=False)
    assert torch.allclose(large.downscale(image, (30, 41)), expected, atol=1e-5)


def test_any_pool_is_adaptive_max_pool():
    hole = (np.random.default_rng(1).random((97, 64)) > 0.995).astype(np.uint8)
    expected = F.adaptive_max_pool2d(torch.from_numpy(hole).float()[None, None], (40, 29))
    assert torch.equal(large.any_pool(hole, (40, 29)), expected)


def test_paste_back_in_strips_is_the_whole_image_composite(monkeypatch):
    monkeypatch.setattr(large, "STRIP_ROWS", 16)
    rng = torch.Generator().manual_seed(0)
    small = {
        "refined": torch.rand(1, 3, 24, 31, generator=rng),
        "mask": torch.rand(1, 1, 24, 31, generator=rng),
        "edges": (torch.rand(1, 1, 24, 31, generator=rng) > 0.8).float(),
    }
    image = torch.rand(1, 3, 75, 97, generator=rng)
    m = F.interpolate(small["mask"], size=(75, 97), mode="bilinear")
    fill = F.interpolate(small["refined"], size=(75, 97), mode="bicubic", align_corners=False)
    pasted = large.paste_back(image[0].permute(1, 2, 0).numpy().copy(), small)
    assert np.allclose(pasted["output"], compose(image, fill, m).clamp(0, 1)[0].permute(1, 2, 0).numpy(), atol=1e-6)
    assert np.allclose(pasted["mask"], m.clamp(0, 1)[0, 0].numpy(), atol=1e-6)
    assert np.array_equal(pasted["edges"], F.interpolate(small["edges"], size=(75, 97), mode="nearest")[0, 0].numpy())


@pytest.fixture(scope="module")
def shipped():
    return BlindInpainter.from_pretrained().with_settings(working_size=64)


@pytest.mark.parametrize("mode", ["blind", "masked"])
def test_a_photo_in_its_own_pixels_gives_the_tensor_result(shipped, mode):
    """uint8 pixels in, repaired in place, equal to the float tensor path to the last 8-bit level;
    known pixels exact."""
    yy, xx = np.mgrid[0:90, 0:150] / 150
    photo = (np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy], -1) * 100 + 120).astype(np.uint8)
    photo[40:44, 10:140] = 255  # a scratch
    hole = np.zeros((90, 150), np.float32)
    hole[36:48, 6:144] = 1
    assert working_shape(90, 150, 64) != (90, 150)  # the strip path
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    tensor = shipped.inpaint(x, torch.from_numpy(hole)[None, None], mode)
    own = photo.copy()
    result = shipped.inpaint_array(own, hole if mode == "masked" else None, mode, in_place=True)
    assert result["output"] is own and own.dtype == np.uint8
    expected = (tensor["output"][0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(own.astype(float) - expected).max() <= 1
    known = (tensor["mask"][0, 0].numpy() == 0) if mode == "blind" else (hole == 0)
    assert np.array_equal(own[known], photo[known])
