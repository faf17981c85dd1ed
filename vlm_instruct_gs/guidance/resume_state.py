"""Guidance jobs and results as plain data, so a checkpoint can carry them across a resume.

:meth:`~vlm_instruct_gs.guidance.controller.GuidanceController.state_dict` saves the answers received but not yet
applied (with their per-view boxes and region masks) and the queries still in flight; everything here is built from
tensors, dicts, lists, tuples, str, int, float, bool and None only, the types ``torch.load(weights_only=True)``
accepts. Tensors are saved as CPU copies; cameras keep what rendering and the records read (pose, pinhole
intrinsics in pixels, size, camera type, distortion).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions
from vlm_instruct_gs.guidance.worker import GuidanceJob, GuidanceResult, GuidanceView

State = Dict[str, Any]

_CAMERA_FIELDS = ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height", "camera_type", "distortion_params")


def _cpu(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.detach().cpu().clone()


def camera_state(camera: Cameras) -> State:
    """The fields of a single camera ([1]) that rendering and the records use, as CPU tensors."""
    return {k: _cpu(getattr(camera, k)) for k in _CAMERA_FIELDS}


def camera_from_state(state: State) -> Cameras:
    """Inverse of :func:`camera_state`."""
    return Cameras(**{k: state[k] for k in _CAMERA_FIELDS})


def job_state(job: GuidanceJob, evidence: bool = True) -> State:
    """A query as plain data; ``evidence=False`` leaves out the per-view evidence (an answered query needs none)."""
    views = [
        {
            "view_id": v.view_id,
            "camera": camera_state(v.camera),
            "image": _cpu(v.image),
            "evidence": {k: _cpu(t) for k, t in v.evidence.items()} if evidence else {},
            "image_name": v.image_name,
            "train_index": v.train_index,
        }
        for v in job.views
    ]
    return {"phase": job.phase, "step": job.step, "views": views}


def job_from_state(state: State) -> GuidanceJob:
    """Inverse of :func:`job_state`."""
    views = tuple(
        GuidanceView(v["view_id"], camera_from_state(v["camera"]), v["image"], dict(v["evidence"]),
                     v.get("image_name", ""), int(v.get("train_index", -1)))  # older checkpoints lack both
        for v in state["views"]
    )
    return GuidanceJob(phase=state["phase"], step=int(state["step"]), views=views)


def result_state(result: GuidanceResult) -> State:
    """An answered query as plain data: the query (without evidence), boxes as ``(x1, y1, x2, y2, label)`` tuples
    (normalised 0-1000), raw answers, prompt, seconds, error and the per-view region masks."""
    return {
        "job": job_state(result.job, evidence=False),
        "boxes": [[(b.x1, b.y1, b.x2, b.y2, b.label) for b in boxes] for boxes in result.boxes],
        "answers": list(result.answers),
        "prompt": result.prompt,
        "seconds": float(result.seconds),
        "error": result.error,
        "regions": [{"densify": _cpu(r.densify), "floaters": _cpu(r.floaters)} for r in result.regions],
    }


def result_from_state(state: State) -> GuidanceResult:
    """Inverse of :func:`result_state`."""
    return GuidanceResult(
        job=job_from_state(state["job"]),
        boxes=tuple(tuple(Box(*b) for b in boxes) for boxes in state["boxes"]),
        answers=tuple(state["answers"]),
        prompt=state["prompt"],
        seconds=float(state["seconds"]),
        error=state["error"],
        regions=tuple(PhaseRegions(r["densify"], r["floaters"]) for r in state["regions"]),
    )


__all__ = ["camera_from_state", "camera_state", "job_from_state", "job_state", "result_from_state", "result_state"]
