"""Doing no harm: intact samples, a calibrated mask loss, the soft floor, and choosing the hole
threshold and the shipped pipeline on what a user gets (pipeline/training/selection.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from common.losses import mask_bce_loss, normalised_bce
from data.damage import DamageMix
from data.datamodule import InpaintingSamples
from data.image_dataset import DatasetError
from ipn.module import IPNModule
from mpn.module import detection_metrics
from pipeline.model import BlindPipeline
from pipeline.training.selection import PSNR_CAP, BlindScores, calibrate_mask_rule, mask_calibration


class RedChannelMPN(nn.Module):
    """A stand-in MPN whose m̂ is the image's red channel."""

    def forward(self, corrupted):
        return {"mask_logits": torch.logit(corrupted[:, :1].clamp(1e-4, 1 - 1e-4)), "predicted_mask": corrupted[:, :1]}


def _batch(intact: bool, size: int = 32) -> dict:
    image = torch.zeros(1, 3, size, size)
    mask = torch.zeros(1, 1, size, size)
    corrupted = image.clone()
    if intact:
        corrupted[:, 0, :4, :8] = 0.6  # a faint doubt over 3 % of an intact photo
    else:
        corrupted[:, 0, 10:20, 10:20] = 0.9  # the damage, seen confidently
        mask[..., 10:20, 10:20] = 1
    return {"image": corrupted if intact else image, "corrupted": corrupted, "mask": mask}


def test_the_mask_rule_is_the_best_iou_within_the_harm_bound():
    pipeline = BlindPipeline(mpn=RedChannelMPN(), dilate=0)
    batches = [_batch(True), _batch(False)]
    rule, table = calibrate_mask_rule(pipeline, batches, harm_bound=0.01, thresholds=(0.5, 0.7, 0.95), floors=(0.1,))
    rows = {(row["hole_threshold"], row["soft_floor"]): row for row in table}
    assert set(rows) == {(0.5, 0.1), (0.5, 0.5), (0.7, 0.1), (0.7, 0.7), (0.95, 0.1), (0.95, 0.95)}
    assert rows[0.5, 0.5]["clean_flagged"] == pytest.approx(32 / 1024)  # the doubt is flagged
    assert rows[0.7, 0.1]["clean_flagged"] == pytest.approx(32 / 1024)  # ... and blended in as a soft value
    assert rows[0.7, 0.7]["clean_flagged"] == 0 and rows[0.7, 0.7]["iou"] == 1
    assert rows[0.95, 0.95]["iou"] == 0  # too strict: the damage is missed
    assert rule == {"hole_threshold": 0.7, "soft_floor": 0.7}
    assert (pipeline.hole_threshold, pipeline.soft_floor) == (0.5, 0.1)  # left as it was
    # nothing within the bound: the rule that flags least (a doubt of 0.6 is flagged by both)
    rule, table = calibrate_mask_rule(pipeline, [_batch(True)], harm_bound=0.0, thresholds=(0.3, 0.5), floors=(0.0,))
    assert min(row["clean_flagged"] for row in table) > 0 and rule["hole_threshold"] in (0.3, 0.5)


def test_blind_scores_reward_the_hole_and_punish_repainting_intact_photos():
    scores = BlindScores(harm_bound=0.01)
    intact, damaged = _batch(True), _batch(False)
    scores.update(intact["corrupted"], torch.zeros_like(intact["mask"]), intact["image"], intact["mask"])
    scores.update(damaged["image"], damaged["mask"], damaged["image"], damaged["mask"])
    result = scores.result()
    assert result["clean_flagged"] == 0 and result["clean_psnr"] == PSNR_CAP and result["iou"] == 1
    assert result["selection"] == result["hole_psnr"] == PSNR_CAP

    harmful = BlindScores(harm_bound=0.01)
    repainted = torch.zeros_like(intact["mask"])
    repainted[..., :16, :] = 1  # half of an intact photo called damage
    harmful.update(intact["corrupted"] * 0.5, repainted, intact["image"], intact["mask"])
    harmful.update(damaged["image"], damaged["mask"], damaged["image"], damaged["mask"])
    result = harmful.result()
    assert result["clean_flagged"] == 0.5 and result["clean_psnr"] < PSNR_CAP
    assert result["selection"] == pytest.approx(PSNR_CAP - 1000 * (0.5 - 0.01))


