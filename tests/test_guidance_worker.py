"""The guidance worker (inline and threaded), the controller applying answers at the next refinement step, and its
state across a checkpoint resume."""

import dataclasses
import io
import threading
import time

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.viewer.viewer_elements import ViewerText

from splat_core.rendering.views import RenderedView
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.controller import GuidanceController
from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.guidance.sources import GuidanceSource
from vlm_instruct_gs.guidance.worker import GuidanceJob, GuidanceResult, GuidanceWorker


def _job(step, phase="detail"):
    return GuidanceJob(phase=phase, step=step, views=())


def _echo(job):
    return GuidanceResult(job=job, boxes=(), answers=())


def test_synchronous_worker_answers_inline():
    worker = GuidanceWorker(_echo, asynchronous=False)
    assert worker.submit(_job(3)) and worker.pending == 0
    assert [r.job.step for r in worker.collect()] == [3] and worker.collect() == []


def test_threaded_worker_answers_off_thread_and_waits_on_request():
    gate, threads = threading.Event(), []

    def handler(job):
        threads.append(threading.current_thread().name)
        gate.wait(5)
        return _echo(job)

    worker = GuidanceWorker(handler, asynchronous=True, max_pending=2)
    assert worker.submit(_job(2)) and worker.submit(_job(4))
    assert not worker.submit(_job(6)) and worker.dropped == 1  # two already pending
    assert worker.collect() == [] and worker.pending == 2  # nothing answered yet: training goes on
    gate.set()
    assert [r.job.step for r in worker.collect(wait=True, timeout=5)] == [2, 4]
    assert threads == ["vlm-guidance", "vlm-guidance"] and worker.pending == 0
    worker.close()


def test_a_failing_handler_never_raises_into_training():
    def handler(job):
        raise RuntimeError("model exploded")

    for asynchronous in (False, True):
        worker = GuidanceWorker(handler, asynchronous=asynchronous)
        worker.submit(_job(1))
        assert worker.collect(wait=True, timeout=5) == [] and worker.pending == 0
        worker.close()


class _FixedSource(GuidanceSource):
    """Left half of every image, optionally after a gate opens."""

    def __init__(self, gate=None):
        self.gate = gate

    def boxes(self, phase, images, **evidence):
        if self.gate is not None:
            self.gate.wait(5)
        return [[Box.make(0, 0, 500, 1000, "left")] for _ in images]


class _Scene:
    """Four 16x12 cameras and N Gaussians on a row (x from 0.5 to 15.5 px), N changeable between calls."""

    def __init__(self, n=16):
        self.n = n
        self.cameras = Cameras(camera_to_worlds=torch.eye(4)[:3].expand(4, 3, 4), fx=10.0, fy=10.0, cx=8.0, cy=6.0,
                               width=16, height=12, camera_type=CameraType.PERSPECTIVE)
        self.images = [{"image": torch.full((12, 16, 3), 100, dtype=torch.uint8)} for _ in range(4)]

    def render(self, camera):
        x = torch.linspace(0.5, 15.5, self.n)
        means2d = torch.stack([x, torch.full_like(x, 6.0)], -1)[None]
        return RenderedView(rgb=torch.full((12, 16, 3), 0.5), depth=torch.full((12, 16), 2.0),
                            alpha=torch.ones(12, 16), means2d=means2d, radii=torch.ones(1, self.n, dtype=torch.int32),
                            depths=torch.full((1, self.n), 2.0))


def _strategy(reset_every=0):
    """FastGS refining at every 4th step (4, 8, ...), final pruning never; opacity resets every ``reset_every``."""
    return FastGSStrategy(refine_start_iter=0, refine_every=4, refine_stop_iter=1000, reset_every=reset_every,
                          final_prune_start_iter=1000, final_prune_stop_iter=1000)


def _controller(source, **kwargs):
    schedule = GuidanceSchedule(detail_start=2, detail_stop=3, detail_every=1, subject_every=0, artifacts_every=0)
    kwargs = {"apply_delay": 1, **kwargs}  # deterministic (the default), applied at the next apply step
    return GuidanceController(GuidanceConfig(source="image-evidence", schedule=schedule, detail_views=2,
                                             log_images=False, **kwargs), source)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_answers_are_applied_at_the_next_refine_step_to_the_then_current_gaussians(asynchronous):
    scene, strategy = _Scene(16), _strategy()
    ctrl = _controller(_FixedSource(), asynchronous=asynchronous, wait_for_results=True)
    for step in range(0, 4):
        assert ctrl.guidance_for_step(step, strategy, scene.render, scene.n, torch.device("cpu")) is None
        ctrl.after_step(step, scene.render, scene.cameras, scene.images, strategy)  # queries at step 2 only
    scene.n = 24  # the strategy densified in between: the answer is mapped to the 24 current Gaussians
    guidance = ctrl.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu"))
    assert set(guidance) == {"densify", "grow"} and guidance["densify"].shape == (24,)
    torch.testing.assert_close(guidance["grow"], guidance["densify"].clamp(0, 1))  # phase 1's region, for the budget
    x = torch.linspace(0.5, 15.5, 24)
    assert bool((guidance["densify"][x < 7] == 1).all()) and bool((guidance["densify"][x > 9] == 0).all())
    assert [(a["step"], a["query_step"], a["phase"]) for a in ctrl.applied] == [(4, 2, "detail")]
    assert ctrl.guidance_for_step(8, strategy, scene.render, scene.n, torch.device("cpu")) is None  # applied once
    ctrl.close()


