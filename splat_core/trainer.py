"""The trainer both methods run under: nerfstudio's ``Trainer``, reached through the method's ``TrainerConfig``.

A subclass so that what the methods need of the training loop (reliability: resume, divergence, Ctrl-C; speed: the
lean step) lives in one named place instead of being patched into nerfstudio. What it changes, against nerfstudio
1.1.5's ``engine/trainer.py``:

- **Resume** (``--load-dir`` / ``--load-checkpoint``): splatfacto's ``load_state_dict`` replaces the Gaussian
  Parameters after the optimizers were built on the old ones, so nerfstudio's resume went on stepping tensors the
  model no longer uses (nothing trained, and the first refinement indexed past the end). The optimizers are rebuilt on
  the loaded Parameters before their state (Adam moments, aligned row for row with the saved Gaussians) is loaded.
  The strategy state and the guidance state ride in the model's state dict (``SplatModel.get_extra_state``).
- **Divergence**: every step records on the device, without a host sync, the first step at which the loss or the
  parameters held a non-finite value (:class:`FiniteMonitor`). It is read every ``check_finite_every`` steps and
  before every save; a diverged run stops with one line naming that step, what went non-finite and the largest
  learning rates, and no checkpoint of it is written (the last good one stays). A run whose Gaussians all left the
  view (backward raises ``element 0 of tensors does not require grad``) stops the same way.
- **Ctrl-C**: SIGINT during training finishes the current step, saves a checkpoint of it, prints its path on one line
  and exits with status 130 (a second Ctrl-C stops at once, without saving).
- **Checkpoints** are written to a temporary name and renamed, so an interrupted save never replaces the previous one.
- **Output folder**: an ``--output-dir`` that cannot be created (e.g. under a regular file) is one line.
- **Lean step** (:meth:`SplatTrainer.train_iteration`): nerfstudio's ``train_iteration`` without its
  per-step host work: no autocast context when mixed precision is off, no learning-rate scalars written outside the
  logging steps (nerfstudio's ``Optimizers.scheduler_step_all`` queues one per scheduler every step, and every queued
  scalar goes to TensorBoard in the same step), no gradient norms outside the logging steps, and no training metrics
  outside the logging steps (the model's ``train_metrics_due``). Optimisers, gradient accumulation
  (``gradient_accumulation_steps``, e.g. ``{"features_rest": 16}`` for FastGS's sparse SH-rest schedule), grad scaler
  and schedulers behave as nerfstudio's; the fused Adams step through torch's fused kernel without
  ``Optimizer.step``'s wrapper (:func:`splat_core.optimizers.step_fused_adams`, same values). Checkpoints keep
  nerfstudio's layout (``optimizers``: one ``state_dict`` per key, see :mod:`splat_core.optimizers`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Type, cast

import torch
from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.engine.trainer import TRAIN_INTERATION_OUTPUT, Trainer, TrainerConfig
from nerfstudio.utils import comms, profiler, writer
from nerfstudio.utils.misc import step_check
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.utils.writer import EventName, TimeWriter
from torch import Tensor

from splat_core.compat import CheckpointError, find_checkpoint, load_checkpoint_file
from splat_core.optimizers import clear_gradients, step_fused_adams

INTERRUPTED_EXIT_STATUS = 130
"""Exit status after Ctrl-C (128 + SIGINT), as a shell reports a process killed by it."""


class TrainingStopped(SystemExit):
    """Training cannot go on (diverged, nothing left in view, output folder unusable): exits with status 1 and this
    one line (no traceback) when uncaught, like :class:`~splat_core.data.scene_dataparser.SceneDataError`."""

    def __init__(self, message: str):
        super().__init__(f"error: {' '.join(message.split())}")


@dataclass
class SplatTrainerConfig(TrainerConfig):
    """nerfstudio's ``TrainerConfig`` (every ``ns-train`` flag still applies) for :class:`SplatTrainer`."""

    _target: Type = field(default_factory=lambda: SplatTrainer)
    check_finite_every: int = 100
    """Read the on-device non-finite record every this many steps (and always before a save), in steps; the run
    stops within this many steps of diverging. 0 checks only before saves."""

    def save_config(self) -> None:
        """nerfstudio's ``save_config`` (ns-train calls it first), with one line when the run folder cannot be made.

        Raises:
            TrainingStopped: ``--output-dir`` (or a folder above it) is a regular file, or is not writable.
        """
        try:
            super().save_config()
        except (NotADirectoryError, FileExistsError, PermissionError) as err:
            blocker = next((p for p in Path(self.get_base_dir()).parents if p.exists() and not p.is_dir()), None)
            why = f"{blocker} is a file, not a folder" if blocker is not None else f"{type(err).__name__}: {err}"
            raise TrainingStopped(f"cannot create the run folder {self.get_base_dir()} ({why}); choose another "
                                  "--output-dir") from None


