"""Large photos in row strips (pipeline/inference/large.py) give what whole-image float tensors gave."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.ops import compose, tiled
from pipeline.inference import large
from pipeline.inference.inpainter import COARSE_OPENING, BlindInpainter, opened
from pipeline.inference.large import working_shape


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


# -- the crop strategy (issue 16, item 3) -------------------------------------------------------


def test_tiled_is_the_whole_image_map_where_the_margin_covers_the_receptive_field():
    net = torch.nn.Sequential(*[torch.nn.Conv2d(3 if i == 0 else 4, 4, 3, padding=1) for i in range(3)])  # radius 3
    x = torch.rand(1, 3, 70, 101)
    with torch.no_grad():
        assert torch.allclose(tiled(net, x, tile=24, margin=4), net(x), atol=1e-6)
        assert torch.equal(tiled(net, x[..., :20, :20], tile=24, margin=4), net(x[..., :20, :20]))
    with pytest.raises(ValueError):
        tiled(net, x, tile=8, margin=4)


def test_damage_boxes_grow_by_the_margin_clip_to_the_photo_and_never_overlap():
    found = np.zeros((40, 60), bool)
    found[5, 5] = True  # a speck near the corner
    found[30:32, 50:55] = True  # far from it
    found[30, 46] = True  # near the second: their boxes overlap, so they merge
    boxes = large.damage_boxes(found, (400, 600), margin=20)
    # 10 px per cell; one cell more on each side (bilinear upsampling spreads a cell), then 20 px
    assert boxes == [(20, 90, 20, 90), (270, 350, 430, 580)]
    assert all(isinstance(v, int) for box in boxes for v in box)
    assert large.damage_boxes(np.zeros((4, 4), bool), (40, 40), 8) == []
    assert large.damage_boxes(np.ones((4, 4), bool), (40, 40), 8) == [(0, 40, 0, 40)]  # clipped to the photo


def test_upsampled_regions_are_the_whole_upsampled_map():
    small = torch.rand(12, 17)
    full = F.interpolate(small[None, None], size=(75, 97), mode="bilinear", align_corners=False)[0, 0]
    up = large.Upsampled(small, (75, 97))
    assert np.allclose(up.region(10, 40, 3, 90), full[10:40, 3:90].numpy(), atol=1e-6)
    expected = F.interpolate(full[None, None, 10:40, 3:90], size=(9, 21), mode="bilinear", antialias=True)
    assert torch.allclose(up.resampled((10, 40, 3, 90), (9, 21)), expected, atol=1e-5)
    same = large.Upsampled(small, (12, 17))
    assert np.array_equal(same.region(2, 5, 1, 9), small[2:5, 1:9].numpy())


class InputSizes:
    """Records the input sizes of the EPN's and the IPN's forward calls."""

    def __init__(self, inpainter):
        self.sizes = []
        stages = (inpainter.pipeline.epn, inpainter.pipeline.ipn)
        self.handles = [
            s.register_forward_pre_hook(lambda m, args: self.sizes.append(tuple(args[0].shape[-2:]))) for s in stages
        ]

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _scratched(height=200, width=300):
    yy, xx = np.mgrid[0:height, 0:width] / width
    photo = (np.stack([np.sin(6 * xx), np.cos(5 * yy), xx * yy], -1) * 100 + 120).astype(np.uint8)
    hole = np.zeros((height, width), np.float32)
    hole[150:158, 200:280] = 1
    photo[hole > 0] = 255
    return photo, hole


def test_crop_strategy_repairs_only_a_crop_around_the_damage_at_full_resolution():
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=128, crop_margin=16)
    assert inpainter.settings.large == "crop"
    photo, hole = _scratched()
    sizes = InputSizes(inpainter)
    try:
        own = photo.copy()
        result = inpainter.inpaint_array(own, hole, "masked", in_place=True)
    finally:
        sizes.remove()
    assert result["output"] is own
    # one crop, at full resolution: the hole's rows and columns, one grid cell and 16 px around them
    assert sizes.sizes and all(s == sizes.sizes[0] for s in sizes.sizes)
    crop_h, crop_w = sizes.sizes[0]
    assert (crop_h, crop_w) == (8 + 2 + 32, 80 + 2 + 32)
    assert np.array_equal(own[hole == 0], photo[hole == 0])  # only the hole was written
    assert (own[hole > 0] != 255).any()
    assert np.array_equal(result["mask"] > 0, hole > 0)
    assert result["edges"].shape == hole.shape


def test_crop_strategy_downscales_only_a_region_larger_than_the_working_size():
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64, crop_margin=8)
    photo, _ = _scratched()
    hole = np.zeros(photo.shape[:2], np.float32)
    hole[20:180, 30:60] = 1  # 160 px tall: its crop is larger than 64
    sizes = InputSizes(inpainter)
    try:
        result = inpainter.inpaint_array(photo, hole, "masked", intermediates=False)
    finally:
        sizes.remove()
    assert sizes.sizes and max(max(s) for s in sizes.sizes) <= 64
    assert np.array_equal(result["output"][hole == 0], photo[hole == 0])
    assert result["mask"] is None and result["edges"] is None


def test_crop_strategy_on_a_clean_photo_costs_the_mask_alone():
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64)
    photo, _ = _scratched()
    sizes = InputSizes(inpainter)
    try:
        result = inpainter.inpaint_array(photo, np.zeros(photo.shape[:2]), "masked")
    finally:
        sizes.remove()
    assert sizes.sizes == [] and np.array_equal(result["output"], photo) and not result["mask"].any()


@pytest.mark.parametrize("mask_size", [0, 160])
def test_blind_crop_strategy_keeps_every_pixel_outside_its_mask(mask_size):
    """The MPN looks at the photo at ``mask_size`` (in tiles above the working size); the mask
    the repair uses is the one returned, and outside it every pixel is the original's."""
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64, mask_size=mask_size)
    photo, _ = _scratched()
    assert inpainter.mask_shape(200, 300) == ((200, 300) if mask_size == 0 else (107, 160))
    result = inpainter.inpaint_array(photo, None, "blind")
    assert np.array_equal(result["output"][result["mask"] == 0], photo[result["mask"] == 0])
    shown = inpainter.mask_array(photo, "blind")  # what the page shows is what is repaired
    assert np.abs(shown["mask"] * 255 - result["mask"]).max() <= 1


