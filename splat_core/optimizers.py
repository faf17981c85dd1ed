"""Optimiser and scheduler settings of the Gaussian parameters, shared by both methods' ``TrainerConfig``s.

Every key gets torch's fused Adam (``torch.optim.Adam(fused=True)``: one kernel updates a parameter and both
moments, where the default foreach/for-loop Adam launches about ten). One optimiser per key, as nerfstudio's
``Optimizers`` builds them, rather than one Adam with six param groups: torch's ``Adam.step`` runs
``_fused_adam`` once per param group (``torch/optim/adam.py``), so both launch the same kernels (a step-counter add
and a fused update per key), while one optimiser per key keeps everything else as splatfacto has it: gsplat's
strategy ops (``duplicate``, ``split``, ``remove``, ``reset_opa``) take ``Dict[str, Optimizer]`` with one param
group each, schedulers attach per key, and checkpoints keep nerfstudio's ``{key: optimizer.state_dict()}``
layout. torch's ``Optimizer.load_state_dict`` takes every group setting from the checkpoint, ``fused`` included, so a
checkpoint of an unfused run would resume unfused; :class:`KeepFusedAdam` keeps the configured choice instead (and
moves ``step`` where that choice wants it), so old and new checkpoints resume into fused optimisers and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Type

import torch
import torch.optim.optimizer as torch_optimizer
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig


class KeepFusedAdam(torch.optim.Adam):
    """torch's Adam whose ``fused`` setting survives :meth:`load_state_dict` (torch's takes it from the saved groups)."""

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        """torch's ``load_state_dict``, then each group's own ``fused`` flag back, with ``step`` on the parameter's
        device as float32 for fused Adam, or a CPU scalar tensor for the default one (what ``Adam._init_group``
        creates; a CUDA ``step`` there would cost a ``.item()`` sync per step)."""
        fused = [group["fused"] for group in self.param_groups]
        super().load_state_dict(state_dict)
        for group, is_fused in zip(self.param_groups, fused):
            group["fused"] = is_fused
            for p in group["params"]:
                state = self.state.get(p, {})
                if torch.is_tensor(state.get("step")):
                    device = p.device if is_fused else torch.device("cpu")
                    state["step"] = state["step"].to(device=device, dtype=torch.float32)


def _steps_like_torch(optimizer: torch.optim.Optimizer) -> bool:
    """Whether :func:`step_fused_adams` can step ``optimizer`` exactly as ``optimizer.step()`` would: a torch ``Adam``
    with every group fused on one device and dtype, float learning rate, no AMSGrad, not differentiable or
    capturable, no step hooks, and Adam state already made for every parameter that has a gradient (the first step
    makes it, through ``optimizer.step()``)."""
    hooks = (optimizer._optimizer_step_pre_hooks, optimizer._optimizer_step_post_hooks,
             torch_optimizer._global_optimizer_pre_hooks, torch_optimizer._global_optimizer_post_hooks)
    if not isinstance(optimizer, torch.optim.Adam) or any(hooks):
        return False
    for group in optimizer.param_groups:
        flags = ("amsgrad", "differentiable", "capturable", "decoupled_weight_decay")
        if len({(p.device, p.dtype) for p in group["params"]}) > 1 or not group.get("fused") \
                or any(group.get(flag) for flag in flags) or torch.is_tensor(group["lr"]):
            return False
        for p in group["params"]:
            if p.grad is not None and ("step" not in optimizer.state.get(p, {}) or p.grad.is_sparse):
                return False
    return True


def step_fused_adams(optimizers: Sequence[torch.optim.Optimizer]) -> List[torch.optim.Optimizer]:
    """Step fused Adams with torch's own fused kernel, without ``Optimizer.step``'s Python around it.

    The update is ``torch._fused_adam_``, the op ``torch.optim.Adam(fused=True).step()`` calls (``_fused_adam`` in
    torch/optim/adam.py), on the same state tensors with the same arguments, so values, Adam state and checkpoints
    are identical to ``optimizer.step()`` (tests/test_fused_optimizer.py compares them bit for bit). What it leaves out is
    the wrapper: profiler ``record_function`` context, hook dispatch and per-group tensor grouping, about 0.1 ms of host
    time per optimizer, with six optimizers (one per Gaussian parameter key) over a millisecond of a 9.6 ms GPU step
    (``docs/benchmarks/profile_sync_sites/vlm-fastgs-2x.json``: ``Optimizer.step#KeepFusedAdam.step``). The step
    counters of all of them advance in one ``_foreach_add_`` per device.

    Args:
        optimizers: Optimizers to step once each; parameters without a gradient are left alone, as torch does.

    Returns:
        The optimizers this could not step exactly as torch would (see :func:`_steps_like_torch`: e.g. unfused,
        AMSGrad, or before their first step); the caller steps those with ``optimizer.step()``.
    """
    rest: List[torch.optim.Optimizer] = []
    steps: Dict[torch.device, List[torch.Tensor]] = {}
    updates = []
    for optimizer in optimizers:
        if not _steps_like_torch(optimizer):
            rest.append(optimizer)
            continue
        for group in optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [optimizer.state[p] for p in params]
            steps.setdefault(params[0].device, []).extend(state["step"] for state in states)
            updates.append((group, params, states))
    for device_steps in steps.values():  # before the updates, as torch's _fused_adam: bias correction uses the new step
        torch._foreach_add_(device_steps, 1)
    for group, params, states in updates:
        beta1, beta2 = group["betas"]
        torch._fused_adam_(
            params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], [],
            [s["step"] for s in states], amsgrad=False, lr=group["lr"], beta1=beta1, beta2=beta2,
            weight_decay=group["weight_decay"], eps=group["eps"], maximize=group["maximize"],
        )
    return rest


def clear_gradients(optimizers: Sequence[torch.optim.Optimizer]) -> None:
    """``optimizer.zero_grad()`` (torch's default ``set_to_none=True``) for each of ``optimizers``, without its
    profiler context and hook dispatch: every parameter's ``.grad`` becomes None."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = None


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """nerfstudio's ``AdamOptimizerConfig`` with torch's fused Adam where torch has it for the parameters' device."""

    _target: Type = KeepFusedAdam
    fused: Optional[bool] = None
    """True: fused Adam (torch raises if the device has no fused kernel); False: torch's default Adam (foreach on
    CUDA, for-loop on CPU); None: fused when torch supports it for the parameters' device (CUDA; CPU from torch 2.4),
    else the default. Same update rule either way, to float32 rounding."""

    def setup(self, params) -> torch.optim.Optimizer:
        """The Adam for ``params`` (an iterable of tensors or param-group dicts), fused per :attr:`fused`."""
        kwargs = vars(self).copy()
        for key in ("_target", "max_norm", "fused"):
            kwargs.pop(key)
        params = list(params)
        if self.fused is not None:
            return self._target(params, fused=self.fused, **kwargs)
        try:
            return self._target(params, fused=True, **kwargs)
        except RuntimeError:  # no fused kernel for this device or dtype (e.g. old torch on CPU)
            return self._target(params, **kwargs)


def gaussian_optimizers(max_steps: int) -> Dict[str, dict]:
    """Splatfacto's optimiser settings (nerfstudio's ``method_configs["splatfacto"]``) with the means' and camera
    optimiser's decay stretched over ``max_steps``, each Adam fused (:class:`FusedAdamOptimizerConfig`).

    Returns:
        nerfstudio's ``TrainerConfig.optimizers`` dict: one entry per key of ``SplatfactoModel.get_param_groups``
        (means, features_dc, features_rest, opacities, scales, quats, camera_opt, bilateral_grid).
    """
    adam = FusedAdamOptimizerConfig
    return {
        "means": {
            "optimizer": adam(lr=1.6e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=max_steps),
        },
        "features_dc": {"optimizer": adam(lr=0.0025, eps=1e-15), "scheduler": None},
        "features_rest": {"optimizer": adam(lr=0.0025 / 20, eps=1e-15), "scheduler": None},
        "opacities": {"optimizer": adam(lr=0.05, eps=1e-15), "scheduler": None},
        "scales": {"optimizer": adam(lr=0.005, eps=1e-15), "scheduler": None},
        "quats": {"optimizer": adam(lr=0.001, eps=1e-15), "scheduler": None},
        "camera_opt": {
            "optimizer": adam(lr=1e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=5e-7, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
        "bilateral_grid": {
            "optimizer": adam(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=1e-4, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
    }