def test_the_selection_scores_the_masked_fill_beside_the_blind_one():
    """Users get both modes: the selection score is the mean of the blind and the masked hole
    PSNR, so a fill that helps blind repair but harms a drawn hole cannot win on the blind one."""
    intact, damaged = _batch(True), _batch(False)
    scores = BlindScores(harm_bound=0.01)
    scores.update(damaged["image"], damaged["mask"], damaged["image"], damaged["mask"])  # blind: perfect
    scores.update_masked(damaged["corrupted"], damaged["image"], damaged["mask"])  # masked: the damage left
    scores.update_masked(intact["corrupted"], intact["image"], intact["mask"])  # intact: no hole, ignored
    result = scores.result()
    assert len(scores.values["masked_hole_psnr"]) == 1 and result["masked_hole_psnr"] < 30
    assert result["selection"] == pytest.approx((PSNR_CAP + result["masked_hole_psnr"]) / 2)


def test_the_soft_floor_keeps_faint_doubts_off_intact_pixels():
    predicted = torch.tensor([0.05, 0.2, 0.6]).view(1, 1, 1, 3)
    rule = BlindPipeline(hole_threshold=0.5, dilate=0, soft_floor=0.1).mask_rule(predicted)
    assert rule.flatten().tolist() == pytest.approx([0.0, 0.2, 1.0])
    assert BlindPipeline(soft_floor=0.0, dilate=0).mask_rule(predicted).flatten()[0] == pytest.approx(0.05)
    assert torch.equal(BlindPipeline(soft_floor=0.1).mask_rule(predicted, "denoise"), predicted)  # blind only
    with pytest.raises(Exception, match="soft_floor"):
        BlindPipeline(hole_threshold=0.3, soft_floor=0.4)


def test_the_plain_mask_bce_is_calibrated_and_the_self_adaptive_one_is_not():
    """The minimiser of the loss over a constant logit is m̂ = m for ``bce``; VCNet's self-adaptive
    weights inflate it; the normalised one still teaches "no damage" on an intact image."""
    target = torch.zeros(1, 1, 10, 10)
    target[..., :5, :] = 0.5  # half the image half destroyed

    def best(kind):
        logit = torch.zeros((), requires_grad=True)
        optimiser = torch.optim.SGD([logit], lr=5.0)
        for _ in range(400):
            optimiser.zero_grad()
            mask_bce_loss(logit.expand(1, 1, 5, 10), target[..., :5, :], kind).backward()
            optimiser.step()
        return torch.sigmoid(logit).item()

    assert best("bce") == pytest.approx(0.5, abs=1e-3)
    logit = torch.zeros(1, 1, 4, 4, requires_grad=True)
    normalised_bce(logit, torch.zeros(1, 1, 4, 4)).backward()
    assert (logit.grad > 0).all()  # pushes an intact image's m̂ down
    with pytest.raises(ValueError, match="mask loss"):
        mask_bce_loss(logit, logit, "focal")


def test_detection_metrics_score_intact_images_by_what_is_left_alone():
    target = torch.zeros(2, 1, 4, 4)
    target[1, :, :2] = 1  # image 1 damaged in its top half
    predicted = torch.zeros(2, 1, 4, 4)
    predicted[0, :, 0, :2] = 0.9  # 2 of 16 pixels of the intact image flagged
    predicted[1, :, :2] = 0.9
    metrics = detection_metrics(predicted, target)
    assert metrics["clean_flagged"] == pytest.approx(2 / 16) and metrics["iou"] == 1
    assert metrics["detection"] == pytest.approx((1 - 2 / 16 + 1) / 2)
    assert torch.isnan(detection_metrics(predicted[1:], target[1:])["clean_flagged"])


