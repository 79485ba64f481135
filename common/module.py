"""LightningModule bases every stage builds on: :class:`StageModule` (non-finite-loss guard,
validation grids) and :class:`GANModule` (the one GAN training step: D then G, manual
optimisation, per-network Adam settings, gradient clipping by hand)."""

from __future__ import annotations

import abc
from collections.abc import Mapping

import lightning as L
import torch
from torch import nn

from common.checkpoint import STAGE_KEY
from common.images import labelled_grid, log_grid
from common.losses import AdversarialLoss


class ConfigError(ValueError):
    """A configuration value that cannot work (reported in one line by the CLIs)."""


class NonFiniteLossError(RuntimeError):
    """The loss was NaN or infinite for too many steps in a row."""


class StageModule(L.LightningModule):
    """Shared behaviour of the stage modules.

    ``check_finite(loss)`` returns False for a NaN / infinite loss, so the step is skipped
    (weights untouched); ``max_nonfinite`` such steps in a row stop training with a clear error
    instead of silently training on garbage.
    """

    stage_name = "stage"

    def __init__(self, max_nonfinite: int = 10, grid_rows: int = 8):
        super().__init__()
        self.max_nonfinite, self.grid_rows = max_nonfinite, grid_rows
        self._nonfinite_in_a_row = 0
        self._frozen: dict[str, nn.Module] = {}

    def attach_frozen(self, name: str, module: nn.Module | None) -> None:
        """Keep a trained, frozen network (an earlier stage) beside this one. It is not a
        submodule: it is never trained and not saved in this stage's checkpoints."""
        if module is not None:
            self._frozen[name] = module.eval().requires_grad_(False)

    def frozen(self, name: str) -> nn.Module | None:
        """The frozen network ``name`` on this module's device and in eval mode, or None."""
        module = self._frozen.get(name)
        return None if module is None else module.to(self.device).eval()

    @torch.no_grad()
    def predicted_mask(self, batch: dict) -> torch.Tensor:
        """The mask this stage works with ``(B, 1, H, W)``: a frozen MPN's m̂ when one is attached
        (``mask_source=mpn``), else the true m of the batch."""
        mpn = self.frozen("mask_predictor")
        return batch["mask"] if mpn is None else mpn(batch["corrupted"])

    def check_finite(self, loss: torch.Tensor, what: str = "loss") -> bool:
        if torch.isfinite(loss).all():
            self._nonfinite_in_a_row = 0
            return True
        self._nonfinite_in_a_row += 1
        self.print(f"warning: {self.stage_name} {what} is {loss.item()} at step {self.global_step}; step skipped")
        if self._nonfinite_in_a_row >= self.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.stage_name}: the {what} was NaN/inf for {self._nonfinite_in_a_row} steps in a row "
                f"(last at step {self.global_step}); lower the learning rate, try precision=32-true, "
                f"or check the data. Resume from the last good checkpoint with ckpt_path=..."
            )
        return False

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[STAGE_KEY] = {"stage": self.stage_name}

    def log_grid(self, tag: str, columns: Mapping[str, torch.Tensor]) -> None:
        """Save and log a sample grid of ``columns`` (each ``(B, C, H, W)``) for this step."""
        log_grid(self._trainer, tag, labelled_grid(dict(columns), max_rows=self.grid_rows))


class GANModule(StageModule, abc.ABC):
    """A generator trained against a discriminator: subclasses set ``self.generator`` and
    ``self.discriminator`` and implement

    - ``generate(batch) -> dict`` of generator outputs (with gradients),
    - ``discriminator_loss(batch, outputs) -> (loss, logs)`` on detached outputs,
    - ``generator_loss(batch, outputs) -> (loss, logs)``.

    One training step: D on real vs detached fake, then G with D's weights frozen
    (``toggle_optimizer``). Adam per network (EdgeConnect: lr 1e-4, betas (0, 0.9), D lr ×0.1;
    DeepFill v2: lr 1e-4, betas (0.5, 0.999)). Lightning does not clip gradients in manual
    optimisation, so ``grad_clip`` (max norm, 0 = off) is applied here. Lightning counts each
    optimizer's step in ``global_step``, so one D+G iteration advances it by 2.
    """

    generator: nn.Module
    discriminator: nn.Module

    def __init__(
        self,
        gan_loss: str = "nsgan",
        lr: float = 1e-4,
        d2g_lr: float = 0.1,
        betas: tuple[float, float] = (0.0, 0.9),
        grad_clip: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.adversarial = AdversarialLoss(gan_loss)
        self.lr, self.d2g_lr, self.betas, self.grad_clip = lr, d2g_lr, tuple(betas), grad_clip

    def generator_parameters(self):
        return self.generator.parameters()

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator_parameters(), lr=self.lr, betas=self.betas)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr * self.d2g_lr, betas=self.betas)
        return [opt_g, opt_d]

    @abc.abstractmethod
    def generate(self, batch: dict) -> dict:
        """Generator outputs for ``batch`` (with gradients)."""

    @abc.abstractmethod
    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """D's loss on real data vs the detached ``outputs``, and extra values to log."""

    @abc.abstractmethod
    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """G's loss (adversarial and reconstruction terms), and extra values to log."""

    def _optimise(self, optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        opt_g, opt_d = self.optimizers()
        outputs = self.generate(batch)

        detached = {k: v.detach() if torch.is_tensor(v) else v for k, v in outputs.items()}
        d_loss, d_logs = self.discriminator_loss(batch, detached)
        if self.check_finite(d_loss, "discriminator loss"):
            self._optimise(opt_d, d_loss)

        self.toggle_optimizer(opt_g)  # D's parameters stop collecting gradients during the G step
        g_loss, g_logs = self.generator_loss(batch, outputs)
        if self.check_finite(g_loss, "generator loss"):
            self._optimise(opt_g, g_loss)
        self.untoggle_optimizer(opt_g)

        size = _batch_size(batch)
        logs = {"d_loss": d_loss, "g_loss": g_loss, **d_logs, **g_logs}
        self.log_dict({f"train/{k}": torch.as_tensor(v).detach().float() for k, v in logs.items()}, batch_size=size)
        self.log("g", g_loss.detach(), prog_bar=True, logger=False, batch_size=size)


def _batch_size(batch: dict) -> int:
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
