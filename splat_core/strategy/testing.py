"""Hand-built Gaussian scenes and rasterization info for strategy tests, in the style of gsplat's
``tests/test_strategy.py``: 100 seeded Gaussians tagged with their ids, one Adam per key, an image of W x H pixels.
Torch only (no nerfstudio), like the strategy itself."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

N = 100
W = H = 100
SMALL = math.log(0.0005)  # max scale <= grow_scale3d (0.001) * scene_scale: duplicated
LARGE = math.log(0.01)  # above: split
HIGH = 0.01  # mean image-plane gradient (NDC) above both grow_grad2d and grow_grad2d_abs
REFINE_STEP = 1000  # in (500, 15000), multiple of 500, before the first opacity reset


def make_scene(n: int = N):
    """``n`` Gaussians (seeded) with one Adam per key, both moments non-zero, ``features_dc`` holding each
    Gaussian's id (see :func:`ids_of`), small scales (duplicated when grown). Returns ``(params, optimizers)``."""
    torch.manual_seed(42)
    values = {
        "means": torch.randn(n, 3),
        "scales": torch.full((n, 3), SMALL),
        "quats": F.normalize(torch.randn(n, 4), dim=-1),
        "opacities": torch.logit(torch.full((n,), 0.5)),
        "features_dc": torch.arange(n, dtype=torch.float32)[:, None, None].repeat(1, 1, 3),  # id tags
        "features_rest": torch.zeros(n, 3, 3),
    }
    params = torch.nn.ParameterDict({k: torch.nn.Parameter(v.clone()) for k, v in values.items()})
    optimizers = {k: torch.optim.Adam([{"params": [p], "lr": 1e-3, "name": k}]) for k, p in params.items()}
    # one optimizer step so both Adam moments exist and are non-zero, then restore the exact values
    sum((p * torch.randn_like(p)).sum() for p in params.values()).backward()
    for opt in optimizers.values():
        opt.step()
        opt.zero_grad()
    with torch.no_grad():
        for k, v in values.items():
            params[k].copy_(v)
    return params, optimizers


def make_info(grad: torch.Tensor, absgrad: torch.Tensor = None, radii_format: str = "1.4", packed: bool = False):
    """Hand-built rasterization info whose normalised (NDC) gradient norms are ``grad`` / ``absgrad`` [N]."""
    n = grad.shape[0]
    g = torch.zeros(1, n, 2)
    g[0, :, 0] = grad / (W / 2.0)
    a = torch.zeros(1, n, 2)
    a[0, :, 1] = (grad if absgrad is None else absgrad) / (H / 2.0)
    radii = torch.full((1, n, 2) if radii_format == "1.5" else (1, n), 5, dtype=torch.int32)
    info = {"width": W, "height": H, "n_cameras": 1}
    if packed:  # all visible, in a shuffled order
        ids = torch.randperm(n)
        g, a, radii = g[0, ids], a[0, ids], radii[0, ids]
        info["gaussian_ids"] = ids
    means2d = torch.zeros_like(g, requires_grad=True)
    (means2d * g).sum().backward()
    means2d.absgrad = a.abs()
    info.update(means2d=means2d, radii=radii)
    return info


def scores(densify=0.0, prune=0.0, n: int = N, cameras: bool = True):
    """Hand-built view_scores: ``densify`` / ``prune`` are scalars or [n] tensors. With ``cameras``, one training
    camera far from every Gaussian of :func:`make_scene` (so the default near-camera prune removes none)."""
    out = {
        "densify_score": torch.as_tensor(densify).float().expand(n).clone(),
        "prune_score": torch.as_tensor(prune).float().expand(n).clone(),
    }
    if cameras:
        out["camera_centers"] = torch.tensor([[1000.0, 0.0, 0.0]])
        out["camera_focus_distances"] = torch.tensor([1000.0])
    return out


def ids_of(params) -> torch.Tensor:
    """[N] int64 ids the Gaussians carried from :func:`make_scene` (through duplicate/split/remove)."""
    return params["features_dc"][:, 0, 0].detach().round().long()


def assert_aligned(params, optimizers, state):
    """Every param, its optimizer's moments and every per-Gaussian state tensor have the same leading size, and
    each optimizer holds the current Parameter (what gsplat's ops guarantee)."""
    n = len(params["means"])
    for k, p in params.items():
        assert p.shape[0] == n, k
        opt = optimizers[k]
        assert opt.param_groups[0]["params"][0] is p, k
        for moment in ("exp_avg", "exp_avg_sq"):
            assert opt.state[p][moment].shape == p.shape, (k, moment)
    for k, v in state.items():
        if isinstance(v, torch.Tensor):
            assert v.shape[0] == n, k


def run(strategy, params, optimizers, state, step, info, **kwargs):
    """Both strategy hooks at ``step``, as a trainer calls them, then :func:`assert_aligned`."""
    strategy.step_pre_backward(params, optimizers, state, step, info)
    strategy.step_post_backward(params, optimizers, state, step, info, **kwargs)
    assert_aligned(params, optimizers, state)