class FiniteMonitor:
    """Where the loss or the parameters first went non-finite, recorded on the device (no host sync per step).

    :meth:`observe` costs about ten small kernels per step: one multi-tensor norm over every parameter, summed (a
    norm overflows to ``inf`` only for values beyond ~1e19, which is divergence too), and two ``isfinite`` checks,
    the loss's and the parameters'. Which groups went non-finite is worked out only when the record is read
    (:meth:`first_non_finite`, one sync), from the parameters as they are then: per-group records cost three times
    the kernels every step, for a name the read can find itself.
    """

    def __init__(self) -> None:
        self._first: Optional[Tensor] = None  # [2] int64: first non-finite step of the loss, of the parameters; -1 none
        self._groups: Dict[str, List[Tensor]] = {}

    def observe(self, step: int, loss: Optional[Tensor], groups: Dict[str, List[Tensor]]) -> None:
        """Record ``step`` if the loss or any parameter is non-finite now and was not before.

        Args:
            step: training step just taken.
            loss: the step's total loss (scalar) or None.
            groups: optimizer group name -> its current parameters (any shapes, one device); kept for the read.
        """
        tensors = [p for params in groups.values() for p in params]
        if not tensors:
            return
        self._groups = groups
        with torch.no_grad():
            total = torch.stack(torch._foreach_norm(tensors)).sum().float()
            if self._first is None:
                self._first = torch.full((2,), -1, dtype=torch.long, device=total.device)
            loss_value = total.new_zeros(()) if loss is None else loss.reshape(()).to(total)  # no loss: finite
            values = torch.stack((loss_value, total))
            self._first = torch.where(torch.isfinite(values) | (self._first >= 0), self._first, step)

    def first_non_finite(self) -> Optional[tuple]:
        """``(step, [names])`` of the earliest non-finite record, or None if all finite. The names are ``"loss"`` if
        the loss went non-finite at that step, and the parameter groups holding a non-finite value now if the
        parameters did (``"parameters"`` if none holds one any more)."""
        if self._first is None:
            return None
        loss_step, params_step = self._first.tolist()
        seen = [s for s in (loss_step, params_step) if s >= 0]
        if not seen:
            return None
        step = min(seen)
        names = ["loss"] if loss_step == step else []
        if params_step == step:
            bad = [name for name, params in self._groups.items()
                   if any(not bool(torch.isfinite(p.detach()).all()) for p in params)]
            names += bad or ["parameters"]
        return step, names

    def reset(self) -> None:
        self._first = None


