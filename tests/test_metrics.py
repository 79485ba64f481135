"""Tests of common/metrics.py, each metric against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from common.metrics import edge_precision_recall, l1, mask_bce, mask_iou, mask_mae, psnr, ssim


def full(value: float, shape=(1, 3, 8, 8)) -> torch.Tensor:
    return torch.full(shape, value)


def test_psnr_of_a_known_mse_per_image_then_mean():
    # |error| 0.1 -> MSE 1e-2 -> 20 dB; |error| 0.01 -> MSE 1e-4 -> 40 dB; mean 30 dB
    # (not the PSNR of the pooled MSE, 10·log10(1 / 0.00505) = 22.97 dB).
    target = torch.zeros(2, 3, 8, 8)
    pred = torch.cat([full(0.1), full(0.01)])
    torch.testing.assert_close(psnr(pred, target, reduction="none"), torch.tensor([20.0, 40.0]))
    torch.testing.assert_close(psnr(pred, target), torch.tensor(30.0))
    torch.testing.assert_close(psnr(full(25.5), full(0.0), data_range=255.0), torch.tensor(20.0))
    assert psnr(pred, pred) == math.inf


def hole_case():
    """Error 0.1 inside a 4×4 hole, 0.5 outside it; image 1's hole is a different 2×8 band."""
    target = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(2, 1, 8, 8)
    mask[0, :, 2:6, 2:6] = 1
    mask[1, :, 6:8, :] = 1
    pred = target + torch.where(mask.bool(), 0.1, 0.5)
    return pred, target, mask


def test_masked_psnr_and_l1_only_see_the_hole():
    pred, target, mask = hole_case()
    torch.testing.assert_close(psnr(pred, target, mask, reduction="none"), torch.tensor([20.0, 20.0]))
    torch.testing.assert_close(l1(pred, target, mask), torch.tensor(0.1))
    # Whole image (both holes have 16 pixels): 16 of 64 pixels off by 0.1, 48 by 0.5.
    torch.testing.assert_close(l1(pred, target), torch.tensor((16 * 0.1 + 48 * 0.5) / 64))
    mse0 = (16 * 0.01 + 48 * 0.25) / 64
    torch.testing.assert_close(psnr(pred, target, reduction="none")[0], torch.tensor(-10 * math.log10(mse0)))


def test_masked_metrics_with_a_full_mask_equal_the_unmasked_ones():
    pred, target, _ = hole_case()
    ones = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(psnr(pred, target, ones), psnr(pred, target))
    torch.testing.assert_close(l1(pred, target, ones), l1(pred, target))


def test_soft_mask_weights_pixels():
    # Two pixels, one channel: errors 0.2 (weight 1) and 0.6 (weight 0.5):
    # L1 = (0.2 + 0.3) / 1.5 = 1/3; MSE = (0.04 + 0.18) / 1.5.
    pred, target = torch.tensor([0.2, 0.6]).view(1, 1, 1, 2), torch.zeros(1, 1, 1, 2)
    mask = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2)
    torch.testing.assert_close(l1(pred, target, mask), torch.tensor(1 / 3))
    torch.testing.assert_close(psnr(pred, target, mask), torch.tensor(-10 * math.log10(0.22 / 1.5)))


def test_an_empty_hole_is_left_out_of_the_mean():
    pred, target, mask = hole_case()
    mask[1] = 0
    assert torch.isnan(psnr(pred, target, mask, reduction="none")[1])
    torch.testing.assert_close(psnr(pred, target, mask), torch.tensor(20.0))
    torch.testing.assert_close(l1(pred, target, mask), torch.tensor(0.1))


def test_ssim_is_one_for_identical_images_and_lower_for_noise():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    torch.testing.assert_close(ssim(x, x), torch.tensor(1.0))
    per_image = ssim(noisy, x, reduction="none")
    assert per_image.shape == (2,) and (per_image < 0.95).all()
    assert ssim(noisy, x) < ssim((x + 0.02).clamp(0, 1), x) < 1


