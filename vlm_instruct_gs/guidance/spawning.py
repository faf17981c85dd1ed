"""New Gaussians where a guided region holds too few (phase 2 background, phase 3 under-reconstructed regions).

A 100-point start leaves much of the background empty, and densification only clones and splits Gaussians that
exist, so nothing grows there. :func:`spawn_points` picks pixels of a region whose cell holds fewer than
``min_per_cell`` projected Gaussian centres, lifts them to 3D and gives them the colour of a training image; the
FastGS strategy appends them as new Gaussians (``guidance["spawn"]``, :func:`splat_core.strategy.ops.spawn_points`).
Where the render is opaque (alpha above ``alpha_thresh``) a pixel is lifted at its rendered expected depth, elsewhere
at a depth drawn uniformly in the scene's bounds along its ray: ``[near, far]`` times the camera's distance to the
point the training cameras look at (:func:`splat_core.data.init_points.focus_point`; the random initial points use
0.2-1.5, :func:`splat_core.data.init_points.random_points_in_view`). Pixels are taken in order of error (mean absolute
RGB difference between the render and the training image colour), highest first, above ``min_error``.

Cameras are nerfstudio's: camera-to-world ``[3, 4]`` in the OpenGL convention (x right, y up, z backwards; the camera
looks along ``-z``); pixel ``(u, v)`` has its centre at ``(u + 0.5, v + 0.5)``, v down; depth is camera z along the
optical axis, world units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from splat_core.data.init_points import camera_focus
from splat_core.images import to_float_image
from splat_core.rendering.views import RenderedView
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions
from vlm_instruct_gs.guidance.pinhole import intrinsics_at, lift_pixels, project, sample_bilinear, to_camera
from vlm_instruct_gs.guidance.worker import GuidanceView

if TYPE_CHECKING:
    from splat_core.model import TrainViews

SPAWN_PHASES: Tuple[str, ...] = ("subject", "artifacts")
"""Phases whose densify regions (the background; under-reconstructed boxes) also receive new Gaussians."""


def _visible_centres_per_cell(out: RenderedView, cell: int) -> Tensor:  # -> [ceil(H / cell), ceil(W / cell)]
    H, W = out.depth.shape
    gh, gw = -(-H // cell), -(-W // cell)
    xy = out.means2d[0].float()
    radii = out.radii[0] if out.radii.dim() == 2 else out.radii[0].amin(dim=-1)
    col, row = xy[:, 0].floor().long(), xy[:, 1].floor().long()
    ok = (radii > 0) & (out.depths[0] > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
    flat = (row[ok] // cell) * gw + col[ok] // cell
    return torch.bincount(flat, minlength=gh * gw).reshape(gh, gw)


def sample_colours(
    points: Float[Tensor, "M 3"], image: Float[Tensor, "h w 3"], K: Float[Tensor, "3 3"], c2w: Float[Tensor, "3 4"]
) -> Tuple[Float[Tensor, "M 3"], Bool[Tensor, "M"]]:
    """Colours of world points in a training image (bilinear at their projection) and whether they land in it, in
    front of the camera. ``K`` is at the image's resolution, ``c2w`` OpenGL."""
    h, w = image.shape[:2]
    cam = to_camera(points, c2w)
    us, vs = project(cam, K, 1e-6)
    valid = (cam[:, 2] > 1e-3) & (us >= 0) & (us < w) & (vs >= 0) & (vs < h)
    return sample_bilinear(image, us, vs).clamp(0.0, 1.0), valid


