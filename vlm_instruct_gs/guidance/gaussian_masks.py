"""Image masks to per-Gaussian guidance: overlap of each Gaussian's projected footprint with a mask, over views.

For view ``v`` and Gaussian ``i`` the *overlap fraction* is ``f[v, i] = count[v, i] / area[v, i]``, the share of the
pixels of the Gaussian's clipped footprint box (:mod:`splat_core.rendering.footprint`) that the mask selects
(or the mean weight, for a float mask). A Gaussian is *visible* in a view when its footprint covers at least one pixel
centre. Per-view values are then combined over the views where the Gaussian is visible (max or mean); a Gaussian
visible in no view gets 0, which the strategy reads as "no guidance".

Which pixels a phase's boxes select is :func:`~vlm_instruct_gs.guidance.mask_rule.region_masks`;
:func:`in_front_of_surface` picks the Gaussians of a floater search region that float in front of the rendered
surface, and :func:`regions_to_guidance` turns one answered query's regions into the strategy's ``guidance=``.

Everything is vectorised (summed-area tables, no loop over Gaussians), gradient-free and runs on the device of
``means2d``; masks are moved there.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from splat_core.rendering.footprint import RadiiT, count_in_footprints, footprint_area
from splat_core.rendering.views import RenderedView
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions

Reduce = Literal["max", "mean"]


@torch.no_grad()
def footprint_fractions(
    means2d: Float[Tensor, "V N 2"],
    radii: RadiiT,
    masks: Union[Bool[Tensor, "V H W"], Float[Tensor, "V H W"]],
    radius_scale: float = 1.0,
) -> Tuple[Float[Tensor, "V N"], Bool[Tensor, "V N"]]:
    """Overlap fraction of each Gaussian's footprint with each view's mask, and its visibility.

    Args:
        means2d: projected centres in pixels (gsplat ``info["means2d"]``, unpacked). [V, N, 2]
        radii: gsplat radii in pixels, 0 where culled. [V, N] (gsplat 1.4) or [V, N, 2] (gsplat 1.5)
        masks: pixel masks (bool) or weights in [0, 1] (float) at the render's resolution, any device. [V, H, W]
        radius_scale: multiplier on the footprint radii. Default is 1.0.

    Returns:
        A tuple:

        **fractions**: ``count / area`` in [0, 1] (float32), 0 where not visible. [V, N]

        **visible**: footprint covers at least one pixel centre. [V, N] bool
    """
    masks = masks.to(means2d.device)
    height, width = masks.shape[-2:]
    counts = count_in_footprints(means2d, radii, masks, radius_scale=radius_scale)
    area = footprint_area(means2d, radii, width, height, radius_scale=radius_scale)
    visible = area > 0
    return counts / area.clamp_min(1.0), visible


def combine_views(
    values: Float[Tensor, "V N"], visible: Bool[Tensor, "V N"], reduce: Reduce = "mean"
) -> Float[Tensor, "N"]:
    """Combine per-view values over the views where each Gaussian is visible.

    Args:
        values: per-view values (any sign). [V, N]
        visible: where each value counts. [V, N] bool
        reduce: ``"max"`` or ``"mean"`` over the visible views. Default is "mean".

    Returns:
        Combined values, 0 for Gaussians visible in no view. [N] float32

    Raises:
        ValueError: unknown ``reduce`` or mismatched shapes.
    """
    if values.shape != visible.shape:
        raise ValueError(f"values {tuple(values.shape)} and visible {tuple(visible.shape)} differ in shape")
    values = values.float()
    seen = visible.any(dim=0)
    if reduce == "max":
        out = torch.where(visible, values, torch.full_like(values, float("-inf"))).amax(dim=0)
    elif reduce == "mean":
        out = (values * visible).sum(dim=0) / visible.sum(dim=0).clamp_min(1)
    else:
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    return torch.where(seen, out, torch.zeros_like(out))


@torch.no_grad()
def in_front_of_surface(
    means2d: Float[Tensor, "V N 2"],
    depths: Float[Tensor, "V N"],
    surface: Float[Tensor, "V H W"],
    alpha: Float[Tensor, "V H W"],
    margin: float = 0.1,
) -> Bool[Tensor, "V N"]:
    """Gaussians floating in front of the rendered surface: camera depth below ``(1 - margin)`` times the rendered
    expected depth at the pixel under their centre, where that pixel is covered (``alpha > 0.5``).

    Args:
        means2d: projected centres in pixels. [V, N, 2]
        depths: camera-space z of each centre (gsplat ``info["depths"]``). [V, N]
        surface: rendered expected depth. [V, H, W]
        alpha: rendered accumulated opacity. [V, H, W]
        margin: relative depth margin in [0, 1). Default is 0.1.

    Returns:
        Floater candidates (False for centres outside the image). [V, N] bool
    """
    V, H, W = surface.shape
    col = means2d[..., 0].floor().long()
    row = means2d[..., 1].floor().long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    flat = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1)).to(surface.device)  # [V, N]
    surf = torch.gather(surface.reshape(V, -1).float(), 1, flat)
    cover = torch.gather(alpha.reshape(V, -1).float(), 1, flat) > 0.5
    return inside & cover & (depths.float() > 0) & (depths.float() < (1.0 - margin) * surf)


@torch.no_grad()
def regions_to_guidance(
    views: Sequence[Tuple[RenderedView, PhaseRegions]],
    densify_outside: float = 0.0,
    combine: Reduce = "mean",
    radius_scale: float = 1.0,
    floater_depth_margin: float = 0.1,
) -> Tuple[Optional[Float[Tensor, "N"]], Optional[Float[Tensor, "N"]]]:
    """Per-Gaussian densify and prune guidance of one answered query, for the Gaussians the renders show now.

    Per view: densify ``f + (1 - f) * densify_outside`` where ``f`` is the overlap fraction with the densify region;
    prune ``f * front`` where ``f`` is the overlap with the floater region and ``front`` marks Gaussians in front of the
    rendered surface (:func:`in_front_of_surface`). Views are combined over where each Gaussian is visible
    (:func:`combine_views`): densify by ``combine``, prune by the max.

    Args:
        views: ``(render of the query camera with the current Gaussians, its regions at the render's size)`` per
            view that has boxes.
        densify_outside: densify value, in [-1, 1], of a visible footprint wholly outside the region. Default is 0.0.
        combine: ``"max"`` or ``"mean"`` over views for densify. Default is "mean".
        radius_scale: multiplier on the footprint radii. Default is 1.0.
        floater_depth_margin: relative depth margin of :func:`in_front_of_surface`. Default is 0.1.

    Returns:
        ``(densify [N] float or None, prune [N] float in [0, 1] or None)`` on the renders' device; None where no
        view has that region.
    """
    per_densify, per_prune = [], []
    for out, regions in views:
        if regions.densify is not None:
            f, visible = footprint_fractions(out.means2d, out.radii, regions.densify[None], radius_scale)
            per_densify.append((f + (1.0 - f) * densify_outside, visible))
        if regions.floaters is not None:
            f, visible = footprint_fractions(out.means2d, out.radii, regions.floaters[None], radius_scale)
            front = in_front_of_surface(out.means2d, out.depths, out.depth[None], out.alpha[None], floater_depth_margin)
            per_prune.append((f * front, visible))
    densify = combine_views(*_stack_views(per_densify), combine) if per_densify else None
    prune = combine_views(*_stack_views(per_prune), "max") if per_prune else None
    return densify, prune


def _stack_views(per_view: Sequence[Tuple[Tensor, Tensor]]) -> Tuple[Tensor, Tensor]:  # [1, N] pairs -> [V, N]
    return torch.cat([v for v, _ in per_view]), torch.cat([m for _, m in per_view])


__all__ = ["combine_views", "footprint_fractions", "in_front_of_surface", "regions_to_guidance"]
