"""vlm-fastgs-demo's helpers: the tools it launches and the compressed schedule it passes."""

import sys
from pathlib import Path

from vlm_instruct_gs.demo import _tool, scaled_schedule


def test_demo_launches_the_tools_of_its_own_environment():
    """An unactivated virtualenv has ns-train beside its python, not on PATH."""
    assert Path(_tool("ns-train")) == Path(sys.executable).parent / "ns-train"
    assert _tool("no-such-tool-xyz") == "no-such-tool-xyz"  # left to subprocess's own error


def test_scaled_schedule_compresses_every_step_count():
    flags = dict(zip(scaled_schedule(1500)[::2], scaled_schedule(1500)[1::2]))
    assert flags["--pipeline.model.fastgs.reset-every"] == "225"
    assert flags["--pipeline.guidance.schedule.detail-every"] == "38"
    assert flags["--pipeline.guidance.settle-after-reset"] == "19"  # still shorter than the reset interval
