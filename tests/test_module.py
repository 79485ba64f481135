"""The shared Lightning machinery: the GAN step, the non-finite guard, sample grids."""

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from common.errors import NonFiniteLossError
from common.images import labelled_grid, log_grid
from common.losses import AdversarialLoss
from common.module import GANModule, StageModule


class ToyGAN(GANModule):
    """Generator maps noise to 2-D points; the real points sit at (2, 2)."""

    stage_name = "toy"

    def __init__(self, gan_loss="nsgan", lr=1e-4, d2g_lr=0.1, betas=(0.0, 0.9), grad_clip=0.0):
        super().__init__(grad_clip=grad_clip)
        self.save_hyperparameters()
        self.adversarial = AdversarialLoss(gan_loss)
        self.generator = nn.Linear(2, 2)
        self.discriminator = nn.Sequential(nn.Linear(2, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        self.steps = []

    def generate(self, batch):
        return {"fake": self.generator(batch["z"])}

    def discriminator_loss(self, batch, outputs):
        self.steps.append("D")
        real = self.discriminator(torch.full_like(outputs["fake"], 2.0))
        return self.adversarial.discriminator(real, self.discriminator(outputs["fake"])), {}

    def generator_loss(self, batch, outputs):
        self.steps.append("G")
        assert all(not p.requires_grad for p in self.discriminator.parameters())  # D frozen in the G step
        return self.adversarial.generator(self.discriminator(outputs["fake"])), {"mean": outputs["fake"].mean()}

    def validation_metrics(self, batch, outputs):
        return {"distance": (outputs["fake"] - 2).abs().mean()}

    def grid_columns(self, batch, outputs):
        return {}


def _loader(n=64):
    return DataLoader([{"z": torch.randn(2)} for _ in range(n)], batch_size=8)


def _fit(module, steps):
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, _loader())
    return trainer


def test_gan_step_is_d_then_g_with_per_network_learning_rates():
    torch.manual_seed(0)
    gan = ToyGAN(gan_loss="hinge", lr=1e-2, d2g_lr=0.1, betas=(0.5, 0.999))
    opt_g, opt_d = gan.configure_optimizers()
    assert opt_g.param_groups[0]["lr"] == 1e-2 and opt_d.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert opt_g.param_groups[0]["betas"] == (0.5, 0.999)
    before = gan.generator(torch.zeros(1, 2)).detach()
    trainer = _fit(gan, 40)
    # Lightning counts every optimizer step in manual mode: 40 global steps = 20 D+G iterations
    assert trainer.global_step == 40
    assert gan.steps == ["D", "G"] * 20
    after = gan.generator(torch.zeros(1, 2)).detach()
    assert (after - 2).abs().mean() < (before - 2).abs().mean()  # the generator moved towards the data


def test_gradient_clipping_is_applied_by_hand():
    torch.manual_seed(0)
    gan = ToyGAN(lr=1.0, betas=(0.0, 0.0), grad_clip=1e-3)
    seen = []
    original = gan.optimise

    def spy(optimizer, loss, what="loss"):
        original(optimizer, loss, what)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        seen.append(torch.norm(torch.stack([p.grad.norm() for p in params])).item())

    gan.optimise = spy
    _fit(gan, 4)
    assert seen and max(seen) <= 1e-3 * 1.01


class NaNModule(StageModule):
    """A one-optimizer stage (the MPN's shape) whose loss is NaN at ``bad_steps``: the base class's
    training step skips those."""

    stage_name = "nan"

    def __init__(self, bad_steps):
        super().__init__(max_nonfinite=3)
        self.generator, self.bad_steps, self.calls = nn.Linear(2, 1), bad_steps, 0

    def generate(self, batch):
        return {"out": self.generator(batch["z"])}

    def generator_loss(self, batch, outputs):
        self.calls += 1
        loss = outputs["out"].pow(2).mean()
        return (loss * float("nan") if self.calls in self.bad_steps else loss), {}

    def validation_metrics(self, batch, outputs):
        return {}

    def grid_columns(self, batch, outputs):
        return {}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_isolated_nan_steps_are_skipped_and_weights_stay_finite():
    module = NaNModule(bad_steps={2, 5})
    _fit(module, 6)
    assert all(torch.isfinite(p).all() for p in module.parameters())


class NaNGradientModule(NaNModule):
    """A finite loss whose gradients are NaN at ``bad_steps`` (what a faulty bf16 kernel gives)."""

    def generator_loss(self, batch, outputs):
        self.calls += 1
        if self.calls in self.bad_steps:
            outputs["out"].register_hook(lambda grad: grad * float("nan"))
        return outputs["out"].pow(2).mean(), {}


def test_a_finite_loss_with_nan_gradients_is_skipped_too():
    module = NaNGradientModule(bad_steps={2, 5})
    start = [p.detach().clone() for p in module.parameters()]
    _fit(module, 6)
    assert module.nonfinite_steps == 2
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(module.parameters(), start))  # the good steps stepped


