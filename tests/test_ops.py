"""The shared image operations (common/ops.py): Canny on both backends, masks, compositing."""

import numpy as np
import pytest
import torch
from skimage.feature import canny as skimage_canny
from torchvision.transforms.v2 import functional as TF

from common.ops import (
    canny,
    canny_map,
    compose,
    edge_hole,
    from_native,
    grow,
    hard_mask,
    image_edges,
    merge_edges,
    to_gray,
    to_native,
)
from data.sample import SPLIT_PHOTOS, load_photo


@pytest.mark.parametrize("name", ["skimage_astronaut", "skimage_chelsea", "skimage_coffee"])
def test_opencv_canny_matches_skimage_within_tolerance(name):
    """EdgeConnect's reference is skimage's Canny; the OpenCV path must give nearly the same map.
    Measured on the 33 sample photos at 256²: 96.5–99.9 % equal pixels, edge F1 0.857–0.975; on the
    three tested here ≥ 98.5 % and F1 ≥ 0.886."""
    image = TF.resize(load_photo(name), [256, 256], antialias=True).clamp(0, 1)
    gray = to_gray(image)[0].numpy().astype(np.float64)
    ref, ours = skimage_canny(gray, sigma=2), canny_map(gray, 2.0)
    inter = (ref & ours).sum()
    precision, recall = inter / ours.sum(), inter / ref.sum()
    assert (ref == ours).mean() > 0.97
    assert 2 * precision * recall / (precision + recall) > 0.85


def test_step_edge_is_found_exactly():
    gray = np.zeros((32, 32), np.float32)
    gray[:, 16:] = 1.0
    edges = canny_map(gray, sigma=1.0)
    cols = np.unique(np.nonzero(edges)[1])
    assert set(cols) <= {15, 16} and edges[2:-2].any(axis=1).all()
    assert not canny_map(np.full((32, 32), 0.5, np.float32), 2.0).any()


def test_image_edges_shape_and_values():
    e = image_edges(torch.rand(3, 40, 24), sigma=2.0)
    assert e.shape == (1, 40, 24) and e.dtype == torch.float32
    assert set(torch.unique(e).tolist()) <= {0.0, 1.0}


def _photos(size=128):
    names = list(SPLIT_PHOTOS["train"][:5]) + list(SPLIT_PHOTOS["test"])
    return to_gray(torch.stack([TF.resize(load_photo(n), [size, size], antialias=True).clamp(0, 1) for n in names]))


@pytest.mark.parametrize("sigma", [1.0, 2.0, 3.0])
def test_kornia_and_opencv_give_the_same_maps_within_tolerance(sigma):
    """Measured on these 11 sample photos at 128²: ≥ 99.42 % equal pixels, edge F1 ≥ 0.965 (mean 0.98–0.99).
    They differ only where NMS ties and hysteresis chains break differently."""
    gray = _photos()
    a, b = canny(gray, sigma, backend="opencv"), canny(gray, sigma, backend="kornia")
    assert a.shape == b.shape == gray.shape and set(torch.unique(a).tolist()) <= {0.0, 1.0}
    assert (a == b).float().flatten(1).mean(1).min() > 0.99
    f1 = 2 * (a * b).flatten(1).sum(1) / (a.flatten(1).sum(1) + b.flatten(1).sum(1))
    assert f1.mean() > 0.95 and f1.min() > 0.85


def test_auto_backend_uses_opencv_on_cpu_and_sigma_zero_means_no_blur():
    gray = _photos(64)
    assert torch.equal(canny(gray, 2.0), canny(gray, 2.0, backend="opencv"))
    assert canny(gray, 0.0).sum() > canny(gray, 2.0).sum()  # no smoothing: more, finer edges
    with pytest.raises(ValueError, match="backend"):
        canny(gray, backend="skimage")


def test_hard_mask_grow_compose_and_merge_follow_the_mask_convention():
    mask = torch.zeros(1, 1, 5, 5)
    mask[..., 2, 2], mask[..., 0, 0] = 0.9, 0.5  # one hole pixel; 0.5 is not a hole (m > 0.5 is)
    hole = hard_mask(mask)
    assert hole.sum() == 1 and hole[..., 2, 2] == 1 and hole.dtype == mask.dtype
    assert hard_mask(mask, 0.4).sum() == 2
    grown = grow(hole, 1)
    assert grown.sum() == 9 and grown[..., 1:4, 1:4].min() == 1
    assert torch.equal(grow(hole, 0), hole)

    image, fill = torch.zeros(1, 3, 5, 5), torch.ones(1, 3, 5, 5)
    soft = torch.full((1, 1, 5, 5), 0.25)
    assert torch.allclose(compose(image, fill, soft), torch.full((1, 3, 5, 5), 0.25))  # (1 − m)·image + m·fill
    predicted, known = torch.full((1, 1, 5, 5), 0.7), torch.zeros(1, 1, 5, 5)
    merged = merge_edges(predicted, torch.ones(1, 1, 5, 5), mask)
    # predicted inside the hole and its EDGE_MARGIN (the whole 5×5 here), the known edges beyond it
    assert torch.equal(edge_hole(mask), torch.ones(1, 1, 5, 5)) and torch.allclose(merged, predicted)
    assert torch.equal(edge_hole(mask, 1), grown)
    assert torch.equal(merge_edges(predicted, known, torch.zeros(1, 1, 5, 5)), known)