@torch.no_grad()
def spawn_points(
    out: RenderedView,
    K: Float[Tensor, "3 3"],
    c2w: Float[Tensor, "3 4"],
    region: Bool[Tensor, "H W"],
    image: Float[Tensor, "h w 3"],
    K_image: Float[Tensor, "3 3"],
    c2w_image: Float[Tensor, "3 4"],
    budget: int,
    depth_range: Tuple[float, float],
    generator: Optional[torch.Generator] = None,
    alpha_thresh: float = 0.5,
    min_error: float = 0.1,
    cell: int = 8,
    min_per_cell: int = 1,
    max_spacing: float = 8.0,
) -> Dict[str, Tensor]:
    """Up to ``budget`` new isotropic Gaussians for the under-populated pixels of ``region`` in one view.

    Args:
        out: render of the view with the current Gaussians (rgb, depth, alpha, projection), at H x W.
        K: the view's intrinsics at H x W, pixels. [3, 3]
        c2w: the view's camera-to-world (OpenGL). [3, 4]
        region: pixels to fill (the background, an under-reconstructed box). [H, W] bool
        image: the training image the colours come from (the view itself, or the nearest training view of a novel
            view), float in [0, 1]. [h, w, 3]
        K_image: its intrinsics at h x w. [3, 3]
        c2w_image: its camera-to-world (OpenGL). [3, 4]
        budget: most points returned.
        depth_range: ``(near, far)`` camera depths (world units) sampled uniformly where the render is transparent.
        generator: CPU generator of those depths (the run's seed and step make a run reproducible).
        alpha_thresh: pixels with more accumulated opacity are lifted at the rendered depth. Default is 0.5.
        min_error: pixels whose render is within this mean absolute RGB error of the image colour are left.
            Default is 0.1 (the coverage metric's bound).
        cell: side of the square cells, in pixels, in which projected Gaussian centres are counted. Default is 8.
        min_per_cell: a cell with fewer visible centres is under-populated. Default is 1.
        max_spacing: the scale of a new Gaussian is ``depth / focal * spacing`` (its pixel footprint at that depth,
            widened by ``spacing = sqrt(candidate pixels / points)`` so the points cover the candidates), spacing
            clamped to ``[1, max_spacing]``. Default is 8.0.

    Returns:
        ``{"means": [M, 3], "colors": [M, 3] RGB in [0, 1], "scales": [M] world units}`` on ``out``'s device,
        highest error first, ``M <= budget`` (0 when the region is populated or already right).
    """
    dev = out.depth.device
    empty = {"means": torch.zeros(0, 3, device=dev), "colors": torch.zeros(0, 3, device=dev),
             "scales": torch.zeros(0, device=dev)}
    if budget <= 0:
        return empty
    H, W = out.depth.shape
    sparse = _visible_centres_per_cell(out, cell) < min_per_cell
    sparse = sparse.repeat_interleave(cell, 0).repeat_interleave(cell, 1)[:H, :W]
    v, u = torch.nonzero(region.to(dev) & sparse, as_tuple=True)
    if v.numel() == 0:
        return empty
    K, c2w = K.float().to(dev), c2w.float().to(dev)
    opaque = out.alpha[v, u] > alpha_thresh
    near, far = depth_range
    drawn = near + (far - near) * torch.rand(v.numel(), generator=generator).to(dev)
    z = torch.where(opaque, out.depth[v, u].float(), drawn)
    points = lift_pixels(u, v, z, K, c2w)
    colours, valid = sample_colours(points, image.to(dev), K_image.float().to(dev), c2w_image.float().to(dev))
    error = (out.rgb[v, u].float() - colours).abs().mean(dim=-1)
    keep = valid & (error >= min_error) & (z > 0)
    n_candidates = int(keep.sum())
    if n_candidates == 0:
        return empty
    order = torch.argsort(torch.where(keep, error, torch.full_like(error, -1.0)), descending=True, stable=True)
    take = order[: min(budget, n_candidates)]
    spacing = min(max((n_candidates / take.numel()) ** 0.5, 1.0), max_spacing)
    focal = float(K[0, 0] + K[1, 1]) / 2.0
    return {"means": points[take], "colors": colours[take], "scales": z[take] / focal * spacing}


@dataclass(frozen=True)
class SpawnSettings:
    """How one refinement spawns (``GuidanceConfig.spawn_*``): ``budget`` new Gaussians at most over all views,
    ``depth_range`` in multiples of the camera's distance to the focus point, and :func:`spawn_points`'s
    ``min_error``, ``cell``, ``min_per_cell``; ``seed`` seeds the sampled depths."""

    budget: int
    depth_range: Tuple[float, float] = (0.2, 1.5)
    min_error: float = 0.1
    cell: int = 8
    min_per_cell: int = 1
    seed: int = 0


@torch.no_grad()
def spawn_for_views(
    per_result: Sequence[Sequence[Tuple[GuidanceView, RenderedView, PhaseRegions]]],
    train_views: "TrainViews",
    settings: SpawnSettings,
) -> Tuple[Dict[str, Tensor], List[int]]:
    """:func:`spawn_points` over the views of the answers applied at one refinement, the budget split evenly over the
    views that have a densify region.

    Args:
        per_result: per applied answer, its ``(query view, render with the current Gaussians, regions)``; empty for
            answers of phases that do not spawn.
        train_views: training cameras and images; a view's colours come from its ``train_index`` (itself, or the
            nearest training view of a novel view).
        settings: budget, depth range, thresholds and seed.

    Returns:
        ``({"means": [M, 3], "colors": [M, 3], "scales": [M]}, new Gaussians per answer)``, ``M <= budget``.
    """
    jobs = [(r, view, out, regions.densify) for r, views in enumerate(per_result) for view, out, regions in views
            if regions.densify is not None and view.train_index >= 0]
    counts = [0] * len(per_result)
    parts: List[Dict[str, Tensor]] = []
    if jobs and settings.budget > 0:
        cameras = train_views.cameras.to("cpu")
        c2w_all = cameras.camera_to_worlds.float()
        focus, _, _ = camera_focus(c2w_all)
        per_view = max(settings.budget // len(jobs), 1)
        gen = torch.Generator().manual_seed(settings.seed)
        for r, view, out, region in jobs[: settings.budget]:
            camera = view.camera.to("cpu")
            c2w = camera.camera_to_worlds[0].float()
            dist = float((focus - c2w[:3, 3]).norm().clamp_min(1e-3))
            i = view.train_index
            image = to_float_image(train_views.images[i]["image"][..., :3].cpu())
            points = spawn_points(
                out, intrinsics_at(camera, *out.depth.shape), c2w, region, image,
                intrinsics_at(cameras[i : i + 1], *image.shape[:2]), c2w_all[i], per_view,
                (settings.depth_range[0] * dist, settings.depth_range[1] * dist), gen,
                min_error=settings.min_error, cell=settings.cell, min_per_cell=settings.min_per_cell,
            )
            counts[r] += int(points["means"].shape[0])
            parts.append(points)
    if not parts:
        empty = torch.zeros(0, 3)
        return {"means": empty, "colors": empty.clone(), "scales": torch.zeros(0)}, counts
    return {k: torch.cat([p[k] for p in parts]) for k in ("means", "colors", "scales")}, counts


__all__ = ["SPAWN_PHASES", "SpawnSettings", "sample_colours", "spawn_for_views", "spawn_points"]
