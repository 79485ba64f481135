"""LightningModule bases every stage builds on: :class:`StageModule` (the shape every stage has,
the non-finite-loss guard, validation logging and grids) and :class:`GANModule` (the one GAN
training step: D then G, manual optimisation, per-network Adam settings, gradient clipping).

Every stage has the same shape, so knowing one means knowing all:

- ``generator``: its network (``discriminator`` too for a GAN stage);
- ``forward(...)``: the network on the tensors the pipeline hands it, returning a dict of named
  outputs (``(B, C, H, W)`` tensors), built with the stage's one inputs builder
  (``generator_inputs``);
- ``generate(batch)``: ``forward`` on a training batch, with what the earlier stages give this one
  (:meth:`StageModule.fed`);
- ``generator_loss(batch, outputs)`` and ``validation_metrics(batch, outputs)``.

``training_only`` names the constructor arguments that build parts used only in training (the
discriminator, a VGG loss network, the feed): the one loader (:mod:`common.checkpoint`) builds a
model for inference without them, whatever a file says.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping

import lightning as L
import torch
from torch import nn

from common.checkpoint import stage_record
from common.errors import ConfigError, NonFiniteLossError
from common.images import labelled_grid, log_grid

Feed = Callable[[dict], dict]


class StageModule(L.LightningModule, abc.ABC):
    """Shared behaviour of the stage modules (see the module docstring for the shape).

    ``feed``: a callable ``batch -> {"mask": ..., "predicted_edges": ...}`` giving what the earlier
    stages hand this one (``pipeline.model.StageFeed``: the blind pipeline up to this stage, with the
    truth in place of stages that are not given). It is attached, not a submodule: never trained,
    never saved. ``check_finite(loss)`` returns False for a NaN / infinite loss, so the step is
    skipped (weights untouched); ``max_nonfinite`` such steps in a row stop training with a clear
    error instead of silently training on garbage.
    """

    stage_name = "stage"
    training_only: tuple[str, ...] = ()
    generator: nn.Module

    def __init__(self, feed: Feed | None = None, max_nonfinite: int = 10, grid_rows: int = 8):
        super().__init__()
        self.max_nonfinite, self.grid_rows = max_nonfinite, grid_rows
        self._nonfinite_in_a_row = 0
        self._frozen: dict[str, nn.Module | Callable] = {}
        self.attach_frozen("feed", feed)

    # -- what the stage is fed

    def attach_frozen(self, name: str, module: nn.Module | Callable | None) -> None:
        """Keep a helper (a frozen network, the feed) beside this module. It is not a submodule:
        it is never trained and not saved in checkpoints; it follows the module's device."""
        if module is None:
            self._frozen.pop(name, None)
            return
        if isinstance(module, nn.Module):
            module.eval().requires_grad_(False)
        self._frozen[name] = module

    def frozen(self, name: str) -> nn.Module | Callable | None:
        """The attached helper ``name`` on this module's device (eval mode), or None."""
        module = self._frozen.get(name)
        if isinstance(module, nn.Module):
            module.to(self.device).eval()
        return module

    @torch.no_grad()
    def fed(self, batch: dict) -> dict:
        """What the earlier stages give this one for ``batch`` (see ``feed``)."""
        feed = self.frozen("feed")
        if feed is None:
            raise ConfigError(
                f"{self.stage_name}: no feed is attached, so nothing says which mask and edges this stage "
                "learns on; build it with feed=pipeline.model.StageFeed(...) (the stage configs do)"
            )
        return feed(batch)

    # -- the stage's shape

    @abc.abstractmethod
    def generate(self, batch: dict) -> dict:
        """The stage's outputs for a training batch (with gradients)."""

    @abc.abstractmethod
    def generator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """The generator's loss on ``outputs`` and the parts to log."""

    @abc.abstractmethod
    def validation_metrics(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        """Scores of ``outputs`` against the truth, logged as ``val/<name>``."""

    @abc.abstractmethod
    def grid_columns(self, batch: dict, outputs: dict) -> dict[str, torch.Tensor]:
        """Named ``(B, C, H, W)`` columns of the validation grid."""

    def generator_parameters(self):
        return self.generator.parameters()

    # -- training and validation

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

    def training_step(self, batch: dict, batch_idx: int):
        """One optimizer (the generator's): Lightning runs backward and the step."""
        loss, parts = self.generator_loss(batch, self.generate(batch))
        if not self.check_finite(loss):
            return None  # Lightning skips backward and the optimizer step
        size = batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=size)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        metrics = self.validation_metrics(batch, outputs)
        # A NaN says "not measurable on this batch" (no intact image, an empty hole): it is left
        # out rather than poisoning the epoch mean.
        measured = {f"val/{k}": v for k, v in metrics.items() if not torch.isnan(torch.as_tensor(v)).all()}
        self.log_dict(measured, prog_bar=True, batch_size=batch_size(batch))
        if batch_idx == 0:
            self.log_grid(f"val/{self.stage_name}", self.grid_columns(batch, outputs))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint.update(stage_record(self.stage_name))

    def log_grid(self, tag: str, columns: Mapping[str, torch.Tensor]) -> None:
        """Save and log a sample grid of ``columns`` (each ``(B, C, H, W)``) for this step."""
        log_grid(self._trainer, tag, labelled_grid(dict(columns), max_rows=self.grid_rows))


