"""The training-loop side of VLM guidance: query at schedule steps, apply at the strategy's refinement steps.

:class:`GuidanceController` is owned by :class:`~vlm_instruct_gs.vlm_fastgs_pipeline.VLMFastGSPipeline` and called
by the model's ``step_post_backward`` (main thread, under nerfstudio's train lock):

1. :meth:`GuidanceController.guidance_for_step` before the strategy: at a FastGS refine or final-prune step it
   collects the answered queries, renders each query's views again with the *current* Gaussians (so densification
   between query and application does not matter), maps the regions onto them through their footprints
   (:mod:`~vlm_instruct_gs.guidance.masks`) and returns ``{"densify": [N] in [-1, 1], "prune": [N] in [0, 1]}`` for
   the strategy's ``guidance=`` argument; None at every other step.
2. :meth:`GuidanceController.after_step` after the strategy: at a query step (:mod:`~vlm_instruct_gs.guidance.phases`)
   it renders a few views (:mod:`~vlm_instruct_gs.guidance.snapshots`: training views for ``detail``/``subject``,
   novel views for ``artifacts``), copies them to the CPU as uint8 and submits them to the
   :class:`~vlm_instruct_gs.guidance.worker.GuidanceWorker`, which asks the guidance source off the critical path and
   writes the records (:mod:`~vlm_instruct_gs.guidance.records`).

How each phase turns boxes into guidance (``region_masks`` in masks.py): ``detail`` densifies under the boxes (or
their complement, ``detail_target="complement"``), ``subject`` densifies the background, ``artifacts`` densifies
under the boxes not labelled as floaters and marks for pruning the Gaussians under any artefact box that float in
front of the rendered surface. Weights-free (``image-evidence``) artefacts come from the photometric difference
between the novel render and the nearest training image warped into it by the rendered depth.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.configs.base_config import InstantiateConfig
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor

from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuideConfig
from vlm_instruct_gs.guidance.masks import (
    combine_views,
    footprint_fractions,
    in_front_of_surface,
    region_masks,
    stack_views,
)
from vlm_instruct_gs.guidance.parsing import PHASES, GuidanceSource
from vlm_instruct_gs.guidance.phases import (
    GuidanceSchedule,
    phase_enabled,
    phase_name,
    settled_query_phases,
    unapplied_queries,
)
from vlm_instruct_gs.guidance.prompts import read_prompt_file
from vlm_instruct_gs.guidance.records import append_applied, overlay, write_records
from vlm_instruct_gs.guidance.snapshots import RenderedView, Renderer, snapshot_views
from vlm_instruct_gs.guidance.vlm_backend import DOWNLOAD_HINT, VLMBackend, VLMBackendConfig, VLMBackendError
from vlm_instruct_gs.guidance.worker import GuidanceJob, GuidanceResult, GuidanceWorker

FLOATER_KEYWORDS: Tuple[str, ...] = ("float", "blob", "needle", "spik", "ghost", "doubl", "haze", "fog", "speck")
"""Label substrings that make an artefact box a floater region (pruned, not densified)."""


class GuidanceSetupError(SystemExit):
    """The guidance source cannot be built: exits with status 1 and this one line (no traceback) when uncaught."""

    def __init__(self, message: str):
        super().__init__(f"error: {' '.join(message.split())}")


@dataclass
class GuidanceConfig(InstantiateConfig):
    """How guidance is scheduled, asked and applied (the source's own settings are ``--pipeline.vlm.*`` and
    ``--pipeline.image-evidence.*``)."""

    _target: Type = field(default_factory=lambda: GuidanceController)
    source: Literal["vlm", "image-evidence", "none"] = "vlm"
    """Guidance source: 'vlm' (a local Qwen3-VL, --pipeline.vlm.model-path; loaded at start-up), 'image-evidence'
    (weights-free image statistics) or 'none' (plain FastGS)."""
    schedule: GuidanceSchedule = field(default_factory=GuidanceSchedule)
    """Phase windows and query intervals, in steps."""
    detail_views: int = 4
    """Training views rendered and asked about per phase-1 query."""
    subject_views: int = 4
    """Training views asked about per phase-2 query."""
    artifacts_views: int = 4
    """Novel views rendered and asked about per phase-3 query."""
    detail_target: Literal["boxes", "complement"] = "boxes"
    """Phase 1 densifies under the emerging-detail boxes, or their complement (the public reference code's choice)."""
    subject_image: Literal["ground-truth", "render"] = "ground-truth"
    """Phase 2 asks about the training photo (sharp from the start) or the current render of that view."""
    detail_prompt_file: Optional[Path] = None
    """Phase-1 prompt file; None is <vlm.prompt_dir or configs/prompts>/detail.txt. Read at every query."""
    subject_prompt_file: Optional[Path] = None
    """Phase-2 prompt file; None is <vlm.prompt_dir or configs/prompts>/subject.txt."""
    artifacts_prompt_file: Optional[Path] = None
    """Phase-3 prompt file; None is <vlm.prompt_dir or configs/prompts>/artifacts.txt."""
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
    asynchronous: bool = True
    """Ask the source on a background thread; False asks inline at the query step (deterministic)."""
    wait_for_results: bool = False
    """At a refinement step, wait for every outstanding query (asynchronous but reproducible)."""
    settle_after_reset: int = 250
    """Queries due within this many steps after the strategy's opacity reset wait until then: right after a reset
    the renders are nearly transparent (0 queries at the scheduled step)."""
    max_pending: int = 4
    """Most queries outstanding at once; later ones are dropped with a warning."""
    cuda_side_stream: bool = True
    """On CUDA, run the source on its own stream so it can overlap training."""
    write_files: bool = True
    """Write every query's image, prompt, answer, boxes and masks under <run>/guidance."""
    log_images: bool = True
    """Log the applied regions over the queried image to TensorBoard (writer.put_image)."""
    seed: int = 0
    """Seed of the view choice and novel-view poses (combined with the step, so a resumed run repeats them)."""


def build_guidance_source(
    source: str, vlm: VLMBackendConfig, image_evidence: ImageEvidenceGuideConfig
) -> Optional[GuidanceSource]:
    """The configured guidance source, loaded now (the VLM's weights included), or None for ``"none"``.

    Raises:
        GuidanceSetupError: the VLM cannot be loaded (one line naming --pipeline.vlm.model-path, how to get the
            weights and how to train without them), or an unknown source.
    """
    if source == "none":
        return None
    if source == "image-evidence":
        return image_evidence.setup()
    if source != "vlm":
        raise GuidanceSetupError(f"unknown guidance source {source!r}; expected vlm, image-evidence or none")
    try:
        return vlm.setup()
    except (VLMBackendError, ValueError) as err:
        found = re.search(r"could not be loaded: (.*?)\. Set model_path", str(err), flags=re.S)
        reason = found.group(1) if found else str(err)
        raise GuidanceSetupError(
            f"the VLM guidance source could not load --pipeline.vlm.model-path {vlm.model_path!r} ({reason}); "
            f"{DOWNLOAD_HINT}, then pass --pipeline.vlm.model-path <that folder>. Or train without a VLM: "
            "--pipeline.guidance.source image-evidence (weights-free) or --pipeline.guidance.source none"
        ) from err


class GuidanceController:
    """Queries the guidance source on schedule and turns its answers into per-Gaussian strategy guidance.

    Args:
        config (GuidanceConfig): schedule and mapping settings.
        source (GuidanceSource): a loaded VLM backend or the image-evidence guide.
        status (ViewerText | None): disabled viewer text showing the phase and the last verdict.

    Raises:
        GuidanceSetupError: a VLM prompt file of an enabled phase is missing or empty.
    """

    def __init__(self, config: GuidanceConfig, source: GuidanceSource, status: Optional[ViewerText] = None) -> None:
        self.config = config
        self.source = source
        self.status = status
        self.worker = GuidanceWorker(self._answer, config.asynchronous, config.max_pending, config.cuda_side_stream)
        self.output_dir: Optional[Path] = None
        self.last_verdict = "no answer yet"
        self.applied: List[Dict] = []
        """One record per application (as in applied.jsonl), kept for diagnostics and tests."""
        self.snapshot_seconds = 0.0
        """Main-thread time spent rendering and copying query views, in seconds."""
        self.apply_seconds = 0.0
        """Main-thread time spent collecting and mapping results, in seconds (includes waits)."""
        if isinstance(source, VLMBackend):
            for phase in PHASES:
                if phase_enabled(config.schedule, phase):
                    try:
                        self._prompt(phase)
                    except (OSError, ValueError) as err:
                        raise GuidanceSetupError(f"guidance prompt for phase {phase!r}: {err}") from err

    # ------------------------------------------------------------------ set-up
    def set_output_dir(self, path: Optional[Path]) -> None:
        """Folder for the per-query records (None writes nothing)."""
        self.output_dir = Path(path) if path is not None else None

    def check_schedule(self, strategy, max_steps: int, start_step: int = 0) -> Dict[str, List[int]]:
        """Warn about query steps whose results no later refinement/final-prune step of ``strategy`` can apply, and
        show the phase of ``start_step`` (a resumed run starts there) in the viewer.

        Returns:
            ``{phase: [lost query steps]}`` (see :func:`~vlm_instruct_gs.guidance.phases.unapplied_queries`).
        """
        lost = unapplied_queries(self.config.schedule, lambda t: self._is_apply_step(strategy, t), max_steps)
        for phase, steps in lost.items():
            CONSOLE.log(
                f"[yellow]guidance: {len(steps)} {phase} queries (steps {steps[0]}-{steps[-1]}) come after the "
                "strategy's last refinement/prune step; their answers will not be applied"
            )
        self._set_status(start_step)
        return lost

    def close(self, step: int = 0) -> None:
        """Stop the worker thread (a nerfstudio AFTER_TRAIN callback)."""
        self.worker.close()

    # ------------------------------------------------------------------ training-loop hooks
    @staticmethod
    def _is_apply_step(strategy, step: int) -> bool:
        return bool(strategy.is_refine_step(step) or strategy.is_final_prune_step(step))

    def guidance_for_step(
        self, step: int, strategy, render: Renderer, num_gaussians: int, device: torch.device
    ) -> Optional[Dict[str, Tensor]]:
        """Per-Gaussian guidance for the strategy at ``step``, or None (not a refinement step, nothing answered).

        Args:
            step: training step, before the strategy's ``step_post_backward``.
            strategy: a :class:`~splat_core.strategy.fastgs.FastGSStrategy` (``is_refine_step``,
                ``is_final_prune_step``, ``guidance_prune_thresh``).
            render: renders one camera with the current Gaussians (:class:`RenderedView`).
            num_gaussians: current N.
            device: device of the Gaussians.

        Returns:
            ``{"densify": [N] float in [-1, 1], "prune": [N] float in [0, 1]}`` (keys present when some answer gave
            them) on ``device``, or None.
        """
        if not self._is_apply_step(strategy, step):
            return None
        start = time.perf_counter()
        results = self.worker.collect(wait=self.config.wait_for_results or not self.config.asynchronous)
        densify = torch.zeros(num_gaussians, device=device)
        prune = torch.zeros(num_gaussians, device=device)
        has = {"densify": False, "prune": False}
        for result in results:
            d, p = self._map(result, render)
            if d is not None:
                densify, has["densify"] = densify + d.to(device), True
            if p is not None:
                prune, has["prune"] = torch.maximum(prune, p.to(device)), True
            self._report(step, result, d, p, strategy)
        self.apply_seconds += time.perf_counter() - start
        self._set_status(step)
        if not any(has.values()):
            return None
        out = {"densify": densify.clamp(-1.0, 1.0), "prune": prune.clamp(0.0, 1.0)}
        return {k: v for k, v in out.items() if has[k]}

    def after_step(
        self,
        step: int,
        render: Renderer,
        cameras: Cameras,
        images: Sequence[Dict[str, Tensor]],
        strategy=None,
    ) -> None:
        """Snapshot and submit this step's queries (after the strategy ran).

        Args:
            step: training step.
            render: renders one camera with the current Gaussians.
            cameras: training cameras ``[C]`` (any device).
            images: the datamanager's cached training images, ``images[i]["image"]`` [H, W, 3|4] uint8 or float.
            strategy: a :class:`~splat_core.strategy.fastgs.FastGSStrategy` (``last_opacity_reset``,
                ``reset_every``) or None; queries due within ``settle_after_reset`` steps of its latest opacity reset
                are deferred (:func:`~vlm_instruct_gs.guidance.phases.settled_query_phases`).
        """
        last_reset, settle = None, 0
        if strategy is not None:
            last_reset = strategy.last_opacity_reset(step)
            settle = min(self.config.settle_after_reset, strategy.reset_every - 1)  # settle before the next reset
        phases = settled_query_phases(self.config.schedule, step, last_reset, settle)
        if not phases:
            return
        for phase in phases:
            start = time.perf_counter()
            cfg = self.config
            views = snapshot_views(
                phase, step, render, cameras, images, getattr(cfg, f"{phase}_views"), cfg.seed, cfg.subject_image,
                interpolate_frac=cfg.novel_interpolate_frac, translation_frac=cfg.novel_translation_frac,
                rotation_deg=cfg.novel_rotation_deg,
            )
            self.snapshot_seconds += time.perf_counter() - start
            if views:
                self.worker.submit(GuidanceJob(phase=phase, step=step, views=views))
        self._set_status(step)

    # ------------------------------------------------------------------ query side
    def _prompt(self, phase: str) -> str:
        path = getattr(self.config, f"{phase}_prompt_file")
        return read_prompt_file(path) if path is not None else self.source.prompt(phase)  # type: ignore[attr-defined]

    def _answer(self, job: GuidanceJob) -> GuidanceResult:
        """Worker side: ask the source, never raise, write the records."""
        start = time.perf_counter()
        n = len(job.views)
        images = [v.image for v in job.views]
        prompt, answers, error = None, (None,) * n, None
        try:
            if isinstance(self.source, VLMBackend):
                prompt = self._prompt(job.phase)
                boxes = self.source.boxes(job.phase, images, prompt=prompt)
                answers = tuple(self.source.last_answers) if len(self.source.last_answers) == n else answers
            else:
                keys = sorted({k for v in job.views for k in v.evidence})
                evidence = {k: [v.evidence.get(k) for v in job.views] for k in keys}
                boxes = self.source.boxes(job.phase, images, **evidence)
        except Exception as err:  # a failing source must never stop training
            error = f"{type(err).__name__}: {err}"
            CONSOLE.log(f"[yellow]guidance: {job.phase} query of step {job.step} failed ({error}); no boxes")
            boxes = [[] for _ in range(n)]
        result = GuidanceResult(
            job=job, boxes=tuple(tuple(b) for b in boxes), answers=answers, prompt=prompt,
            seconds=time.perf_counter() - start, error=error,
        )
        if self.output_dir is not None:
            masks = [self._regions(job.phase, b, *v.image.shape[:2]) for v, b in zip(job.views, result.boxes)]
            write_records(result, self.output_dir, self.config.source, masks)
        return result

    # ------------------------------------------------------------------ apply side
    def _regions(self, phase: str, boxes, height: int, width: int):
        return region_masks(phase, boxes, height, width, self.config.detail_target, self.config.floater_keywords)

    def _map(self, result: GuidanceResult, render: Renderer) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """``(densify [N] or None, prune [N] or None)`` of one result for the current Gaussians."""
        cfg = self.config
        per_densify, per_prune = [], []
        for view, boxes in zip(result.job.views, result.boxes):
            if not boxes:
                continue
            out = render(view.camera)
            densify_region, floater_region = self._regions(result.job.phase, boxes, *out.depth.shape)
            if densify_region is not None:
                f, visible = footprint_fractions(out.means2d, out.radii, densify_region[None], cfg.radius_scale)
                per_densify.append((f + (1.0 - f) * cfg.densify_outside, visible))
            if floater_region is not None:
                f, visible = footprint_fractions(out.means2d, out.radii, floater_region[None], cfg.radius_scale)
                front = in_front_of_surface(
                    out.means2d, out.depths, out.depth[None], out.alpha[None], cfg.floater_depth_margin
                )
                per_prune.append((f * front, visible))
        densify = combine_views(*stack_views(per_densify), cfg.combine) if per_densify else None
        prune = combine_views(*stack_views(per_prune), "max") if per_prune else None
        return densify, prune

    def _report(self, step: int, result: GuidanceResult, densify, prune, strategy) -> None:
        """Verdict line, applied.jsonl record, TensorBoard image."""
        job = result.job
        n_densify = int((densify > 0).sum()) if densify is not None else 0
        n_prune = int((prune > strategy.guidance_prune_thresh).sum()) if prune is not None else 0
        verdict = (
            f"{job.phase}@{job.step}: {result.num_boxes} box(es) in {len(job.views)} view(s)"
            + (f", error {result.error}" if result.error else "")
            + f"; densify {n_densify} GSs, prune {n_prune} GSs"
        )
        self.last_verdict = verdict
        CONSOLE.log(f"guidance at step {step}: {verdict}")
        record = {
            "step": step, "query_step": job.step, "phase": job.phase, "views": [v.view_id for v in job.views],
            "boxes": [[b.to_json() for b in boxes] for boxes in result.boxes], "error": result.error,
            "densify_gaussians": n_densify, "prune_gaussians": n_prune, "seconds": round(result.seconds, 4),
            "mean_densify": round(float(densify[densify > 0].mean()), 4) if n_densify else 0.0,
        }
        self.applied.append(record)
        append_applied(self.output_dir, record)
        if self.config.log_images:
            tiles = []
            for view, boxes in zip(job.views, result.boxes):
                densify_region, floater_region = self._regions(job.phase, boxes, *view.image.shape[:2])
                tiles.append(overlay(view.image, densify_region, floater_region))
            if tiles and all(t.shape == tiles[0].shape for t in tiles):
                writer.put_image(name=f"guidance/{job.phase}", image=torch.cat(tiles, dim=1), step=step)

    def _set_status(self, step: int) -> None:
        if self.status is not None:
            self.status.value = f"{phase_name(self.config.schedule, step)} | last: {self.last_verdict}"


__all__ = [
    "GuidanceConfig",
    "GuidanceController",
    "GuidanceSetupError",
    "RenderedView",
    "build_guidance_source",
]