def test_merge_edges_passes_gradients_to_the_predicted_edges():
    predicted = torch.rand(1, 1, 4, 4, requires_grad=True)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    merge_edges(predicted, torch.zeros(1, 1, 4, 4), mask).sum().backward()
    assert torch.equal(predicted.grad, edge_hole(mask))


def test_pull_push_fills_the_hole_from_its_surroundings_and_keeps_the_rest():
    from common.classical import pull_push_fill

    image = torch.zeros(1, 3, 17, 23)
    image[..., :, :11] = 1.0  # white left, black right
    mask = torch.zeros(1, 1, 17, 23)
    mask[..., 4:12, 2:8] = 1  # a hole inside the white half
    filled = pull_push_fill(image.masked_fill(mask.bool(), 0.3), mask)
    known = mask == 0
    assert torch.equal(filled[known.expand_as(filled)], image[known.expand_as(image)])
    assert filled[..., 6:10, 4:6].min() > 0.7  # white comes in from around the hole
    assert torch.allclose(
        pull_push_fill(torch.full((2, 3, 9, 9), 0.4), mask[..., :9, :9].expand(2, 1, 9, 9)), torch.tensor(0.4)
    )
    source = image.clone().requires_grad_(True)
    pull_push_fill(source, mask).sum().backward()
    assert source.grad[..., :, :11].abs().sum() > 0  # differentiable


@pytest.mark.parametrize("shape", [(1, 9), (9, 1), (1, 1), (8, 40)])
def test_kornia_canny_on_sides_within_the_blur_radius(shape):
    """kornia's reflect padding refuses a side <= the blur radius (8 px at sigma 2): such images,
    which GPU inference meets (a 1×9 strip), take OpenCV's path instead of crashing."""
    gray = torch.rand(2, 1, *shape)
    assert torch.equal(canny(gray, 2.0, backend="kornia"), canny(gray, 2.0, backend="opencv"))


@pytest.mark.parametrize("pixels", [1, 2, 5])
def test_grow_is_the_square_max_filter(pixels):
    """The separable grow (a column max, then a row max) equals the square window, soft values and
    borders included."""
    mask = torch.rand(2, 1, 37, 50) * (torch.rand(2, 1, 37, 50) > 0.9)
    square = torch.nn.functional.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)
    assert torch.equal(grow(mask, pixels), square)


def test_a_native_size_output_goes_back_to_the_photos_size():
    photo, mask = torch.rand(2, 3, 40, 52), torch.zeros(2, 1, 40, 52)
    mask[..., 10, 10] = 0.2
    small, small_mask = to_native(photo, 32, mask)
    assert small.shape[-2:] == small_mask.shape[-2:] == (32, 32) and small_mask.sum() == 2  # any area is a hole
    assert from_native(small, photo.shape[-2:]).shape == photo.shape
    assert from_native(photo, (40, 52)) is photo


@pytest.mark.parametrize("method", ["telea", "navier_stokes", "pull_push", "telea_pull_push"])
def test_every_floor_fills_the_hole_and_keeps_every_known_pixel(method):
    from common.classical import classical_fill

    image = load_photo("skimage_chelsea")[None, :, :64, :64]
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:40, 16:48] = 0.8  # more than half destroyed: a hole
    mask[..., 50:54, 10:20] = 0.3  # faint damage: kept
    corrupted = torch.where(mask > 0.5, torch.rand_like(image), image)
    filled = classical_fill(corrupted, mask, method)
    assert torch.equal(filled[(mask <= 0.5).expand_as(filled)], corrupted[(mask <= 0.5).expand_as(filled)])
    hole = (mask > 0.5).expand_as(filled)
    assert (filled[hole] - image[hole]).abs().mean() < 0.5 * (corrupted[hole] - image[hole]).abs().mean()


def test_the_telea_pull_push_floor_is_telea_at_the_border_and_pull_push_deep_inside():
    from common.classical import classical_fill

    image = load_photo("skimage_coffee")[None, :, :96, :96]
    mask = torch.zeros(1, 1, 96, 96)
    mask[..., 16:80, 16:80] = 1
    telea, smooth, both = (classical_fill(image, mask, m) for m in ("telea", "pull_push", "telea_pull_push"))
    # The first row inside the hole is 1 px from the known pixels: Telea weighs exp(−1/4) = 0.78 there;
    # the centre is 32 px away: pull-push alone, to 3e-4.
    border, centre = (..., 16, slice(30, 60)), (..., 48, 48)
    assert ((both - telea)[border].abs() <= 0.25 * (smooth - telea)[border].abs() + 1e-6).all()
    assert ((both - smooth)[centre].abs() <= 1e-3 * (telea - smooth)[centre].abs() + 1e-6).all()
    with pytest.raises(ValueError, match="unknown classical fill"):
        classical_fill(image, mask, "exemplar")
