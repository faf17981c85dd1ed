"""The guidance schedule: phases and query steps as pure functions of the step."""

import dataclasses

import pytest

from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance.phases import (
    GuidanceSchedule,
    active_phases,
    is_query_step,
    phase_enabled,
    phase_name,
    query_phases,
    query_steps,
    settled_query_phases,
    unapplied_queries,
)


def test_default_schedule_matches_the_issue():
    s = GuidanceSchedule()
    assert query_steps(s, "detail") == list(range(500, 8000, 500))
    assert query_steps(s, "subject") == list(range(8000, 14000, 1000))
    assert query_steps(s, "artifacts") == list(range(10000, 15000, 1000))
    assert active_phases(s, 499) == () and phase_name(s, 0) == "warm-up"
    assert active_phases(s, 500) == ("detail",) and query_phases(s, 500) == ("detail",)
    assert query_phases(s, 750) == () and not is_query_step(s, 750) and active_phases(s, 750) == ("detail",)
    assert active_phases(s, 8000) == ("subject",)  # windows are half-open: detail ended
    assert query_phases(s, 10000) == ("subject", "artifacts") and phase_name(s, 10500) == "subject+artifacts"
    assert active_phases(s, 14000) == ("artifacts",)
    assert phase_name(s, 15000) == "refinement" and phase_name(s, 19999) == "refinement"


def test_schedule_is_immutable_and_a_function_of_step_only():
    s = GuidanceSchedule()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.detail_start = 0  # type: ignore[misc]
    assert [query_phases(s, t) for t in range(0, 20000, 250)] == [query_phases(s, t) for t in range(0, 20000, 250)]
    assert s == GuidanceSchedule() and hash(s) == hash(GuidanceSchedule())


def test_disabled_and_custom_phases():
    s = GuidanceSchedule(detail_every=0, subject_start=10, subject_stop=10, artifacts_start=3, artifacts_stop=11,
                         artifacts_every=4)
    assert not phase_enabled(s, "detail") and not phase_enabled(s, "subject")
    assert query_steps(s, "detail") == [] and query_steps(s, "artifacts") == [3, 7]
    assert [t for t in range(20) if is_query_step(s, t)] == [3, 7]
    assert phase_name(s, 0) == "warm-up" and phase_name(s, 5) == "artifacts" and phase_name(s, 11) == "refinement"
    off = GuidanceSchedule(detail_every=0, subject_every=0, artifacts_every=0)
    assert phase_name(off, 100) == "off" and not any(is_query_step(off, t) for t in range(0, 20000, 100))
    with pytest.raises(ValueError):
        s.window("colour")


def test_default_schedule_lines_up_with_fastgs_under_20k():
    strategy = FastGSStrategy()

    def apply(t):
        return strategy.is_refine_step(t) or strategy.is_final_prune_step(t)

    assert unapplied_queries(GuidanceSchedule(), apply, 20000) == {}
    # every answer lands on a densifying refinement step, before FastGS stops densifying at 15000
    for phase in ("detail", "subject", "artifacts"):
        for q in query_steps(GuidanceSchedule(), phase):
            nxt = next(t for t in range(q + 1, 20000) if apply(t))
            assert strategy.is_refine_step(nxt) and nxt < strategy.refine_stop_iter
    late = GuidanceSchedule(artifacts_stop=20000)
    lost = unapplied_queries(late, apply, 20000)
    assert lost == {"artifacts": [19000]}  # the last apply step is the final prune at 19000


def test_fastgs_reports_its_latest_opacity_reset():
    strategy = FastGSStrategy()  # resets at 3000, 6000, 9000, 12000 (every 3000 below refine_stop_iter 15000)
    assert [strategy.last_opacity_reset(s) for s in (0, 2999, 3000, 5999, 12001, 14999, 19999)] == [
        None, None, 3000, 3000, 12000, 12000, 12000]


def test_queries_right_after_an_opacity_reset_wait_until_it_settles():
    schedule, strategy = GuidanceSchedule(), FastGSStrategy()

    def phases_at(step, settle=250):
        return settled_query_phases(schedule, step, strategy.last_opacity_reset(step), settle)

    # the default schedule queries detail at 3000 and 6000, subject at 9000 and 12000, artifacts at 12000: all resets
    asked = {s: phases_at(s) for s in range(20000) if phases_at(s)}
    assert asked[3250] == ("detail",) and asked[6250] == ("detail",) and asked[9250] == ("subject",)
    assert asked[12250] == ("subject", "artifacts") and not {3000, 6000, 9000, 12000} & set(asked)
    assert asked[3500] == ("detail",) and asked[14000] == ("artifacts",)  # queries away from resets are untouched
    # nothing is lost or duplicated: one query per scheduled query
    scheduled = sum(len(query_phases(schedule, s)) for s in range(20000))
    assert sum(len(p) for p in asked.values()) == scheduled
    # settle 0 restores the plain schedule
    assert all(phases_at(s, settle=0) == query_phases(schedule, s) for s in range(0, 20000, 250))
