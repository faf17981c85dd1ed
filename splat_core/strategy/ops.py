"""Strategy ops beyond gsplat's: :func:`spawn` appends new Gaussians, next to gsplat's ``duplicate``/``split``.

Same contract as gsplat:gsplat/strategy/ops.py: ``@torch.no_grad()``, ``(params, optimizers, state, ...)``, every
parameter rebuilt through ``param_fn`` with its optimizer's per-parameter state rebuilt through ``optimizer_fn`` (new
rows of every moment zeroed, ``step`` untouched), then every tensor of ``state`` re-indexed. gsplat's
``_update_param_with_optimizer`` is private and, in gsplat 1.4, needs an optimizer for every parameter; the copy here
(:func:`update_param_with_optimizer`) resizes a ``requires_grad=False`` parameter without one, as gsplat 1.5 does, so
the op behaves the same on both.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

ParamsT = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical harmonic, the factor of nerfstudio's ``RGB2SH`` (``(rgb - 0.5) / SH_C0``)."""


@torch.no_grad()
def update_param_with_optimizer(
    param_fn: Callable[[str, Tensor], Tensor],
    optimizer_fn: Callable[[str, Tensor], Tensor],
    params: ParamsT,
    optimizers: Dict[str, torch.optim.Optimizer],
    names: Optional[List[str]] = None,
) -> None:
    """Replace each parameter by ``param_fn(name, p)`` and each of its optimizer's state tensors ``v`` (except
    ``step``) by ``optimizer_fn(key, v)`` (gsplat's private helper, with gsplat 1.5's handling of parameters that
    need no gradient: resized, no optimizer).

    Raises:
        KeyError: a trainable parameter has no optimizer.
    """
    for name in list(params.keys()) if names is None else names:
        param = params[name]
        if not param.requires_grad:
            params[name] = param_fn(name, param)
            continue
        optimizer = optimizers[name]
        for i, group in enumerate(optimizer.param_groups):
            p = group["params"][0]
            p_state = optimizer.state.pop(p, {})
            for key in list(p_state.keys()):
                if key != "step":
                    p_state[key] = optimizer_fn(key, p_state[key])
            p_new = param_fn(name, p)
            optimizer.param_groups[i]["params"] = [p_new]
            optimizer.state[p_new] = p_state
            params[name] = p_new


def gaussian_rows(
    means: Float[Tensor, "M 3"],
    colors: Float[Tensor, "M 3"],
    scales: Float[Tensor, "M"],
    like: ParamsT,
    opacity: float = 0.1,
) -> Dict[str, Tensor]:
    """Pre-activation parameter rows of ``M`` new isotropic Gaussians, for every key of ``like`` (splatfacto's layout).

    Args:
        means: centres in world units. [M, 3]
        colors: RGB in [0, 1]. [M, 3]
        scales: isotropic standard deviation in world units (> 0). [M]
        like: the current parameters; their keys, dtypes, devices and trailing shapes are followed.
        opacity: opacity of the new Gaussians in (0, 1); 3DGS (and splatfacto) start points at 0.1. Default is 0.1.

    Returns:
        ``{key: [M, ...]}``: ``means``; ``scales`` log of ``scales`` on all 3 axes; ``quats`` identity (wxyz; any
        rotation of an isotropic Gaussian is the same); ``features_dc`` the SH DC of ``colors`` when
        ``features_rest`` holds SH bases, else the logit of ``colors`` (splatfacto's ``sh_degree=0``
        colour mode); ``opacities`` logit of ``opacity`` (splatfacto: [M, 1]); any other key zeros. Shapes follow ``like``.
    """
    m = means.shape[0]
    colors = colors.float().clamp(1e-4, 1 - 1e-4)
    has_sh = "features_rest" in like and like["features_rest"].shape[1] > 0
    values = {
        "means": means.float(),
        "scales": torch.log(scales.float().clamp_min(1e-7))[:, None].expand(m, 3),
        "quats": torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(m, 4),
        "features_dc": (colors - 0.5) / SH_C0 if has_sh else torch.logit(colors),
        "opacities": torch.full((m, 1), float(torch.logit(torch.tensor(opacity)))),
    }
    out = {}
    for key, p in like.items():
        v = values.get(key)
        v = torch.zeros((m, *p.shape[1:])) if v is None else v.reshape(m, *p.shape[1:])
        out[key] = v.to(device=p.device, dtype=p.dtype)
    return out


