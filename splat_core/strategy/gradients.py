"""The image-plane gradient accumulators of :class:`splat_core.strategy.fastgs.FastGSStrategy`.

Every training step in the refine window adds each visible Gaussian's image-plane gradient norm (NDC units, as the
3DGS/FastGS thresholds expect) and, with AbsGS, its absolute-gradient norm to running sums, and counts the steps it
was visible; a refinement reads ``grad2d / count``. The sums equal gsplat's ``index_add_`` over the visible ids
(``DefaultStrategy._update_state`` in gsplat/strategy/default.py) but need no host synchronisation on the unpacked
path. Imports torch only, like the strategy.
"""

import functools
from typing import Any, Dict

import torch
from torch import Tensor


def accumulate_gradients(
    state: Dict[str, Any], info: Dict[str, Any], n_gaussian: int, absgrad: bool, packed: bool = False
) -> None:
    """Add this step's image-plane gradient norms and visibility to ``state`` in place.

    Runs every training step, so it launches only device work that needs no host synchronisation: visibility is a
    dense [C, N] mask summed over cameras (not ``torch.where``/boolean indexing, which call ``nonzero`` and wait for
    the GPU), and the NDC scale is a device tensor made once per image size (:func:`_ndc_scale`). Culled Gaussians
    add exactly 0, even where their gradient is NaN.

    Args:
        state: The strategy state; ``grad2d``, ``count`` and (with ``absgrad``) ``grad2d_abs`` [N] float32 are
            created as zeros on the gradients' device when None, then incremented.
        info: The rasterization's ``info``: ``means2d`` (its ``.grad`` set, and ``.absgrad`` with ``absgrad``)
            [C, N, 2] or [nnz, 2] when packed, ``radii`` [C, N] (gsplat 1.4) or [C, N, 2] (gsplat 1.5), ``width``,
            ``height`` (pixels), ``n_cameras``; ``gaussian_ids`` [nnz] when packed.
        n_gaussian: Number of Gaussians N.
        absgrad: Whether to accumulate the absolute gradient (AbsGS) too.
        packed: Whether the rasterization ran with ``packed=True``.

    Raises:
        AssertionError: A key of ``info`` is missing, ``means2d`` has no gradient (``step_pre_backward`` was not
            called), ``means2d`` is packed but ``packed`` is False, or ``absgrad`` without ``means2d.absgrad``.
    """
    for key in ["width", "height", "n_cameras", "radii", "means2d"] + (["gaussian_ids"] if packed else []):
        assert key in info, f"{key} is required but missing."
    means2d = info["means2d"]
    assert means2d.grad is not None, "means2d has no gradient: call step_pre_backward() before backward()."
    assert packed or means2d.dim() >= 3, "means2d is [nnz, 2]: pass packed=True to match the rasterization."
    # normalize grads to [-1, 1] screen space (NDC), as 3DGS/FastGS thresholds expect
    sx, sy = info["width"] / 2.0 * info["n_cameras"], info["height"] / 2.0 * info["n_cameras"]
    scale = _ndc_scale(sx, sy, means2d.grad.device)
    norms = torch.linalg.vector_norm(means2d.grad * scale, dim=-1)  # [C, N] or [nnz]
    abs_norms = None
    if absgrad:
        grad_abs = getattr(means2d, "absgrad", None)
        assert grad_abs is not None, "absgrad=True needs rasterization(..., absgrad=True)."
        abs_norms = torch.linalg.vector_norm(grad_abs * scale, dim=-1)

    device = norms.device
    if state["grad2d"] is None:
        state["grad2d"] = torch.zeros(n_gaussian, device=device)
    if state["count"] is None:
        state["count"] = torch.zeros(n_gaussian, device=device)
    if absgrad and state["grad2d_abs"] is None:
        state["grad2d_abs"] = torch.zeros(n_gaussian, device=device)

    if packed:  # ids are already on the device: index_add_ needs no sync
        gs_ids = info["gaussian_ids"]  # [nnz]
        state["grad2d"].index_add_(0, gs_ids, norms)
        state["count"].index_add_(0, gs_ids, torch.ones_like(norms))
        if abs_norms is not None:
            state["grad2d_abs"].index_add_(0, gs_ids, abs_norms)
        return
    radii = info["radii"]  # [C, N] (gsplat 1.4) or [C, N, 2] (gsplat 1.5)
    visible = radii > 0
    if visible.dim() == norms.dim() + 1:
        visible = visible.all(dim=-1)  # [C, N]
    zero = norms.new_zeros(())
    # torch.where, not a product: a culled GS's gradient is 0, but never let a NaN there poison the sum
    state["grad2d"] += torch.where(visible, norms, zero).sum(dim=0)
    state["count"] += visible.sum(dim=0, dtype=state["count"].dtype)
    if abs_norms is not None:
        state["grad2d_abs"] += torch.where(visible, abs_norms, zero).sum(dim=0)


@functools.lru_cache(maxsize=16)
def _ndc_scale(sx: float, sy: float, device: torch.device) -> Tensor:  # [2]
    """``[sx, sy]`` on ``device``, made once per image size by two fills: ``torch.tensor([sx, sy], device=...)`` or
    ``scale[1] = sy`` would copy a host tensor to the device, which waits for the GPU. Two kernels (multiply, norm)
    then scale and measure a gradient, where scaling x and y apart took four."""
    scale = torch.full((2,), sx, dtype=torch.float32, device=device)
    scale[1:].fill_(sy)  # fill_ takes the value as a kernel argument
    return scale


__all__ = ["accumulate_gradients"]
