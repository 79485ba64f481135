import math

import pytest
import torch

from common.losses import AdversarialLoss, feature_matching_loss, self_adaptive_bce


def test_hinge_matches_deepfill_v2():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 3.0])
    loss = AdversarialLoss("hinge")
    # D = 0.5·mean(relu(1 − real)) + 0.5·mean(relu(1 + fake)) = 0.5·(0 + .5 + 2)/3 + 0.5·(0 + 1 + 4)/3
    assert loss.discriminator(real, fake).item() == pytest.approx(0.5 * 2.5 / 3 + 0.5 * 5 / 3)
    assert loss.generator(fake).item() == pytest.approx(-1 / 3)


def test_nsgan_is_bce_on_logits():
    loss = AdversarialLoss("nsgan")
    zero = torch.zeros(4)
    assert loss.generator(zero).item() == pytest.approx(math.log(2))
    assert loss.discriminator(zero, zero).item() == pytest.approx(math.log(2))
    big = torch.full((4,), 20.0)
    assert loss.discriminator(big, -big).item() < 1e-6


def test_lsgan_squares():
    loss = AdversarialLoss("lsgan")
    assert loss.discriminator(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(1.0)
    assert loss.generator(torch.tensor([0.5])).item() == pytest.approx(0.25)


def test_unknown_gan_loss_is_a_clear_error():
    with pytest.raises(ValueError, match="expected one of"):
        AdversarialLoss("wgan")


def test_feature_matching_sums_l1_per_layer_and_detaches_real():
    real = [torch.zeros(2, 3, requires_grad=True), torch.ones(4)]
    fake = [torch.ones(2, 3, requires_grad=True), torch.ones(4) * 3]
    loss = feature_matching_loss(real, fake)
    assert loss.item() == pytest.approx(1.0 + 2.0)
    loss.backward()
    assert real[0].grad is None and fake[0].grad is not None


def test_self_adaptive_bce_weights_the_hole_by_known_over_destroyed():
    target = torch.zeros(1, 1, 2, 2)
    target[..., 0, 0] = 1.0  # 1 destroyed, 3 known -> positive weight 3
    logits = torch.zeros(1, 1, 2, 2)
    expected = (3 * math.log(2) + 3 * math.log(2)) / 4
    assert self_adaptive_bce(logits, target).item() == pytest.approx(expected)
    # a clean image (no hole) does not blow up
    assert torch.isfinite(self_adaptive_bce(logits, torch.zeros(1, 1, 2, 2)))
