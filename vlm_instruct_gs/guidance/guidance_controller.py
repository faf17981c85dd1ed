"""Configuration of the guidance loop: :class:`GuidanceConfig` (``--pipeline.guidance.*``).

The controller it builds lives in :mod:`~vlm_instruct_gs.guidance.controller`. Saved ``config.yml`` files name
``vlm_instruct_gs.guidance.guidance_controller.GuidanceConfig`` and, as its ``_target``,
``vlm_instruct_gs.guidance.guidance_controller.GuidanceController``, so both names resolve here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Tuple, Type

from nerfstudio.configs.base_config import InstantiateConfig

from vlm_instruct_gs.guidance.controller import GuidanceController
from vlm_instruct_gs.guidance.mask_rule import FLOATER_KEYWORDS, DetailTarget
from vlm_instruct_gs.guidance.phases import GuidanceSchedule, check_phase


@dataclass
class GuidanceConfig(InstantiateConfig):
    """How guidance is scheduled, asked and applied (the source's own settings are ``--pipeline.vlm.*`` and
    ``--pipeline.image-evidence.*``)."""

    _target: Type = field(default_factory=lambda: GuidanceController)
    source: Literal["vlm", "image-evidence", "boxes", "none"] = "vlm"
    """Guidance source: 'vlm' (a local Qwen3-VL, --pipeline.vlm.model-path; loaded at start-up), 'image-evidence'
    (weights-free image statistics), 'boxes' (regions per training image from --pipeline.guidance.boxes-file) or
    'none' (plain FastGS)."""
    boxes_file: Optional[Path] = None
    """JSON file of the 'boxes' source: boxes (0-1000) and/or masks per training image file name and phase
    (:mod:`vlm_instruct_gs.guidance.boxes_file`)."""
    schedule: GuidanceSchedule = field(default_factory=GuidanceSchedule)
    """Phase windows and query intervals, in steps."""
    detail_views: int = 4
    """Training views rendered and asked about per phase-1 query."""
    subject_views: int = 4
    """Training views asked about per phase-2 query."""
    artifacts_views: int = 4
    """Novel views rendered and asked about per phase-3 query."""
    detail_target: DetailTarget = "boxes"
    """Phase 1 densifies under the emerging-detail boxes, or their complement (the public reference code's choice)."""
    subject_image: Literal["ground-truth", "render"] = "ground-truth"
    """Phase 2 asks about the training photo (sharp from the start) or the current render of that view."""
    detail_prompt_file: Optional[Path] = None
    """Phase-1 prompt file; None is <vlm.prompt_dir or configs/prompts>/detail.txt. Read at every query."""
    subject_prompt_file: Optional[Path] = None
    """Phase-2 prompt file; None is <vlm.prompt_dir or configs/prompts>/subject.txt."""
    artifacts_prompt_file: Optional[Path] = None
    """Phase-3 prompt file; None is <vlm.prompt_dir or configs/prompts>/artifacts.txt."""
    detail_grow: bool = True
    """Phase 1 also hands the detail regions to the strategy as ``guidance["grow"]``: up to its
    ``guidance_grow_budget`` region Gaussians per refinement grow by gradient rank, whatever their multi-view score."""
    subject_grow: bool = False
    """Phase 2 hands its densify region (the background) to the strategy's grow budget the same way, so Gaussians
    already in the background clone/split by gradient rank without passing the multi-view count."""
    artifacts_grow: bool = False
    """Phase 3 hands its under-reconstructed regions (not the floater regions) to the grow budget the same way."""
    spawn_budget: int = 2000
    """Phases 2 and 3: at most this many new Gaussians per refinement where the background / under-reconstructed
    regions hold too few (:mod:`~vlm_instruct_gs.guidance.spawning`); 0 disables spawning."""
    spawn_depth_range: Tuple[float, float] = (0.2, 1.5)
    """Depths sampled along transparent pixels' rays, in multiples of the camera's distance to the point the training
    cameras look at (the random initial points' range)."""
    spawn_min_error: float = 0.1
    """Region pixels whose render is within this mean absolute RGB error of the training image get no new Gaussian."""
    spawn_cell: int = 8
    """Side, in render pixels, of the cells in which projected Gaussian centres are counted."""
    spawn_min_per_cell: int = 1
    """A region cell with fewer visible Gaussian centres than this is under-populated and gets new Gaussians."""
    densify_outside: float = 0.0
    """Densify guidance, in [-1, 1], of Gaussians seen outside the region to densify (negative holds them back)."""
    combine: Literal["max", "mean"] = "mean"
    """How densify guidance is combined over the views where a Gaussian is visible (prune always takes the max)."""
    radius_scale: float = 1.0
    """Multiplier on gsplat's footprint radii when measuring overlap with a region."""
    novel_interpolate_frac: float = 0.5
    """Share of phase-3 views interpolated between neighbouring training cameras; the rest are perturbed."""
    novel_translation_frac: float = 0.1
    """Perturbed views move by up to this fraction of the distance to the nearest neighbouring camera."""
    novel_rotation_deg: float = 5.0
    """Perturbed views turn by up to this angle, in degrees."""
    floater_keywords: Tuple[str, ...] = FLOATER_KEYWORDS
    """Artefact labels containing any of these (case-insensitive) are floater regions: pruned, not densified."""
    floater_depth_margin: float = 0.1
    """A Gaussian under an artefact box is a floater when its depth is below (1 - margin) x the rendered depth."""
    deterministic: bool = True
    """Reproducible runs: each answer is applied at the first refinement (or final-prune) step at least
    ``apply_delay`` steps after its query, training waits there for a late source, no query is dropped (submitting
    waits for a free slot) and query views are drawn from the run's seed (``--machine.seed``) with ``seed``. False
    applies each answer at whichever apply step follows its arrival (never waits; timing can change the run)."""
    apply_delay: int = 200
    """Deterministic mode: steps between a query and the earliest step its answer is applied at."""
    asynchronous: bool = True
    """Ask the source on a background thread; False asks inline at the query step (deterministic)."""
    wait_for_results: bool = False
    """At a refinement step, wait for every outstanding query (asynchronous but reproducible)."""
    settle_after_reset: int = 250
    """Queries due within this many steps after the strategy's opacity reset wait until then: right after a reset
    the renders are nearly transparent (0 queries at the scheduled step)."""
    max_pending: int = 4
    """Most queries outstanding at once; later ones are dropped with a warning (in deterministic mode submitting
    waits for a free slot instead)."""
    cuda_side_stream: bool = True
    """On CUDA, run the source on its own stream so it can overlap training."""
    write_files: bool = True
    """Write every query's image, prompt, answer, boxes and masks under <run>/guidance."""
    log_images: bool = True
    """Log the applied regions over the queried image to TensorBoard (writer.put_image; strips shrunk to
    :data:`~vlm_instruct_gs.guidance.records.OVERLAY_HEIGHT` pixels, since TensorBoard encodes them on the training
    thread)."""
    seed: int = 0
    """Seed of the view choice, novel-view poses and spawn depths (combined with the step, and in deterministic mode
    with the run's seed, so a resumed run repeats them)."""

    def views_for(self, phase: str) -> int:
        """Views per query of ``phase`` (``detail_views``, ``subject_views`` or ``artifacts_views``)."""
        return {"detail": self.detail_views, "subject": self.subject_views, "artifacts": self.artifacts_views}[
            check_phase(phase)
        ]

    def grows(self, phase: str) -> bool:
        """Whether answers of ``phase`` feed the strategy's grow budget (``detail_grow``, ``subject_grow`` or
        ``artifacts_grow``). Raises ValueError for an unknown phase."""
        return {"detail": self.detail_grow, "subject": self.subject_grow, "artifacts": self.artifacts_grow}[
            check_phase(phase)
        ]

    def prompt_file_for(self, phase: str) -> Optional[Path]:
        """The prompt file override of ``phase``, or None (the source's own prompt folder)."""
        files = {"detail": self.detail_prompt_file, "subject": self.subject_prompt_file,
                 "artifacts": self.artifacts_prompt_file}
        return files[check_phase(phase)]


__all__ = ["GuidanceConfig", "GuidanceController"]
