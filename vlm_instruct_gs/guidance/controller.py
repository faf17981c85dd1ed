"""The training-loop side of VLM guidance: query at schedule steps, apply at the strategy's refinement steps.

:class:`GuidanceController` (config :class:`~vlm_instruct_gs.guidance.guidance_controller.GuidanceConfig`) is owned
by :class:`~vlm_instruct_gs.vlm_fastgs_pipeline.VLMFastGSPipeline` and called by the model's ``step_post_backward``
(main thread, under nerfstudio's train lock) with the model's :class:`~splat_core.strategy.FastGSStrategy`:

1. :meth:`~GuidanceController.guidance_for_step`, before the strategy, at its refine and final-prune steps: the
   answers due (in deterministic mode those at least ``apply_delay`` steps old, waited for) mapped onto the
   *current* Gaussians as the strategy's ``guidance=`` (:mod:`~vlm_instruct_gs.guidance.applying`: densify, prune,
   grow masks and spawned Gaussians), then reported (console verdict, ``applied.jsonl``, TensorBoard, viewer).
2. :meth:`~GuidanceController.after_step`, after it, at query steps (:mod:`~vlm_instruct_gs.guidance.phases`):
   snapshots (:mod:`~vlm_instruct_gs.guidance.snapshots`) submitted to the
   :class:`~vlm_instruct_gs.guidance.worker.GuidanceWorker`, which answers them off the critical path
   (:func:`~vlm_instruct_gs.guidance.answering.answer_job`).

:meth:`GuidanceController.state_dict` / :meth:`~GuidanceController.load_state_dict` carry the unapplied answers, the
queries in flight (re-issued on load) and the last verdicts across a checkpoint resume.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText
from torch import Tensor

from splat_core.model import TrainViews
from splat_core.rendering.views import Renderer
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance import records
from vlm_instruct_gs.guidance.answering import answer_job, check_prompts, result_regions
from vlm_instruct_gs.guidance.applying import guidance_from_results, spawn_settings
from vlm_instruct_gs.guidance.phases import phase_name, settled_query_phases, unapplied_queries
from vlm_instruct_gs.guidance.resume_state import job_from_state, job_state, result_from_state, result_state
from vlm_instruct_gs.guidance.snapshots import snapshot_views
from vlm_instruct_gs.guidance.sources import GuidanceSource
from vlm_instruct_gs.guidance.worker import GuidanceJob, GuidanceResult, GuidanceWorker

if TYPE_CHECKING:  # guidance_controller.py imports this module to name it as the config's _target
    from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig

_STATE_VERSION = 1


class GuidanceController:
    """Queries the guidance source on schedule and turns its answers into per-Gaussian strategy guidance.

    Args:
        config (GuidanceConfig): schedule and mapping settings.
        source (GuidanceSource): a loaded VLM backend, the image-evidence guide or a boxes file.
        status (ViewerText | None): disabled viewer text showing the current phase (e.g. ``detail``).
        last_answer (ViewerText | None): disabled viewer text showing the last applied answer in short
            (:func:`~vlm_instruct_gs.guidance.records.short_verdict`); the full line goes to the console.
        full_verdict (ViewerText | None): disabled viewer text showing that whole line
            (:func:`~vlm_instruct_gs.guidance.records.verdict`).

    Raises:
        GuidanceSetupError: a VLM prompt file of an enabled phase is missing or empty.
    """

    def __init__(
        self,
        config: "GuidanceConfig",
        source: GuidanceSource,
        status: Optional[ViewerText] = None,
        last_answer: Optional[ViewerText] = None,
        full_verdict: Optional[ViewerText] = None,
    ) -> None:
        self.config = config
        self.full_verdict = full_verdict
        self.source = source
        self.status = status
        self.last_answer = last_answer
        self.worker = GuidanceWorker(self._answer, config.asynchronous, config.max_pending, config.cuda_side_stream,
                                     block_when_full=config.deterministic)
        self.seed = config.seed
        """Seed of view choice, novel poses and spawn depths (:meth:`set_run_seed` mixes in the run's seed)."""
        self.output_dir: Optional[Path] = None
        self.image_names: Optional[List[str]] = None
        """File names of the training images, in the training cameras' order (:meth:`set_image_names`)."""
        self.last_verdict = "no answer yet"
        """Console line of the latest applied answer (:func:`~vlm_instruct_gs.guidance.records.verdict`)."""
        self.applied: List[Dict[str, Any]] = []
        """One record per application (as in applied.jsonl), kept for diagnostics and tests."""
        self.snapshot_seconds = 0.0
        """Main-thread time spent rendering and copying query views, in seconds."""
        self.apply_seconds = 0.0
        """Main-thread time spent collecting and mapping results, in seconds (includes waits)."""
        self.wait_seconds = 0.0
        """The part of :attr:`apply_seconds` spent waiting for the source's answers (deterministic mode's wait for a
        late source, or ``wait_for_results``), in seconds."""
        check_prompts(config, source)

    # ------------------------------------------------------------------ set-up
    def set_output_dir(self, path: Optional[Path]) -> None:
        """Folder for the per-query records (None writes nothing)."""
        self.output_dir = Path(path) if path is not None else None

    def set_run_seed(self, run_seed: int) -> None:
        """Deterministic mode: draw query views and spawn depths from the run's seed (``--machine.seed``) too."""
        if self.config.deterministic:
            self.seed = self.config.seed * 1_000_003 + int(run_seed)

    def set_image_names(self, names: Sequence[str]) -> None:
        """File names of the training images ``[C]`` (the dataparser's ``image_filenames``, in camera order): recorded
        with each query view and used by the ``boxes`` source to find its regions."""
        self.image_names = [Path(n).name for n in names]

    def check_schedule(self, strategy: FastGSStrategy, max_steps: int, start_step: int = 0) -> Dict[str, List[int]]:
        """Warn about query steps whose results no later refinement/final-prune step of ``strategy`` can apply, and
        show the phase of ``start_step`` (a resumed run starts there) in the viewer.

        Returns:
            ``{phase: [lost query steps]}`` (see :func:`~vlm_instruct_gs.guidance.phases.unapplied_queries`).
        """
        delay = self.config.apply_delay if self.config.deterministic else 1
        lost = unapplied_queries(self.config.schedule, lambda t: self._is_apply_step(strategy, t), max_steps, delay)
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
    def _is_apply_step(strategy: FastGSStrategy, step: int) -> bool:
        return strategy.is_refine_step(step) or strategy.is_final_prune_step(step)

    def guidance_for_step(
        self,
        step: int,
        strategy: FastGSStrategy,
        render: Renderer,
        num_gaussians: int,
        device: torch.device,
        train_views: Optional[TrainViews] = None,
    ) -> Optional[Dict[str, Any]]:
        """Per-Gaussian guidance for the strategy at ``step``, or None (not a refinement step, nothing answered).

        Args:
            step: training step, before the strategy's ``step_post_backward``.
            strategy: the model's FastGS strategy (its refine and final-prune steps, its prune threshold).
            render: renders one camera with the current Gaussians (:class:`~splat_core.rendering.views.RenderedView`).
            num_gaussians: current N.
            device: device of the Gaussians.
            train_views: the training cameras and images (colours of spawned Gaussians); None spawns nothing.

        Returns:
            ``{"densify": [N] float in [-1, 1], "prune": [N] float in [0, 1], "grow": [N] float in [0, 1],
            "spawn": {"means", "colors", "scales"}}`` (keys present when some answer gave them) on ``device``, or
            None. ``grow`` is the region overlap of the phases that grow (``GuidanceConfig.grows``); ``spawn`` holds
            phase 2/3's new Gaussians, at refine steps only (:func:`~vlm_instruct_gs.guidance.spawning.spawn_for_views`).
        """
        if not self._is_apply_step(strategy, step):
            return None
        start = time.perf_counter()
        spawn = spawn_settings(self.config, self.seed, step) if strategy.is_refine_step(step) else None
        results = self._collect(step)
        self.wait_seconds += time.perf_counter() - start
        out, applied = guidance_from_results(results, render, self.config, self.source, num_gaussians, device, spawn,
                                             train_views)
        for result, densify, prune, spawned in applied:
            self._report(step, result, densify, prune, strategy.guidance_prune_thresh, spawned)
        self.apply_seconds += time.perf_counter() - start
        self._set_status(step)
        return out or None

    def after_step(
        self,
        step: int,
        render: Renderer,
        cameras: Cameras,
        images: Sequence[Dict[str, Tensor]],
        strategy: FastGSStrategy,
    ) -> None:
        """Snapshot and submit this step's queries (after the strategy ran).

        Args:
            step: training step.
            render: renders one camera with the current Gaussians.
            cameras: training cameras ``[C]`` (any device).
            images: the datamanager's cached training images, ``images[i]["image"]`` [H, W, 3|4] uint8 or float.
            strategy: the model's FastGS strategy; queries due within ``settle_after_reset`` steps of its latest
                opacity reset are deferred (:func:`~vlm_instruct_gs.guidance.phases.settled_query_phases`).
        """
        settle = min(self.config.settle_after_reset, strategy.reset_every - 1)  # settle before the next reset
        phases = settled_query_phases(self.config.schedule, step, strategy.last_opacity_reset(step), settle)
        if not phases:
            return
        cfg = self.config
        for phase in phases:
            candidates = self.source.query_candidates(phase, self.image_names or [])
            if candidates is not None and not candidates:
                continue
            start = time.perf_counter()
            views = snapshot_views(
                phase, step, render, cameras, images, cfg.views_for(phase), self.seed, cfg.subject_image,
                image_names=self.image_names, candidates=candidates, novel_views=candidates is None,
                interpolate_frac=cfg.novel_interpolate_frac, translation_frac=cfg.novel_translation_frac,
                rotation_deg=cfg.novel_rotation_deg,
            )
            self.snapshot_seconds += time.perf_counter() - start
            if views:
                self.worker.submit(GuidanceJob(phase=phase, step=step, views=views))
        self._set_status(step)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to continue: answers received but not yet applied (boxes and region masks), the
        queries in flight (re-issued by :meth:`load_state_dict`), the last verdicts and the timings.

        Returns:
            A dict of tensors, dicts, lists, tuples, str, int, float, bool and None only (loads with
            ``torch.load(weights_only=True)``). The schedule needs nothing: it is a function of the step.
        """
        jobs, results = self.worker.peek()
        return {
            "version": _STATE_VERSION,
            "results": [result_state(r) for r in results],
            "jobs": [job_state(j) for j in jobs],
            "last_verdict": self.last_verdict,
            "applied": copy.deepcopy(self.applied),
            "snapshot_seconds": self.snapshot_seconds,
            "apply_seconds": self.apply_seconds,
            "wait_seconds": self.wait_seconds,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output: its answers are applied at the next apply step, its in-flight queries
        are asked again now (on the worker; inline when synchronous).

        Raises:
            ValueError: ``state`` is of another version.
        """
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"guidance state version {state.get('version')!r}, expected {_STATE_VERSION}")
        self.worker.restore([result_from_state(r) for r in state["results"]])
        for job in state["jobs"]:
            self.worker.submit(job_from_state(job))
        self.last_verdict = state["last_verdict"]
        self.applied = copy.deepcopy(list(state["applied"]))
        self.snapshot_seconds = float(state["snapshot_seconds"])
        self.apply_seconds = float(state["apply_seconds"])
        self.wait_seconds = float(state.get("wait_seconds", 0.0))  # checkpoints before it was recorded have none
        if self.last_answer is not None and self.applied:
            self.last_answer.value = records.short_verdict(self.applied[-1])
        if self.full_verdict is not None and self.applied:
            self.full_verdict.value = self.last_verdict

    # ------------------------------------------------------------------ worker handler, results due, reports
    def _answer(self, job: GuidanceJob) -> GuidanceResult:
        """Worker side (:func:`~vlm_instruct_gs.guidance.answering.answer_job`; reads the config of the moment)."""
        return answer_job(job, self.source, self.config, self.output_dir)

    def _collect(self, step: int) -> List[GuidanceResult]:
        """The results to apply at ``step``: in deterministic mode those of queries at least ``apply_delay`` steps
        old (waiting for them), else whatever has arrived (waiting only with ``wait_for_results``)."""
        cfg = self.config
        if cfg.deterministic:
            return self.worker.collect(wait=True, due=lambda job: job.step + cfg.apply_delay <= step)
        return self.worker.collect(wait=cfg.wait_for_results or not cfg.asynchronous)

    def _report(self, step: int, result: GuidanceResult, densify, prune, prune_thresh: float, spawned: int = 0) -> None:
        """Verdict line, applied.jsonl record, TensorBoard image."""
        record = records.applied_record(step, result, densify, prune, prune_thresh, spawned)
        self.last_verdict = records.verdict(record)
        CONSOLE.log(f"guidance at step {step}: {self.last_verdict}")
        self.applied.append(record)
        records.append_applied(self.output_dir, record)
        if self.last_answer is not None:
            self.last_answer.value = records.short_verdict(record)
        if self.full_verdict is not None:
            self.full_verdict.value = self.last_verdict
        if self.config.log_images:
            records.log_overlays(result, result_regions(self.config, self.source, result), step)

    def _set_status(self, step: int) -> None:
        if self.status is not None:
            self.status.value = phase_name(self.config.schedule, step)


__all__ = ["GuidanceController"]
