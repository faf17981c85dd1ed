"""Deterministic guided runs (the default): the same command and seed give the same Gaussians on the CPU, however
slow the guidance source's thread is."""

import time

import torch

from splat_core.testing import write_transforms_scene
from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuide
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.testing.guided_runs import guided_pipeline as _pipeline
from vlm_instruct_gs.testing.guided_runs import train_steps as _train

SCHEDULE = GuidanceSchedule(detail_start=2, detail_stop=6, detail_every=2, subject_start=4, subject_stop=8,
                            subject_every=2, artifacts_start=6, artifacts_stop=10, artifacts_every=2)


def _gaussians(pipeline):
    return {k: v.detach().clone() for k, v in pipeline.model.gauss_params.items()}


def test_two_threaded_runs_with_the_same_seed_give_identical_gaussians(tmp_path, monkeypatch):
    scene = write_transforms_scene(tmp_path / "scene")
    kwargs = dict(asynchronous=True, deterministic=True, apply_delay=3, spawn_cell=4, spawn_min_error=0.0)
    first = _pipeline(scene, "image-evidence", schedule=SCHEDULE, **kwargs)
    _train(first)
    boxes = ImageEvidenceGuide.boxes

    def slow(self, *args, **kw):  # a late worker: answers arrive after the step they are due at
        time.sleep(0.15)
        return boxes(self, *args, **kw)

    monkeypatch.setattr(ImageEvidenceGuide, "boxes", slow)
    second = _pipeline(scene, "image-evidence", schedule=SCHEDULE, **kwargs)
    _train(second)
    a, b = _gaussians(first), _gaussians(second)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.guidance.applied == [dict(r, seconds=s["seconds"]) for r, s in
                                      zip(second.guidance.applied, first.guidance.applied)]
    phases = {r["phase"] for r in first.guidance.applied}
    assert phases == {"detail", "subject", "artifacts"}
    assert all(r["step"] >= r["query_step"] + 3 for r in first.guidance.applied)  # the fixed delay
    assert second.guidance.worker.dropped == 0