@pytest.mark.parametrize("subject_grow", [False, True])
def test_a_background_answer_feeds_the_grow_budget_only_when_its_phase_grows(subject_grow):
    scene, strategy = _Scene(16), _strategy()
    schedule = GuidanceSchedule(detail_every=0, subject_start=2, subject_stop=3, subject_every=1, artifacts_every=0)
    ctrl = GuidanceController(GuidanceConfig(source="image-evidence", schedule=schedule, subject_views=2,
                                             log_images=False, apply_delay=1, asynchronous=False, spawn_budget=0,
                                             subject_grow=subject_grow), _FixedSource())
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    guidance = ctrl.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu"))
    assert [a["phase"] for a in ctrl.applied] == ["subject"]
    # the subject box is the left half, so phase 2 densifies the right half (the background)
    x = torch.linspace(0.5, 15.5, 16)
    assert bool((guidance["densify"][x > 9] == 1).all()) and bool((guidance["densify"][x < 7] == 0).all())
    if subject_grow:
        torch.testing.assert_close(guidance["grow"], guidance["densify"].clamp(0, 1))
    else:
        assert "grow" not in guidance
    ctrl.close()


def test_a_slow_source_is_applied_at_a_later_refine_step_without_blocking():
    scene, strategy, gate = _Scene(16), _strategy(), threading.Event()
    ctrl = _controller(_FixedSource(gate), asynchronous=True, deterministic=False)
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    start = time.perf_counter()
    assert ctrl.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu")) is None
    assert time.perf_counter() - start < 1.0  # did not wait for the source
    gate.set()
    deadline = time.time() + 5
    while ctrl.worker.pending and time.time() < deadline:
        time.sleep(0.01)
    guidance = ctrl.guidance_for_step(8, strategy, scene.render, scene.n, torch.device("cpu"))
    assert guidance is not None and float(guidance["densify"].max()) == 1.0
    assert ctrl.applied[0]["step"] == 8 and ctrl.applied[0]["query_step"] == 2
    ctrl.close()


def test_deterministic_mode_applies_at_a_fixed_step_after_the_query_waiting_for_a_late_source():
    scene, strategy, gate = _Scene(16), _strategy(), threading.Event()
    ctrl = _controller(_FixedSource(gate), asynchronous=True, apply_delay=5)  # query at 2: applied at 8, not 4
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    assert ctrl.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu")) is None  # not due yet
    assert ctrl.worker.pending == 1  # and did not wait for it
    threading.Timer(0.3, gate.set).start()
    start = time.perf_counter()
    guidance = ctrl.guidance_for_step(8, strategy, scene.render, scene.n, torch.device("cpu"))
    assert time.perf_counter() - start >= 0.25  # training waited for the late answer
    assert guidance is not None and [(a["step"], a["query_step"]) for a in ctrl.applied] == [(8, 2)]
    assert 0.25 <= ctrl.wait_seconds <= ctrl.apply_seconds  # the wait is told apart from the mapping
    # an answer that is ready early is held back until its step too
    fast = _controller(_FixedSource(), asynchronous=True, apply_delay=5)
    fast.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    fast.worker.collect(wait=True, due=lambda job: False)  # let it finish, take nothing
    assert fast.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu")) is None
    assert fast.guidance_for_step(8, strategy, scene.render, scene.n, torch.device("cpu")) is not None
    assert fast.check_schedule(strategy, 8) == {"detail": [2]} and fast.check_schedule(strategy, 9) == {}  # 4 < 2 + 5
    assert fast.wait_seconds < 0.25 and fast.state_dict()["wait_seconds"] == fast.wait_seconds
    ctrl.close()
    fast.close()


def test_a_full_deterministic_worker_waits_instead_of_dropping():
    gate = threading.Event()
    worker = GuidanceWorker(lambda job: (gate.wait(5), _echo(job))[1], asynchronous=True, max_pending=1,
                            block_when_full=True)
    worker.submit(_job(1))
    threading.Timer(0.2, gate.set).start()
    assert worker.submit(_job(2)) and worker.dropped == 0
    assert [r.job.step for r in worker.collect(wait=True, timeout=5)] == [1, 2]
    worker.close()


