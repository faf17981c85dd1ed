"""The trainer both methods run under: nerfstudio's ``Trainer``, reached through the method's ``TrainerConfig``.

A subclass so that what the methods need of the training loop (reliability: resume, divergence, Ctrl-C; speed: the
lean step) lives in one named place instead of being patched into nerfstudio.

The lean step (issue 11, :meth:`SplatTrainer.train_iteration`) is nerfstudio's ``train_iteration`` without its
per-step host work: no autocast context when mixed precision is off, no learning-rate scalars written outside the
logging steps (nerfstudio's ``Optimizers.scheduler_step_all`` queues one per scheduler every step, and every queued
scalar goes to TensorBoard in the same step), no gradient norms outside the logging steps, and no training metrics
outside the logging steps (the model's ``train_metrics_due``). Optimisers, gradient accumulation
(``gradient_accumulation_steps``, e.g. ``{"features_rest": 16}`` for FastGS's sparse SH-rest schedule), grad scaler
and schedulers behave as nerfstudio's. Checkpoints keep nerfstudio's layout (``optimizers``: one
``state_dict`` per key, see :mod:`splat_core.optimizers`).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Type, cast

import torch
from nerfstudio.engine.trainer import TRAIN_INTERATION_OUTPUT, Trainer, TrainerConfig
from nerfstudio.utils import profiler, writer
from nerfstudio.utils.misc import step_check


@dataclass
class SplatTrainerConfig(TrainerConfig):
    """nerfstudio's ``TrainerConfig`` (every ``ns-train`` flag still applies) for :class:`SplatTrainer`."""

    _target: Type = field(default_factory=lambda: SplatTrainer)


class SplatTrainer(Trainer):
    """nerfstudio's ``Trainer`` for the splatting methods. See the module docstring."""

    config: SplatTrainerConfig

    def is_log_step(self, step: int) -> bool:
        """Whether nerfstudio's loop writes the training loss and metrics at ``step`` (``Trainer.train``'s check)."""
        return step_check(step, self.config.logging.steps_per_log, run_at_zero=True)

    @profiler.time_function
    def train_iteration(self, step: int) -> TRAIN_INTERATION_OUTPUT:
        """One optimisation step, as nerfstudio's, with per-step logging work only on logging steps.

        Returns:
            ``(loss, loss_dict, metrics_dict)``; ``metrics_dict`` is empty between logging steps for models with
            ``train_metrics_due`` (:class:`splat_core.model.SplatModel`), which the loop writes only on those steps.
        """
        log_step = self.is_log_step(step)
        model = self.pipeline.model
        if hasattr(model, "train_metrics_due"):
            model.train_metrics_due = log_step
        groups = list(self.optimizers.parameters.keys())
        accumulate = self.gradient_accumulation_steps
        self.optimizers.zero_grad_some([g for g in groups if step % accumulate[g] == 0])

        with self._autocast():
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = functools.reduce(torch.add, loss_dict.values())
        (self.grad_scaler.scale(loss) if self.use_grad_scaler else loss).backward()  # type: ignore
        needs_step = [g for g in groups if step % accumulate[g] == accumulate[g] - 1]
        self.optimizers.optimizer_scaler_step_some(self.grad_scaler, needs_step)

        if self.config.log_gradients and log_step:
            total_grad = 0
            for tag, value in self.pipeline.model.named_parameters():
                assert tag != "Total"
                if value.grad is not None:
                    grad = value.grad.norm()
                    metrics_dict[f"Gradients/{tag}"] = grad  # type: ignore
                    total_grad += grad
            metrics_dict["Gradients/Total"] = cast(torch.Tensor, total_grad)  # type: ignore

        if self.use_grad_scaler:
            # get_scale() reads the scale back from the GPU; only with a grad scaler, as nerfstudio
            scale = self.grad_scaler.get_scale()
            self.grad_scaler.update()
            if scale <= self.grad_scaler.get_scale():  # a skipped optimiser step keeps the schedule where it is
                self._step_schedulers(step, log_step)
        else:
            self._step_schedulers(step, log_step)
        return loss, loss_dict, metrics_dict  # type: ignore

    def _autocast(self) -> contextlib.AbstractContextManager:
        """nerfstudio's autocast context when mixed precision is on, else nothing to enter."""
        if not self.mixed_precision:
            return contextlib.nullcontext()
        device_type = self.device.split(":")[0]
        return torch.autocast(device_type="cpu" if device_type == "mps" else device_type, enabled=True)

    def _step_schedulers(self, step: int, log_step: bool) -> None:
        """``Optimizers.scheduler_step_all``, writing the learning rates on logging steps only."""
        for name, scheduler in self.optimizers.schedulers.items():
            scheduler.step()
            if log_step:
                writer.put_scalar(name=f"learning_rate/{name}", scalar=scheduler.get_last_lr()[0], step=step)
