"""vlm-fastgs-demo's helpers: the tools it launches and the compressed schedule it passes."""

import sys
from dataclasses import fields
from pathlib import Path

import pytest

from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.demo import _tool, scaled_schedule
from vlm_instruct_gs.guidance.phases import GuidanceSchedule, unapplied_queries
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs


def test_demo_launches_the_tools_of_its_own_environment():
    """An unactivated virtualenv has ns-train beside its python, not on PATH."""
    assert Path(_tool("ns-train")) == Path(sys.executable).parent / "ns-train"
    assert _tool("no-such-tool-xyz") == "no-such-tool-xyz"  # left to subprocess's own error


def test_scaled_schedule_compresses_every_step_count():
    flags = dict(zip(scaled_schedule(1500)[::2], scaled_schedule(1500)[1::2]))
    assert flags["--pipeline.model.fastgs.reset-every"] == "225"
    assert flags["--pipeline.guidance.schedule.detail-every"] == "38"
    assert flags["--pipeline.guidance.settle-after-reset"] == "19"  # still shorter than the reset interval


def _compressed(iterations):
    """The demo's flags for ``iterations`` steps, applied to the method's strategy and guidance configs."""
    from dataclasses import replace

    pipeline = vlm_fastgs.config.pipeline
    flags = dict(zip(scaled_schedule(iterations)[::2], scaled_schedule(iterations)[1::2]))
    prefixes = {"--pipeline.model.fastgs.": {}, "--pipeline.guidance.schedule.": {}, "--pipeline.guidance.": {}}
    for flag, value in flags.items():
        prefix = next(p for p in prefixes if flag.startswith(p))  # dict order: schedule before guidance
        prefixes[prefix][flag[len(prefix):].replace("-", "_")] = int(value)
    strategy = replace(pipeline.model.fastgs, **prefixes["--pipeline.model.fastgs."])
    schedule = replace(pipeline.guidance.schedule, **prefixes["--pipeline.guidance.schedule."])
    return flags, strategy, schedule, replace(pipeline.guidance, schedule=schedule, **prefixes["--pipeline.guidance."])


def test_scaled_schedule_passes_every_step_count_of_the_strategy_and_guidance():
    """A step field left out (e.g. FastGS's early-growth cadence) keeps its 20k-step value in a 1500-step run."""
    flags, _, _, _ = _compressed(1500)
    not_steps = {"num_score_views", "guidance_grow_budget"}  # counts of views / Gaussians, not of steps
    strategy_ints = {f.name for f in fields(FastGSStrategy) if f.type in (int, "int")} - not_steps
    assert {f"--pipeline.model.fastgs.{n.replace('_', '-')}" for n in strategy_ints} <= set(flags)
    assert {f"--pipeline.guidance.schedule.{f.name.replace('_', '-')}" for f in fields(GuidanceSchedule)} <= set(flags)
    assert flags["--pipeline.model.fastgs.early-refine-every"] == "8"  # 100 * 1500 / 20000
    assert flags["--pipeline.model.fastgs.final-prune-every"] == "75"  # the current default, 1000, scaled
    assert flags["--pipeline.guidance.apply-delay"] == "15"


@pytest.mark.parametrize("iterations", [1500, 3000])
def test_compressed_run_refines_prunes_and_applies_like_the_full_one(iterations):
    """The compressed schedule keeps the full run's shape: as many early and late refinements, opacity resets and
    final prune passes, and every guidance query still has a step that applies its answer."""
    _, small, small_schedule, small_guidance = _compressed(iterations)
    pipeline, full = vlm_fastgs.config.pipeline, vlm_fastgs.config.max_num_iterations

    def shape(strategy, steps):
        refine = [t for t in range(steps) if strategy.is_refine_step(t)]
        early = [t for t in refine if t <= strategy.early_refine_stop_iter]
        resets = {strategy.last_opacity_reset(t) for t in range(steps)} - {None}
        final = [t for t in range(steps) if strategy.is_final_prune_step(t)]
        return len(early), len(refine) - len(early), len(resets), len(final)

    big = shape(pipeline.model.fastgs, full)
    got = shape(small, iterations)
    assert got[2:] == big[2:] == (4, 4)  # resets at 3k, 6k, 9k, 12k; final passes at 16k-19k
    assert all(abs(g - b) <= 1 for g, b in zip(got[:2], big[:2])) and got[0] > 0  # early growth is on

    def lost(strategy, schedule, guidance, steps):
        apply = lambda t: strategy.is_refine_step(t) or strategy.is_final_prune_step(t)  # noqa: E731
        return unapplied_queries(schedule, apply, steps, guidance.apply_delay)

    assert lost(pipeline.model.fastgs, pipeline.guidance.schedule, pipeline.guidance, full) == {}
    assert lost(small, small_schedule, small_guidance, iterations) == {}
    assert small_guidance.settle_after_reset < small.reset_every