def test_queries_after_an_opacity_reset_are_deferred_not_dropped():
    scene, strategy = _Scene(16), _strategy(reset_every=3)
    ctrl = _controller(_FixedSource(), asynchronous=False, settle_after_reset=5)  # settle clamped to 2 (< 3)
    schedule = dataclasses.replace(ctrl.config.schedule, detail_start=3, detail_stop=5)  # detail at 3 and 4
    ctrl.config = dataclasses.replace(ctrl.config, schedule=schedule)
    queried = []
    for step in range(8):
        before = len(ctrl.worker._done)
        ctrl.after_step(step, scene.render, scene.cameras, scene.images, strategy)
        if len(ctrl.worker._done) > before:
            queried.append(step)
    assert queried == [5]  # reset at 3: both queries (3 and 4) wait to 3 + 2
    assert len(ctrl.worker.collect()) == 1  # one snapshot answers both deferred queries of the phase
    ctrl.close()


def _saved(state):
    """``state`` through torch.save / torch.load(weights_only=True), as a checkpoint carries it."""
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_a_pending_answer_survives_a_resume_and_is_applied_at_the_next_apply_step():
    scene, strategy = _Scene(16), _strategy()
    ctrl = _controller(_FixedSource(), asynchronous=False)
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)  # answered inline, not applied yet
    expected = ctrl.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu"))["densify"]
    ctrl = _controller(_FixedSource(), asynchronous=False)
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    state = _saved(ctrl.state_dict())  # saved between query and application
    assert len(state["results"]) == 1 and state["jobs"] == []
    ctrl.close()

    last = ViewerText("last", "", disabled=True)
    resumed = GuidanceController(ctrl.config, _FixedSource(), last_answer=last)
    resumed.load_state_dict(state)
    assert resumed.guidance_for_step(3, strategy, scene.render, scene.n, torch.device("cpu")) is None  # no apply step
    guidance = resumed.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu"))
    torch.testing.assert_close(guidance["densify"], expected)
    short = f"detail@2 +{int((expected > 0).sum())} -0"  # phase@query step +densified -pruned
    assert [(a["step"], a["query_step"]) for a in resumed.applied] == [(4, 2)] and last.value == short
    again = GuidanceController(ctrl.config, _FixedSource(), last_answer=ViewerText("last", "", disabled=True))
    again.load_state_dict(_saved(resumed.state_dict()))  # the applied verdicts travel too
    assert again.applied == resumed.applied and again.last_verdict == resumed.last_verdict
    assert again.last_answer.value == short
    assert again.guidance_for_step(8, strategy, scene.render, scene.n, torch.device("cpu")) is None  # applied once


def test_a_query_in_flight_at_save_time_is_reissued_after_resume():
    scene, strategy, gate = _Scene(16), _strategy(), threading.Event()
    ctrl = _controller(_FixedSource(gate), asynchronous=True)
    ctrl.after_step(2, scene.render, scene.cameras, scene.images, strategy)
    state = _saved(ctrl.state_dict())  # the source has not answered yet
    assert state["results"] == [] and [j["step"] for j in state["jobs"]] == [2]
    assert state["jobs"][0]["views"][0]["image"].dtype == torch.uint8
    gate.set()
    ctrl.close()
    resumed = _controller(_FixedSource(), asynchronous=True, wait_for_results=True)
    resumed.load_state_dict(state)
    guidance = resumed.guidance_for_step(4, strategy, scene.render, scene.n, torch.device("cpu"))
    assert guidance is not None and float(guidance["densify"].max()) == 1.0
    assert resumed.applied[0]["query_step"] == 2
    resumed.close()


def test_viewer_verdict_stays_short_and_the_console_line_keeps_the_detail():
    from vlm_instruct_gs.guidance.records import short_verdict, verdict

    record = {"phase": "artifacts", "query_step": 14999, "views": ["novel_00"] * 4, "error": None,
              "boxes": [[{"bbox_2d": [0, 0, 1, 1], "label": "x"}]] * 4}
    for n_densify, n_prune, short in [(5, 0, "+5 -0"), (1234, 999, "+1.2k -999"), (456_789, 1_500_000, "+456k -1.5M")]:
        record.update(densify_gaussians=n_densify, prune_gaussians=n_prune)
        assert short_verdict(record) == f"artifacts@14999 {short}" and len(short_verdict(record)) <= 27
        assert verdict(record) == (f"artifacts@14999: 4 box(es) in 4 view(s); densify {n_densify} GSs, "
                                   f"prune {n_prune} GSs")
    record.update(error="RuntimeError: boom")
    assert short_verdict(record) == "artifacts@14999 failed" and "error RuntimeError: boom" in verdict(record)


def test_overlay_strips_are_shrunk_before_tensorboard_encodes_them():
    """A strip of four 953x535 views goes to TensorBoard 240 px tall, area-averaged; a small one as it is."""
    from vlm_instruct_gs.guidance.records import OVERLAY_HEIGHT, shrink_to_height

    strip = torch.zeros(535, 4 * 953, 3)
    strip[:, : 2 * 953] = 1.0  # left half white
    small = shrink_to_height(strip)
    assert small.shape == (OVERLAY_HEIGHT, 4 * 953 * OVERLAY_HEIGHT // 535, 3) == (240, 1710, 3)
    assert float(small.mean()) == pytest.approx(0.5, abs=2e-3) and float(small[:, :800].min()) == 1.0
    tiny = torch.rand(12, 64, 3)
    assert shrink_to_height(tiny) is tiny