def test_resize_strategy_is_still_there():
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64, large="resize")
    photo, hole = _scratched()
    sizes = InputSizes(inpainter)
    try:
        result = inpainter.inpaint_array(photo, hole, "masked")
    finally:
        sizes.remove()
    assert sizes.sizes == [(43, 64), (43, 64)]  # the whole photo at the working size
    assert np.array_equal(result["output"][hole == 0], photo[hole == 0])


def test_crop_strategy_refuses_a_missing_or_misfit_mask_before_touching_the_photo():
    from common.errors import ConfigError

    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64)
    photo, hole = _scratched()
    own = photo.copy()
    for mask in (None, hole[:-1]):
        with pytest.raises(ConfigError, match="mode=masked needs a mask of the photo's size"):
            inpainter.inpaint_array(own, mask, "masked", in_place=True)
    assert np.array_equal(own, photo)


def test_above_the_working_size_the_mask_is_the_larger_of_the_tiled_and_the_whole_view():
    """With ``two_scale``, thin damage is found in full-resolution tiles and large damage in one
    view of the whole photo at the working size: m̂ is the larger of the two (the second opened);
    without it (the default) the tiles alone."""
    inpainter = BlindInpainter.from_pretrained().with_settings(working_size=64, two_scale=True)
    assert BlindInpainter.from_pretrained().settings.mask_size == 4096
    photo, _ = _scratched()
    x = torch.from_numpy(photo.astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        both = inpainter.found_masks(x, "blind")["predicted_mask"]
        tiles = inpainter.with_settings(two_scale=False).found_masks(x, "blind")["predicted_mask"]
        small = F.interpolate(x, size=(43, 64), mode="bilinear", antialias=True, align_corners=False)
        view = opened(inpainter.pipeline.mpn(small)["predicted_mask"], COARSE_OPENING)
    view = F.interpolate(view, size=(200, 300), mode="bilinear", align_corners=False)
    assert torch.equal(both, torch.maximum(tiles, view)) and not torch.equal(both, tiles)


def test_the_opening_removes_what_is_thinner_than_its_square_and_keeps_the_rest():
    mask = torch.zeros(1, 1, 40, 40)
    mask[0, 0, 5:35, 10:12] = 0.9  # a 2-px line
    mask[0, 0, 20:30, 20:30] = 1.0  # a 10-px block
    out = opened(mask, 5)
    assert out[0, 0, :, :15].max() == 0 and torch.equal(out[0, 0, 20:30, 20:30], mask[0, 0, 20:30, 20:30])