class SplatTrainer(Trainer):
    """nerfstudio's ``Trainer`` for the splatting methods. See the module docstring."""

    config: SplatTrainerConfig

    def __init__(self, config: SplatTrainerConfig, local_rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, local_rank, world_size)
        self._finite = FiniteMonitor()
        self._interrupted = False
        self._last_checkpoint: Optional[Path] = None

    def setup(self, test_mode="val") -> None:
        """nerfstudio's set-up; Ctrl-C during it (loading images, the VLM) is one line and status 130."""
        try:
            super().setup(test_mode)
        except KeyboardInterrupt:
            CONSOLE.print("interrupted during set-up, before training started; nothing saved", soft_wrap=True)
            raise SystemExit(INTERRUPTED_EXIT_STATUS) from None

    # ------------------------------------------------------------------ resume
    def _load_checkpoint(self) -> None:
        """Load ``--load-dir`` (latest or ``--load-step``) or ``--load-checkpoint``: pipeline, optimizers on the
        loaded Parameters, schedulers, grad scaler. See the module docstring.

        Raises:
            CheckpointError: the checkpoint is missing, unreadable or not a nerfstudio checkpoint (one line).
        """
        if self.config.load_dir is not None:
            path = find_checkpoint(self.config.load_dir, self.config.load_step)
        elif self.config.load_checkpoint is not None:
            path = Path(self.config.load_checkpoint)
        else:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        state = load_checkpoint_file(path)
        self._start_step = int(state["step"]) + 1
        self.pipeline.load_pipeline(state["pipeline"], state["step"])
        # splatfacto's load_state_dict made new Parameters (sized as saved): build the optimizers on those
        self.optimizers = self.setup_optimizers()
        try:
            self.optimizers.load_optimizers(state["optimizers"])
            if "schedulers" in state and self.config.load_scheduler:
                self.optimizers.load_schedulers(state["schedulers"])
        except (KeyError, ValueError) as err:  # another method's or an older layout's optimizer groups
            raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit this method's optimizers "
                                  f"({type(err).__name__}: {err})") from None
        self.grad_scaler.load_state_dict(state["scalers"])
        self._last_checkpoint = path
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {path}")

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, step: int) -> None:
        """Save pipeline, optimizers, schedulers and scaler as nerfstudio does, after a finite check, atomically.

        Raises:
            TrainingStopped: the loss or a parameter is non-finite (nothing is written; the last good checkpoint
                stays).
        """
        self._stop_if_diverged(step)
        if not comms.is_main_process():  # nerfstudio saves on the main process only (@check_main_thread)
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        partial = path.with_name(f".{path.name}.partial")  # not step-*.ckpt: no loader ever picks it up
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline  # type: ignore
        try:
            torch.save(
                {
                    "step": step,
                    "pipeline": pipeline.state_dict(),
                    "optimizers": {k: v.state_dict() for (k, v) in self.optimizers.optimizers.items()},
                    "schedulers": {k: v.state_dict() for (k, v) in self.optimizers.schedulers.items()},
                    "scalers": self.grad_scaler.state_dict(),
                },
                partial,
            )
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self._last_checkpoint = path
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("step-*.ckpt"):
                if old != path:
                    old.unlink()

    # ------------------------------------------------------------------ divergence
    def _observe_finite(self, step: int, loss: Optional[Tensor]) -> None:
        groups = {name: [p for g in opt.param_groups for p in g["params"]]
                  for name, opt in self.optimizers.optimizers.items()}
        self._finite.observe(step, loss, groups)

    def _largest_lrs(self, names: Optional[List[str]] = None, count: int = 3) -> str:
        lrs = {n: o.param_groups[0]["lr"] for n, o in self.optimizers.optimizers.items() if names is None or n in names}
        top = sorted(lrs.items(), key=lambda kv: -kv[1])[:count]
        return ", ".join(f"{n} {lr:.3g}" for n, lr in top)

    def _kept(self) -> str:
        if self._last_checkpoint is not None and self._last_checkpoint.exists():
            return f"last good checkpoint kept: {self._last_checkpoint}"
        return "no checkpoint had been saved yet"

    def _stop_if_diverged(self, step: int) -> None:
        """Raise :class:`TrainingStopped` when the loss or a parameter went non-finite up to ``step``."""
        found = self._finite.first_non_finite()
        if found is None:
            return
        first, what = found
        groups = [w for w in what if w != "loss"]
        cause = (f"a learning rate set too high (those groups': {self._largest_lrs(groups, len(groups))})" if groups
                 else f"a learning rate set too high (largest: {self._largest_lrs()})")
        self._close_callbacks()
        raise TrainingStopped(
            f"training diverged: {', '.join(what)} became non-finite at step {first} (found at step {step}); "
            f"likely cause: {cause} (--optimizers.<group>.optimizer.lr); nothing was saved from it, {self._kept()}"
        )

    def _stop_all_out_of_view(self, step: int) -> None:
        self._observe_finite(step, None)
        self._stop_if_diverged(step)
        self._close_callbacks()
        raise TrainingStopped(
            f"training stopped at step {step}: every Gaussian left the view, so the loss depends on no parameter; "
            f"likely cause: a learning rate set too high (largest: {self._largest_lrs()}); {self._kept()}"
        )

    # ------------------------------------------------------------------ Ctrl-C
    def _on_sigint(self, signum, frame) -> None:
        self._interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
        CONSOLE.log("[yellow]Ctrl-C: saving a checkpoint after this step (Ctrl-C again to quit without saving)")

    def _close_callbacks(self) -> None:
        """Run the AFTER_TRAIN callbacks (e.g. stop the guidance worker thread) before leaving early."""
        for callback in getattr(self, "callbacks", []):
            callback.run_callback_at_location(step=self.step, location=TrainingCallbackLocation.AFTER_TRAIN)

    def _stop_interrupted(self, last_done: int) -> None:
        """Save ``last_done`` (the last completed step), say where on one line, exit with status 130."""
        writer.write_out_storage()
        if last_done >= self._start_step:
            self.save_checkpoint(last_done)
            message = f"interrupted: saved step {last_done} to {self._last_checkpoint}"
        else:
            message = f"interrupted before a step completed; nothing new saved ({self._kept()})"
        self._close_callbacks()
        CONSOLE.print(message, soft_wrap=True)
        raise SystemExit(INTERRUPTED_EXIT_STATUS)

    # ------------------------------------------------------------------ the loop
    def train(self) -> None:
        """Train the model: nerfstudio 1.1.5's loop plus the finite checks and the Ctrl-C save (module docstring).

        Raises:
            TrainingStopped: the run diverged or every Gaussian left the view (one line, status 1).
            SystemExit: status 130 after Ctrl-C, once the checkpoint of the last completed step is saved.
        """
        assert self.pipeline.datamanager.train_dataset is not None, "Missing DatsetInputs"
        if hasattr(self.pipeline.datamanager, "train_dataparser_outputs"):
            self.pipeline.datamanager.train_dataparser_outputs.save_dataparser_transform(
                self.base_dir / "dataparser_transforms.json"
            )
        self._init_viewer_state()
        on_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, self._on_sigint) if on_main else None
        try:
            self._train_loop()
        finally:
            if on_main:
                signal.signal(signal.SIGINT, previous)
        self._after_train()

    def _train_loop(self) -> None:
        check_every = self.config.check_finite_every
        with TimeWriter(writer, EventName.TOTAL_TRAIN_TIME):
            self.stop_training = False
            for step in range(self._start_step, self._start_step + self.config.max_num_iterations):
                if self._interrupted:
                    self._stop_interrupted(step - 1)
                self.step = step
                if self.stop_training:
                    break
                while self.training_state == "paused":
                    if self.stop_training or self._interrupted:
                        break
                    time.sleep(0.01)
                if self.stop_training:
                    break
                if self._interrupted:
                    self._stop_interrupted(step - 1)
                with self.train_lock:
                    with TimeWriter(writer, EventName.ITER_TRAIN_TIME, step=step) as train_t:
                        self.pipeline.train()
                        for callback in self.callbacks:
                            callback.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
                        try:
                            loss, loss_dict, metrics_dict = self.train_iteration(step)
                        except RuntimeError as err:
                            if "does not require grad" not in str(err):
                                raise
                            self._stop_all_out_of_view(step)
                        self._observe_finite(step, loss)
                        for callback in self.callbacks:
                            callback.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)

                if step > 1:  # nerfstudio skips the first two steps' timings (viewer speed estimate)
                    writer.put_time(
                        name=EventName.TRAIN_RAYS_PER_SEC,
                        duration=self.world_size * self.pipeline.datamanager.get_train_rays_per_batch()
                        / max(0.001, train_t.duration),
                        step=step,
                        avg_over_steps=True,
                    )
                self._update_viewer_state(step)
                if check_every > 0 and step_check(step, check_every):
                    self._stop_if_diverged(step)
                if step_check(step, self.config.logging.steps_per_log, run_at_zero=True):
                    writer.put_scalar(name="Train Loss", scalar=loss, step=step)
                    writer.put_dict(name="Train Loss Dict", scalar_dict=loss_dict, step=step)
                    writer.put_dict(name="Train Metrics Dict", scalar_dict=metrics_dict, step=step)
                    writer.put_scalar(
                        name="GPU Memory (MB)", scalar=torch.cuda.max_memory_allocated() / (1024**2), step=step
                    )
                if self.pipeline.datamanager.eval_dataset:
                    with self.train_lock:
                        self.eval_iteration(step)
                if step_check(step, self.config.steps_per_save):
                    self.save_checkpoint(step)
                writer.write_out_storage()
            if self._interrupted:  # Ctrl-C during the last step
                self._stop_interrupted(self.step)

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
        clear_gradients([self.optimizers.optimizers[g] for g in groups if step % accumulate[g] == 0])

        with self._autocast():
            _, loss_dict, metrics_dict = self.pipeline.get_train_loss_dict(step=step)
            loss = functools.reduce(torch.add, loss_dict.values())
        (self.grad_scaler.scale(loss) if self.use_grad_scaler else loss).backward()  # type: ignore
        needs_step = [g for g in groups if step % accumulate[g] == accumulate[g] - 1]
        self._optimizer_step(needs_step)

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

    def _optimizer_step(self, names: List[str]) -> None:
        """nerfstudio's ``Optimizers.optimizer_scaler_step_some`` for ``names``; without a grad scaler or gradient
        clipping, the fused Adams step through :func:`splat_core.optimizers.step_fused_adams` (same update, less host
        time) and any other optimizer through its own ``step``."""
        clipped = any(self.optimizers.config[n]["optimizer"].max_norm is not None for n in names)
        if self.use_grad_scaler or clipped:
            self.optimizers.optimizer_scaler_step_some(self.grad_scaler, names)
            return
        for optimizer in step_fused_adams([self.optimizers.optimizers[n] for n in names]):
            if any(p.grad is not None for g in optimizer.param_groups for p in g["params"]):
                optimizer.step()

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