def test_mask_iou_of_two_boxes_and_of_two_empty_masks():
    # 4×4 boxes offset by (2, 2): intersection 2×2 = 4, union 16 + 16 − 4 = 28 -> 1/7.
    pred, target = torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8)
    pred[0, :, 0:4, 0:4] = 0.9
    target[0, :, 2:6, 2:6] = 0.6
    target[1] = 0.4  # below the threshold: image 1 is empty in both -> IoU 1
    torch.testing.assert_close(mask_iou(pred, target, reduction="none"), torch.tensor([1 / 7, 1.0]))
    torch.testing.assert_close(mask_iou(pred, target), torch.tensor((1 / 7 + 1) / 2))
    torch.testing.assert_close(mask_iou(pred, target, threshold=0.3, reduction="none")[1], torch.tensor(0.0))


def test_mask_bce_of_known_values():
    pred = torch.tensor([0.8, 0.25, 0.5, 0.0]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 0.5, 1.0]).view(1, 1, 2, 2)
    # −ln 0.8, −ln 0.75, ln 2 (soft target), −ln 1e-6 (a certain miss, clamped).
    expected = (-math.log(0.8) - math.log(0.75) + math.log(2) - math.log(1e-6)) / 4
    torch.testing.assert_close(mask_bce(pred, target), torch.tensor(expected))
    assert mask_bce(target.round(), target.round()) < 1e-5


def test_mask_mae():
    pred = torch.tensor([0.8, 0.25, 0.5, 0.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    target = torch.tensor([1.0, 0.0, 0.5, 1.0]).view(1, 1, 2, 2).repeat(2, 1, 1, 1)
    target[1] = pred[1]
    torch.testing.assert_close(mask_mae(pred, target, reduction="none"), torch.tensor([1.45 / 4, 0.0]))
    torch.testing.assert_close(mask_mae(pred, target), torch.tensor(1.45 / 8))


def edge_maps():
    """True edges: 4 pixels of column 1. Predicted: 3 pixels, 2 of them on it (rows 0, 1)."""
    target, pred = torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    target[0, 0, :, 1] = 1
    pred[0, 0, 0, 1] = pred[0, 0, 1, 1] = 0.7
    pred[0, 0, 3, 3] = 0.9
    pred[0, 0, 2, 1] = 0.5  # not above the threshold
    return pred, target


def test_edge_precision_recall_of_a_known_map():
    pred, target = edge_maps()
    precision, recall = edge_precision_recall(pred, target)
    assert precision.shape == recall.shape == ()
    torch.testing.assert_close((precision, recall), (torch.tensor(2 / 3), torch.tensor(2 / 4)))


def test_edge_precision_recall_inside_a_mask_and_over_the_batch():
    pred, target = edge_maps()
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 1:, :] = 1  # drops row 0: predicted {(1,1), (3,3)}, true {(1,1), (2,1), (3,1)}
    torch.testing.assert_close(
        edge_precision_recall(pred, target, mask=mask), (torch.tensor(1 / 2), torch.tensor(1 / 3))
    )
    # Counts are pooled over the batch (EdgeConnect), not averaged per image: an empty second
    # image adds nothing.
    batch = edge_precision_recall(
        torch.cat([pred, torch.zeros_like(pred)]), torch.cat([target, torch.zeros_like(target)])
    )
    torch.testing.assert_close(batch, (torch.tensor(2 / 3), torch.tensor(2 / 4)))


def test_edge_precision_recall_empty_cases_follow_edgeconnect():
    empty, edges = torch.zeros(1, 1, 4, 4), edge_maps()[1]
    assert edge_precision_recall(empty, empty) == (1.0, 1.0)  # nothing to find, nothing found
    assert edge_precision_recall(edges, empty) == (0.0, 0.0)  # only false positives
    assert edge_precision_recall(empty, edges) == (0.0, 0.0)  # only misses


def test_half_precision_inputs_and_bad_reduction():
    pred, target, mask = hole_case()
    torch.testing.assert_close(
        psnr(pred.bfloat16(), target.bfloat16(), mask), psnr(pred, target, mask), atol=0.1, rtol=0
    )
    assert psnr(pred.half(), target.half()).dtype == torch.float32
    with pytest.raises(ValueError, match="reduction"):
        l1(pred, target, reduction="sum")