def test_with_a_gradient_scaler_its_own_skip_handles_nan_gradients():
    """fp16's GradScaler skips a step with inf/NaN gradients and lowers its scale: the module's
    own gradient check stands aside, or the scale would never come down."""
    from lightning.pytorch.plugins.precision import MixedPrecision

    module = NaNGradientModule(bad_steps={2, 5})
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer = L.Trainer(
        max_steps=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
    )
    trainer.fit(module, _loader())
    assert module.nonfinite_steps == 0 and scaler.get_scale() < 2.0**16
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_persistent_nan_stops_with_a_clear_error():
    with pytest.raises(NonFiniteLossError, match="NaN/inf for 3 steps in a row"):
        _fit(NaNModule(bad_steps=set(range(2, 100))), 20)


def test_labelled_grid_and_logging(tmp_path):
    cols = {"a": torch.rand(5, 3, 16, 16), "mask": torch.rand(5, 1, 16, 16)}
    grid = labelled_grid(cols, max_rows=3)
    assert grid.shape == (3, 3 * 18 + 2 + 14, 2 * 18 + 2)

    class FakeTB:
        def __init__(self):
            self.images = []
            self.experiment = self

        def add_image(self, tag, img, step):
            self.images.append((tag, tuple(img.shape), step))

    FakeTB.__name__ = "TensorBoardLogger"
    tb = FakeTB()

    class Trainer:
        is_global_zero, global_step, default_root_dir, loggers = True, 7, str(tmp_path), [tb]

    path = log_grid(Trainer(), "val/x", grid)
    assert path == tmp_path / "samples" / "val_x_0000007.png" and path.exists()
    assert tb.images == [("val/x", tuple(grid.shape), 7)]


def test_grids_reach_real_tensorboard_and_offline_wandb_loggers(tmp_path, monkeypatch):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = [
        CSVLogger(tmp_path, name="csv"),
        TensorBoardLogger(tmp_path, name="tb"),
        WandbLogger(project="blindfill-test", save_dir=str(tmp_path), offline=True),
    ]

    class Trainer:
        is_global_zero, global_step, default_root_dir = True, 3, str(tmp_path)

    Trainer.loggers = loggers
    grid = labelled_grid({"a": torch.rand(2, 3, 16, 16)})
    assert log_grid(Trainer(), "val/grid", grid).exists()  # the PNG the CSV logger relies on
    loggers[1].experiment.flush()
    assert list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    loggers[2].experiment.finish()
    assert list(tmp_path.rglob("media/images/val/grid_*.png"))


def test_spectral_norm_helpers():
    from common.layers import init_normal, sn_conv2d, sn_conv_transpose2d

    conv = sn_conv2d(3, 8, 4, stride=2, padding=1)
    assert conv.bias is None and hasattr(conv, "parametrizations")
    plain = sn_conv2d(3, 8, 3, use_sn=False)
    assert plain.bias is not None and not hasattr(plain, "parametrizations")
    up = sn_conv_transpose2d(8, 4, 4, stride=2, padding=1)
    assert up(conv(torch.rand(1, 3, 16, 16))).shape == (1, 4, 16, 16)
    # the normalised weight has spectral norm ~1 after a few power iterations
    for _ in range(20):
        conv(torch.rand(1, 3, 16, 16))
    sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, rel=0.05)
    init_normal(conv, std=0.02)
    assert conv.parametrizations.weight.original.std().item() == pytest.approx(0.02, rel=0.3)


def test_a_gan_module_must_define_its_losses():
    class Incomplete(GANModule):
        def generate(self, batch):
            return {}

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()