@torch.no_grad()
def spawn(params: ParamsT, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Tensor],
          new: Dict[str, Tensor]) -> int:
    """Append ``M`` new Gaussians with the values ``new`` (e.g. :func:`gaussian_rows`) at the end, in place.

    Their optimizer moments are zero (as gsplat's ``duplicate`` gives its copies), and every tensor of ``state`` (the
    strategy's per-Gaussian accumulators) gets ``M`` zero rows, so all stay aligned with the Gaussians.

    Args:
        params: the Gaussians' parameters.
        optimizers: one optimizer per trainable parameter.
        state: per-Gaussian tensors ``[N, ...]`` (and non-tensors, left alone).
        new: one ``[M, ...]`` tensor per key of ``params``, of that parameter's trailing shape.

    Returns:
        ``M``, the number of Gaussians added.

    Raises:
        ValueError: ``new`` has other keys than ``params``, or rows of another count or trailing shape.
    """
    if set(new) != set(params.keys()):
        raise ValueError(f"spawn needs rows for {sorted(params.keys())}, got {sorted(new)}")
    m = next(iter(new.values())).shape[0]
    for key, p in params.items():
        if tuple(new[key].shape) != (m, *p.shape[1:]):
            raise ValueError(f"spawn rows of {key!r} are {tuple(new[key].shape)}, expected {(m, *p.shape[1:])}")
    if m == 0:
        return 0

    def param_fn(name: str, p: Tensor) -> Tensor:
        rows = new[name].to(device=p.device, dtype=p.dtype)
        return torch.nn.Parameter(torch.cat([p, rows]), requires_grad=p.requires_grad)

    def optimizer_fn(key: str, v: Tensor) -> Tensor:
        return torch.cat([v, torch.zeros((m, *v.shape[1:]), device=v.device, dtype=v.dtype)])

    update_param_with_optimizer(param_fn, optimizer_fn, params, optimizers)
    for k, v in state.items():
        if isinstance(v, Tensor):
            state[k] = torch.cat((v, torch.zeros((m, *v.shape[1:]), device=v.device, dtype=v.dtype)))
    return m


@torch.no_grad()
def spawn_points(params: ParamsT, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Tensor],
                 points: Dict[str, Tensor], opacity: float = 0.1) -> int:
    """:func:`spawn` of the isotropic Gaussians ``points = {"means": [M, 3], "colors": [M, 3], "scales": [M]}``
    (:func:`gaussian_rows`). Returns ``M``.

    Raises:
        ValueError: other keys or shapes.
    """
    if not isinstance(points, dict) or set(points) != {"means", "colors", "scales"}:
        raise ValueError("spawn points must be {'means': [M, 3], 'colors': [M, 3], 'scales': [M]}")
    means, colors, scales = (points[k].detach().float() for k in ("means", "colors", "scales"))
    m = means.shape[0]
    if tuple(means.shape) != (m, 3) or tuple(colors.shape) != (m, 3) or tuple(scales.shape) != (m,):
        raise ValueError(f"spawn points of shapes {tuple(means.shape)}, {tuple(colors.shape)}, "
                         f"{tuple(scales.shape)}; expected [M, 3], [M, 3], [M]")
    return spawn(params, optimizers, state, gaussian_rows(means, colors, scales, params, opacity))


def top_k_mask(values: Tensor, eligible: Tensor, k: int) -> Tensor:  # [N] float, [N] bool -> [N] bool
    """The (at most) ``k`` eligible entries with the largest ``values``."""
    mask = torch.zeros_like(eligible)
    k = min(k, int(eligible.sum().item()))
    if k > 0:
        mask[torch.topk(torch.where(eligible, values.float(), float("-inf")), k).indices] = True
    return mask


def sample_without_replacement(weights: Tensor, k: int) -> Tensor:  # [N] >= 0 -> [N] bool
    """Draw ``k`` indices without replacement, proportionally to ``weights`` (zero weight: never drawn).

    Gumbel-top-k, equivalent to successive ``torch.multinomial(weights, k, replacement=False)`` draws but without its
    2**24-category limit. ``k`` is capped at the number of positive weights. Uses the global torch generator.
    """
    positive = weights > 0
    k = min(k, int(positive.sum().item()))
    mask = torch.zeros_like(positive)
    if k <= 0:
        return mask
    u = torch.rand_like(weights, dtype=torch.float32).clamp_min(1e-20)
    keys = torch.where(positive, weights.float().log() - torch.log(-torch.log(u)), float("-inf"))
    mask[torch.topk(keys, k).indices] = True
    return mask


__all__ = ["SH_C0", "gaussian_rows", "sample_without_replacement", "spawn", "spawn_points", "top_k_mask",
           "update_param_with_optimizer"]
