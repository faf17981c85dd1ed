"""Image masks to per-Gaussian guidance: overlap of each Gaussian's projected footprint with a mask, over views.

For view ``v`` and Gaussian ``i`` the *overlap fraction* is ``f[v, i] = count[v, i] / area[v, i]``, the share of the
pixels of the Gaussian's clipped footprint box (:mod:`splat_core.rendering.footprint`) that the mask selects
(or the mean weight, for a float mask). A Gaussian is *visible* in a view when its footprint covers at least one pixel
centre. Per-view values are then combined over the views where the Gaussian is visible (max or mean); a Gaussian
visible in no view gets 0, which the strategy reads as "no guidance".

Which pixels a phase's boxes select is :func:`region_masks` (detail: the boxes or their complement; subject: the
background; artifacts: non-floater boxes to densify, all boxes as the floater search region), and
:func:`in_front_of_surface` picks the Gaussians of a search region that float in front of the rendered surface.

Everything is vectorised (summed-area tables, no loop over Gaussians), gradient-free and runs on the device of
``means2d``; masks are moved there.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from vlm_instruct_gs.guidance.parsing import Box, boxes_to_mask, check_phase
from splat_core.rendering.footprint import RadiiT, count_in_footprints, footprint_area

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
def masks_to_guidance(
    means2d: Float[Tensor, "V N 2"],
    radii: RadiiT,
    masks: Union[Bool[Tensor, "V H W"], Float[Tensor, "V H W"]],
    reduce: Reduce = "mean",
    inside: float = 1.0,
    outside: float = 0.0,
    radius_scale: float = 1.0,
) -> Float[Tensor, "N"]:
    """Per-Gaussian guidance from same-sized view masks: ``inside * f + outside * (1 - f)`` per visible view, then
    combined (:func:`combine_views`).

    With the defaults this is the (mean) overlap fraction in [0, 1], usable as ``guidance["densify"]`` or
    ``guidance["prune"]`` of :class:`~splat_core.strategy.fastgs.FastGSStrategy`; ``outside < 0`` holds back
    Gaussians that are seen but not masked.

    Args:
        means2d: projected centres in pixels. [V, N, 2]
        radii: gsplat radii. [V, N] or [V, N, 2]
        masks: bool masks or float weights in [0, 1], one per view. [V, H, W]
        reduce: ``"max"`` or ``"mean"`` over the views where a Gaussian is visible. Default is "mean".
        inside: value of a fully masked footprint. Default is 1.0.
        outside: value of a fully unmasked (but visible) footprint. Default is 0.0.
        radius_scale: multiplier on the footprint radii. Default is 1.0.

    Returns:
        Guidance per Gaussian on ``means2d``'s device, 0 where never visible. [N] float32
    """
    fractions, visible = footprint_fractions(means2d, radii, masks, radius_scale)
    return combine_views(inside * fractions + outside * (1.0 - fractions), visible, reduce)


def stack_views(per_view: Sequence[Tuple[Tensor, Tensor]]) -> Tuple[Float[Tensor, "V N"], Bool[Tensor, "V N"]]:
    """Stack per-view ``(values [1, N], visible [1, N])`` pairs (e.g. views of different sizes handled one by one)."""
    return torch.cat([v for v, _ in per_view]), torch.cat([m for _, m in per_view])


def is_floater(box: Box, keywords: Sequence[str]) -> bool:
    """Whether a box's label names a floater-type defect (case-insensitive substring match with any keyword)."""
    label = box.label.lower()
    return any(k.lower() in label for k in keywords if k)


def region_masks(
    phase: str,
    boxes: Sequence[Box],
    height: int,
    width: int,
    detail_target: Literal["boxes", "complement"] = "boxes",
    floater_keywords: Sequence[str] = (),
) -> Tuple[Optional[Bool[Tensor, "H W"]], Optional[Bool[Tensor, "H W"]]]:
    """Pixel regions a phase's boxes ask to densify and to search for floaters, at ``height x width`` (CPU).

    - ``detail``: densify the union of the boxes (``detail_target="boxes"``) or its complement (``"complement"``,
      the public reference implementation's choice).
    - ``subject``: densify the complement of the subject box(es): the background.
    - ``artifacts``: densify the union of the boxes whose label is not a floater (:func:`is_floater`); the union of
      all boxes is the floater search region, where Gaussians in front of the rendered surface are pruned.

    Boxes are normalised 0-1000 (see :mod:`~vlm_instruct_gs.guidance.parsing`); pixel ranges follow
    :meth:`Box.to_pixels`. No boxes means no guidance, never "everything" (an empty answer does not densify the
    whole complement).

    Returns:
        ``(densify [H, W] bool or None, prune_region [H, W] bool or None)``; None where the phase gives nothing.

    Raises:
        ValueError: unknown phase or ``detail_target``.
    """
    check_phase(phase)
    if detail_target not in ("boxes", "complement"):
        raise ValueError(f"detail_target must be 'boxes' or 'complement', got {detail_target!r}")
    if not boxes:
        return None, None
    union = boxes_to_mask(boxes, height, width)
    if phase == "detail":
        return (union if detail_target == "boxes" else ~union), None
    if phase == "subject":
        return ~union, None
    under = [b for b in boxes if not is_floater(b, floater_keywords)]
    return (boxes_to_mask(under, height, width) if under else None), union


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


__all__ = [
    "combine_views",
    "footprint_fractions",
    "in_front_of_surface",
    "is_floater",
    "masks_to_guidance",
    "region_masks",
    "stack_views",
]