class GANModule(StageModule):
    """A generator trained against a discriminator: subclasses set ``self.generator`` and
    ``self.discriminator`` (None in a model built for inference) and implement, besides the
    stage's shape, ``discriminator_loss(batch, outputs) -> (loss, logs)`` on detached outputs.

    One training step: D on real vs detached fake, then G with D's weights frozen
    (``toggle_optimizer``). The default optimizers are Adam per network from the subclass's
    ``lr``, ``d2g_lr`` (D's rate relative to G's) and ``betas`` hyper-parameters (EdgeConnect:
    1e-4, 0.1, (0, 0.9); DeepFill v2: 1e-4, 1, (0.5, 0.999)). Lightning does not clip gradients in
    manual optimisation, so ``grad_clip`` (max norm, 0 = off) is applied here. Lightning counts each
    optimizer's step in ``global_step``, so one D+G iteration advances it by 2.
    """

    training_only = ("discriminator", "feed")
    discriminator: nn.Module | None

    def __init__(self, grad_clip: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.automatic_optimization = False
        self.grad_clip = grad_clip

    def configure_optimizers(self):
        if self.discriminator is None:
            raise ConfigError(f"{self.stage_name} was built for inference (no discriminator); it cannot train")
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator_parameters(), lr=hp.lr, betas=tuple(hp.betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.lr * hp.d2g_lr, betas=tuple(hp.betas))
        return [opt_g, opt_d]

    def adversarial_weight(self) -> float:
        """The weight of the generator's adversarial term now: the ``adv_weight`` hyper-parameter,
        or 0 during the first ``adv_warmup`` training iterations (reconstruction only; D still
        learns). Outside its own training (validation, or as a part of the joint run) the full weight."""
        hp = self.hparams
        if not self.training or self._trainer is None:
            return hp.adv_weight
        return hp.adv_weight if self.global_step // 2 >= hp.get("adv_warmup", 0) else 0.0  # 2 steps: D, G

    @abc.abstractmethod
    def discriminator_loss(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """D's loss on real data vs the detached ``outputs``, and extra values to log."""

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

        size = batch_size(batch)
        logs = {"d_loss": d_loss, "g_loss": g_loss, **d_logs, **g_logs}
        self.log_dict({f"train/{k}": torch.as_tensor(v).detach().float() for k, v in logs.items()}, batch_size=size)
        self.log("g", g_loss.detach(), prog_bar=True, logger=False, batch_size=size)


def batch_size(batch: dict) -> int:
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
