"""The query side of guidance, on the worker thread: ask the source about one job, turn each view's boxes into its
regions once, write the records.

:func:`answer_job` is the handler the controller (:mod:`~vlm_instruct_gs.guidance.controller`) gives its
:class:`~vlm_instruct_gs.guidance.worker.GuidanceWorker`. It never raises: a failing source is one console line and
an answer without boxes, so training goes on. A VLM is asked with the phase's prompt (a ``--pipeline.guidance.*-prompt
-file`` or the backend's prompt folder, :mod:`~vlm_instruct_gs.guidance.prompts`); other sources get the views'
image names and evidence instead. Which pixels the boxes select is the source's
:meth:`~vlm_instruct_gs.guidance.sources.GuidanceSource.view_regions` (the shared mask rule, or a boxes file's own
regions).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from nerfstudio.utils.rich_utils import CONSOLE

from vlm_instruct_gs.guidance import records
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions
from vlm_instruct_gs.guidance.phases import PHASES, phase_enabled
from vlm_instruct_gs.guidance.prompts import read_prompt_file
from vlm_instruct_gs.guidance.sources import GuidanceSetupError, GuidanceSource
from vlm_instruct_gs.guidance.vlm_backend import VLMBackend
from vlm_instruct_gs.guidance.worker import GuidanceJob, GuidanceResult, GuidanceView

if TYPE_CHECKING:  # guidance_controller.py imports the controller, which imports this module
    from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig


def phase_prompt(config: "GuidanceConfig", source: VLMBackend, phase: str) -> str:
    """The prompt of ``phase``: its prompt file override, else the backend's own (read at every query).

    Raises:
        OSError, ValueError: the prompt file is missing or empty (:func:`~vlm_instruct_gs.guidance.prompts.
            read_prompt_file`).
    """
    path = config.prompt_file_for(phase)
    return read_prompt_file(path) if path is not None else source.prompt(phase)


def check_prompts(config: "GuidanceConfig", source: GuidanceSource) -> None:
    """Read the prompt of every enabled phase once, so a bad prompt file stops the run at set-up (VLMs only).

    Raises:
        GuidanceSetupError: a prompt file of an enabled phase is missing or empty.
    """
    if not isinstance(source, VLMBackend):
        return
    for phase in PHASES:
        if phase_enabled(config.schedule, phase):
            try:
                phase_prompt(config, source, phase)
            except (OSError, ValueError) as err:
                raise GuidanceSetupError(f"guidance prompt for phase {phase!r}: {err}") from err


def view_regions(
    config: "GuidanceConfig", source: GuidanceSource, phase: str, boxes: Sequence[Box], view: GuidanceView,
    height: int, width: int,
) -> PhaseRegions:
    """The regions of one view's answer at ``height x width`` (CPU bool masks), with the config's detail target and
    floater keywords."""
    return source.view_regions(phase, boxes, view.image_name, height, width, config.detail_target,
                               config.floater_keywords)


def result_regions(config: "GuidanceConfig", source: GuidanceSource, result: GuidanceResult) -> Tuple[PhaseRegions, ...]:
    """The result's regions at the view images' size (computed here for results built without them)."""
    if len(result.regions) == len(result.job.views):
        return result.regions
    return tuple(view_regions(config, source, result.job.phase, b, v, *v.image.shape[:2])
                 for v, b in zip(result.job.views, result.boxes))


def answer_job(
    job: GuidanceJob, source: GuidanceSource, config: "GuidanceConfig", output_dir: Optional[Path]
) -> GuidanceResult:
    """Ask ``source`` about ``job``'s views; never raises.

    Args:
        job: the query (phase, step, CPU views).
        source: the guidance source.
        config: prompt files, detail target, floater keywords, the source's name for the records.
        output_dir: folder of the per-query records (:func:`~vlm_instruct_gs.guidance.records.write_records`), or
            None to write nothing.

    Returns:
        The :class:`~vlm_instruct_gs.guidance.worker.GuidanceResult`: one tuple of boxes per view (empty ones and
        ``error`` set when the source raised), the raw answers and prompt of a VLM, the wall time in seconds and
        each view's regions at its image size.
    """
    start = time.perf_counter()
    n = len(job.views)
    images = [v.image for v in job.views]
    prompt, answers, error = None, (None,) * n, None
    try:
        if isinstance(source, VLMBackend):
            prompt = phase_prompt(config, source, job.phase)
            boxes = source.boxes(job.phase, images, prompt=prompt)
            answers = tuple(source.last_answers) if len(source.last_answers) == n else answers
        else:
            keys = sorted({k for v in job.views for k in v.evidence})
            evidence = {k: [v.evidence.get(k) for v in job.views] for k in keys}
            boxes = source.boxes(job.phase, images, image_names=[v.image_name for v in job.views], **evidence)
    except Exception as err:  # a failing source must never stop training
        error = f"{type(err).__name__}: {err}"
        CONSOLE.log(f"[yellow]guidance: {job.phase} query of step {job.step} failed ({error}); no boxes")
        boxes = [[] for _ in range(n)]
    boxes = tuple(tuple(b) for b in boxes)
    regions = tuple(view_regions(config, source, job.phase, b, v, *v.image.shape[:2]) for v, b in zip(job.views, boxes))
    result = GuidanceResult(
        job=job, boxes=boxes, answers=answers, prompt=prompt, seconds=time.perf_counter() - start, error=error,
        regions=regions,
    )
    if output_dir is not None:
        records.write_records(result, output_dir, config.source)
    return result


__all__ = ["answer_job", "check_prompts", "phase_prompt", "result_regions", "view_regions"]