def test_mask_calibration_compares_mean_prediction_and_truth_by_bin():
    target = torch.rand(1, 1, 16, 16)
    rows = mask_calibration(target, target, bins=4)
    assert sum(r["pixels"] for r in rows) == 256
    assert all(abs(r["mean_predicted"] - r["mean_true"]) < 1e-6 for r in rows if r["pixels"])


def _images(n=4, size=32):
    class Images:
        name = "tiny"

        def __len__(self):
            return n

        def get(self, i, rng=None):
            return torch.full((3, size, size), (i + 1) / (n + 1))

        def describe(self, i):
            return str(i)

    return Images()


def test_a_share_of_samples_is_intact_and_fixed_in_held_out_splits():
    samples = InpaintingSamples(_images(40), None, None, train=False, clean_share=0.5, damage=DamageMix())
    items = [samples[i] for i in range(40)]
    intact = [s for s in items if s["mask"].max() == 0]
    assert 8 < len(intact) < 32
    assert all(torch.equal(s["corrupted"], s["image"]) for s in intact)
    assert all(s["mask"].max() > 0.5 for s in items if s["mask"].max() > 0)
    again = [samples[i]["mask"].max() == 0 for i in range(40)]
    assert again == [s["mask"].max() == 0 for s in items]  # the same samples every epoch
    with pytest.raises(DatasetError, match="clean_share"):
        InpaintingSamples(_images(), None, None, train=True, clean_share=1.0, damage=DamageMix())
    with pytest.raises(DatasetError, match="damage model"):
        InpaintingSamples(_images(), None, None, train=True)


def test_the_adversarial_term_waits_for_the_warm_up():
    module = IPNModule(generator={"width_mult": 0.125}, discriminator={"width_mult": 0.125}, adv_warmup=10)
    assert module.adversarial_weight() == 0.1  # no trainer: validation, or a part of the joint run
    module._trainer = SimpleNamespace(global_step=2 * 9)
    assert module.adversarial_weight() == 0.0
    module._trainer = SimpleNamespace(global_step=2 * 10)
    assert module.adversarial_weight() == 0.1
    module._trainer = None


def test_damage_mix_rng_is_the_only_source_of_randomness():
    image = torch.rand(3, 32, 32)
    a = DamageMix()(image, np.random.default_rng(3), None)
    b = DamageMix()(image, np.random.default_rng(3), None)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_the_floor_pipeline_fills_with_the_ipns_classical_floor():
    """What selection ranks every candidate against: the same pipeline with the IPN's correction
    switched off returns its floor (Telea near the border, pull-push inside) in the hole."""
    from common.classical import classical_fill
    from common.ops import harden_hole
    from epn.module import EPNModule
    from ipn.module import IPNModule
    from pipeline.model import BlindPipeline
    from pipeline.training.selection import floor_pipeline

    torch.manual_seed(0)
    epn = EPNModule(generator={"base_channels": 4, "residual_blocks": 1}, discriminator={"base_channels": 4})
    ipn = IPNModule(generator={"cnum": 8}, discriminator={"cnum": 8})
    torch.nn.init.normal_(ipn.generator.refine.decoder.allconv17.weight, std=0.1)  # a "trained" correction
    pipeline = BlindPipeline(epn=epn, ipn=ipn).eval()
    corrupted, mask = torch.rand(2, 3, 32, 32), torch.zeros(2, 1, 32, 32)
    mask[..., 8:20, 10:24] = 1
    edges = torch.zeros_like(mask)
    floor = floor_pipeline(pipeline)(corrupted, edges, mask, "masked")["output"]
    expected = classical_fill(corrupted, mask, "telea_pull_push")
    assert torch.allclose(floor, expected * harden_hole(mask) + corrupted * (1 - harden_hole(mask)), atol=1e-6)
    assert not torch.allclose(pipeline(corrupted, edges, mask, "masked")["output"], floor)  # the original is untouched
    with pytest.raises(ValueError, match="no floor"):
        floor_pipeline(BlindPipeline(ipn=IPNModule(generator={"cnum": 8}, discriminator={"cnum": 8}, prefill=None)))
