"""LightningModule bases every stage builds on: :class:`StageModule` (the shape every stage has,
the optimisation step, the non-finite-loss guard, validation logging and grids) and
:class:`GANModule` (the one GAN training step: D then G, per-network Adam settings).

Every stage optimises by hand (Lightning's manual optimisation), so one rule holds for all of them,
in one process or in many (DDP): a step whose loss is NaN or infinite on *any* rank is skipped on
every rank (a rank that skipped its backward alone would leave the others waiting in all-reduce),
so is a step whose (all-reduced) gradients are not finite, and gradients are clipped by
``grad_clip``. Validation values are averaged over every sample of every rank
(:class:`common.metrics.EpochMeans`), so the checkpoint is chosen on the whole split.

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
from common.metrics import EpochMeans

Feed = Callable[[dict], dict]


class StageModule(L.LightningModule, abc.ABC):
    """Shared behaviour of the stage modules (see the module docstring for the shape).

    ``feed``: a callable ``batch -> {"mask": ..., "predicted_edges": ...}`` giving what the earlier
    stages hand this one (``pipeline.model.StageFeed``: the blind pipeline up to this stage, with the
    truth in place of stages that are not given). It is attached, not a submodule: never trained,
    never saved. ``check_finite(loss)`` returns False for a NaN / infinite loss on any rank, so the
    step is skipped on all of them (weights untouched); ``max_nonfinite`` such steps in a row stop
    training with a clear error instead of silently training on garbage. Lightning does not clip
    gradients in manual optimisation, so ``grad_clip`` (max norm, 0 = off) is applied here.
    """

    stage_name = "stage"
    training_only: tuple[str, ...] = ()
    generator: nn.Module

    def __init__(self, feed: Feed | None = None, max_nonfinite: int = 10, grid_rows: int = 8, grad_clip: float = 0.0):
        super().__init__()
        self.automatic_optimization = False
        self.max_nonfinite, self.grid_rows, self.grad_clip = max_nonfinite, grid_rows, grad_clip
        self._nonfinite_in_a_row = 0
        self.nonfinite_steps = 0  # steps skipped for a non-finite loss, in this process's run
        self._validation_means = EpochMeans()
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
        """Whether ``loss`` is finite on every rank (the same answer on all of them)."""
        finite = bool(torch.isfinite(loss).all())
        here = finite
        if self._trainer is not None:
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        return self._count_nonfinite(
            finite, what, lambda: "is not finite on another rank" if here else f"is {loss.item()}"
        )

    def _count_nonfinite(self, finite: bool, what: str, value: Callable[[], str]) -> bool:
        """Count a non-finite step (``finite`` False; ``value()`` words it): warn, and stop after
        ``max_nonfinite`` in a row."""
        if finite:
            self._nonfinite_in_a_row = 0
            return True
        self._nonfinite_in_a_row += 1
        self.nonfinite_steps += 1
        self.print(f"warning: {self.stage_name} {what} {value()} at step {self.global_step}; step skipped")
        if self._nonfinite_in_a_row >= self.max_nonfinite:
            raise NonFiniteLossError(
                f"{self.stage_name}: the {what} was NaN/inf for {self._nonfinite_in_a_row} steps in a row "
                f"(last at step {self.global_step}); lower the learning rate, try precision=32-true, "
                f"or check the data. Resume from the last good checkpoint with ckpt_path=..."
            )
        return False

    def optimise(self, optimizer, loss: torch.Tensor, what: str = "loss") -> None:
        """One step of ``optimizer`` on ``loss``: backward (gradients all-reduced under DDP),
        clipping, step. A finite loss can still give non-finite gradients (a bf16 kernel's
        overflow or fault): then the step is skipped and counted as a non-finite loss is. Under
        DDP the gradients are all-reduced, so every rank decides the same without asking. With
        fp16's gradient scaler (``16-mixed`` on a GPU) the scaler is what skips such steps, and
        lowers its scale; it must see them."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and getattr(self.trainer.precision_plugin, "scaler", None) is None:
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            finite = bool(torch.isfinite(norm))
            if not self._count_nonfinite(finite, f"{what} gradient", lambda: f"norm is {norm.item()}"):
                optimizer.zero_grad(set_to_none=True)
                return
        if self.grad_clip > 0:
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
        optimizer.step()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """The generator's loss and one step of its optimizer (skipped on every rank when the
        loss is not finite on one)."""
        loss, parts = self.generator_loss(batch, self.generate(batch))
        if self.check_finite(loss):
            self.optimise(self.optimizers(), loss)
        size = batch_size(batch)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": torch.as_tensor(v).detach().float() for k, v in parts.items()}, batch_size=size)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        # A NaN says "not measurable on this batch" (no intact image, an empty hole): it is left
        # out of the epoch mean rather than poisoning it.
        self._validation_means.update(self.validation_metrics(batch, outputs), batch_size(batch))
        if batch_idx == 0:
            self.log_grid(f"val/{self.stage_name}", self.grid_columns(batch, outputs))

    def on_validation_epoch_start(self) -> None:
        self.share_buffers()
        self._validation_means = EpochMeans()

    def on_train_end(self) -> None:
        self.share_buffers()

    def share_buffers(self) -> None:
        """Rank 0's buffers (batch-norm statistics) on every rank of a distributed run. Each rank's
        last training forward updated its own copy and DDP re-broadcasts them only at the next
        one, so without this the ranks would validate, and end, with different statistics."""
        import torch.distributed as dist

        if self._trainer is None or self.trainer.world_size == 1 or not dist.is_initialized():
            return
        for buffer in self.buffers():
            dist.broadcast(buffer, src=0)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/<name>``: the mean over every validation sample of every rank (the same value
        on each, so each rank's checkpoint callback makes the same choice)."""
        for name, value in self._validation_means.compute(self.device).items():
            self.log(f"val/{name}", value, prog_bar=True, sync_dist=True)  # equal on every rank: the mean is exact

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
    1e-4, 0.1, (0, 0.9); DeepFill v2: 1e-4, 1, (0.5, 0.999)). Lightning counts each
    optimizer's step in ``global_step``, so one D+G iteration advances it by 2.
    """

    training_only = ("discriminator", "feed")
    discriminator: nn.Module | None

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

    def discriminator_step(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """One step of D on real data vs the detached ``outputs``: its loss and logs."""
        opt_d = self.optimizers()[1]
        detached = {k: v.detach() if torch.is_tensor(v) else v for k, v in outputs.items()}
        d_loss, d_logs = self.discriminator_loss(batch, detached)
        if self.check_finite(d_loss, "discriminator loss"):
            self.optimise(opt_d, d_loss, "discriminator")
        return d_loss, {"d_loss": d_loss, **d_logs}

    def generator_step(self, batch: dict, outputs: dict) -> tuple[torch.Tensor, dict]:
        """One step of G with D's weights frozen: its loss and logs."""
        opt_g = self.optimizers()[0]
        self.toggle_optimizer(opt_g)  # D's parameters stop collecting gradients during the G step
        g_loss, g_logs = self.generator_loss(batch, outputs)
        if self.check_finite(g_loss, "generator loss"):
            self.optimise(opt_g, g_loss, "generator")
        self.untoggle_optimizer(opt_g)
        return g_loss, {"g_loss": g_loss, **g_logs}

    def training_step(self, batch: dict, batch_idx: int) -> None:
        outputs = self.generate(batch)
        _, d_logs = self.discriminator_step(batch, outputs)
        g_loss, g_logs = self.generator_step(batch, outputs)
        self.log_training(batch, g_loss, {**d_logs, **g_logs})

    def log_training(self, batch: dict, g_loss: torch.Tensor, logs: dict) -> None:
        size = batch_size(batch)
        self.log_dict({f"train/{k}": torch.as_tensor(v).detach().float() for k, v in logs.items()}, batch_size=size)
        self.log("g", g_loss.detach(), prog_bar=True, logger=False, batch_size=size)


def batch_size(batch: dict) -> int:
    return next(v.shape[0] for v in batch.values() if torch.is_tensor(v))
