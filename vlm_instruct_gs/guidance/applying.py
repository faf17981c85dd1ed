"""The apply side of guidance, on the training thread at a refinement or final-prune step: answered queries become
the FastGS strategy's ``guidance=`` for the *current* Gaussians.

Each answer's views are rendered again with the current Gaussians and their regions mapped onto them
(:func:`~vlm_instruct_gs.guidance.gaussian_masks.regions_to_guidance`): ``densify`` in [-1, 1] summed over the
answers, ``prune`` in [0, 1] their maximum, ``grow`` (the phases switched on by ``detail_grow``, ``subject_grow``
and ``artifacts_grow``) the maximum of the positive densify overlap. At refine steps the phase-2/3 answers' densify
regions also receive new Gaussians where they hold too few
(:func:`~vlm_instruct_gs.guidance.spawning.spawn_for_views`, one budget over all answers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from splat_core.rendering.views import Renderer
from vlm_instruct_gs.guidance.answering import result_regions, view_regions
from vlm_instruct_gs.guidance.gaussian_masks import regions_to_guidance
from vlm_instruct_gs.guidance.sources import GuidanceSource
from vlm_instruct_gs.guidance.spawning import SPAWN_PHASES, SpawnSettings, spawn_for_views
from vlm_instruct_gs.guidance.worker import GuidanceResult

if TYPE_CHECKING:
    from splat_core.model import TrainViews
    from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig

Applied = Tuple[GuidanceResult, Optional[Tensor], Optional[Tensor], int]
"""One applied answer: ``(result, densify [N] or None, prune [N] or None, new Gaussians spawned for it)``."""


def map_result(
    result: GuidanceResult, render: Renderer, config: "GuidanceConfig", source: GuidanceSource
) -> Tuple[Optional[Tensor], Optional[Tensor], List]:
    """``(densify [N] or None, prune [N] or None, [(view, render, regions)])`` of one result for the current
    Gaussians; regions computed at another size than the render (splatfacto's resolution schedule moved on since
    the query) are computed again at the render's."""
    views, rendered = [], []
    for view, boxes, regions in zip(result.job.views, result.boxes, result_regions(config, source, result)):
        if regions.size is None:
            continue
        out = render(view.camera)
        if regions.size != tuple(out.depth.shape):
            regions = view_regions(config, source, result.job.phase, boxes, view, *out.depth.shape)
        views.append((out, regions))
        rendered.append((view, out, regions))
    densify, prune = regions_to_guidance(views, config.densify_outside, config.combine, config.radius_scale,
                                         config.floater_depth_margin)
    return densify, prune, rendered


def spawn_settings(config: "GuidanceConfig", seed: int, step: int) -> SpawnSettings:
    """The config's spawn settings, with depths seeded by the controller's ``seed`` and ``step``."""
    return SpawnSettings(budget=config.spawn_budget, depth_range=config.spawn_depth_range,
                         min_error=config.spawn_min_error, cell=config.spawn_cell,
                         min_per_cell=config.spawn_min_per_cell, seed=seed * 1_000_003 + step)


def guidance_from_results(
    results: Sequence[GuidanceResult],
    render: Renderer,
    config: "GuidanceConfig",
    source: GuidanceSource,
    num_gaussians: int,
    device: torch.device,
    spawn: Optional[SpawnSettings] = None,
    train_views: Optional["TrainViews"] = None,
) -> Tuple[Dict[str, Any], List[Applied]]:
    """The strategy's guidance from the answers applied at one step.

    Args:
        results: the answers to apply, in query order.
        render: renders one camera with the current Gaussians.
        config: mapping settings (``densify_outside``, ``combine``, ``radius_scale``, ``floater_depth_margin``,
            the per-phase grow switches, detail target, floater keywords).
        source: the guidance source (its regions of an answer).
        num_gaussians: current N.
        device: device of the Gaussians.
        spawn: spawn settings at a refine step; None (final-prune steps) spawns nothing.
        train_views: training cameras and images (colours of new Gaussians); None spawns nothing.

    Returns:
        ``(guidance, applied)``: ``{"densify": [N] float in [-1, 1], "prune": [N] float in [0, 1], "grow": [N]
        float in [0, 1], "spawn": {"means", "colors", "scales"}}`` with the keys some answer gave (empty when none)
        on ``device``, and one :data:`Applied` per result.
    """
    out: Dict[str, Any] = {}
    mapped = []
    for result in results:
        d, p, views = map_result(result, render, config, source)
        if d is not None:
            out["densify"] = out.get("densify", 0.0) + d.to(device)
            if config.grows(result.job.phase):
                out["grow"] = torch.maximum(out.get("grow", torch.zeros_like(d)), d.clamp(0.0, 1.0)).to(device)
        if p is not None:
            out["prune"] = torch.maximum(out.get("prune", torch.zeros(num_gaussians, device=device)), p.to(device))
        mapped.append((result, d, p, views if result.job.phase in SPAWN_PHASES else []))
    spawned = [0] * len(mapped)
    if spawn is not None and train_views is not None and spawn.budget > 0:
        points, spawned = spawn_for_views([m[3] for m in mapped], train_views, spawn)
        if points["means"].shape[0] > 0:
            out["spawn"] = {k: v.to(device) for k, v in points.items()}
    if "densify" in out:
        out["densify"] = out["densify"].clamp(-1.0, 1.0)
    if "prune" in out:
        out["prune"] = out["prune"].clamp(0.0, 1.0)
    return out, [(r, d, p, n) for (r, d, p, _), n in zip(mapped, spawned)]


__all__ = ["Applied", "guidance_from_results", "map_result", "spawn_settings"]
