"""benchmarks/compare_methods.py end to end on CPU (tiny budget), so the recorded benchmark stays re-runnable."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_methods.py"


@pytest.mark.slow
def test_compare_methods_writes_report(transforms_scene, tmp_path):
    out = tmp_path / "bench"
    common = ["--data", str(transforms_scene), "--downscale", "1", "--iterations", "12", "--out", str(out),
              "--runs-dir", str(tmp_path / "runs")]
    methods = ("vlm-fastgs", "vlm-fastgs:default+none", "vlm-fastgs+image-evidence")
    for method in methods:
        result = subprocess.run([sys.executable, str(SCRIPT), *common, "--run-one", method],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(SCRIPT), *common, "--report-only",
                             "--methods", *methods], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == set(methods)
    for row in rows.values():
        assert 0 < row["metrics"]["psnr"] < 60 and row["num_gaussians"] > 0 and row["curves"]["loss"]
        assert row["gpu"] == "cpu" and row["num_gaussians"] == row["curves"]["gaussians"][-1][1]
        assert 0.0 <= row["metrics"]["coverage"] <= 1.0 and Path(row["checkpoint"]).is_file()
        # 12 steps end before every phase does: each phase-end count is the final count
        assert row["gaussians_at_phase_end"] == dict.fromkeys(("detail", "subject", "artifacts"), row["num_gaussians"])
    assert rows["vlm-fastgs"]["guidance"] is None
    guided = rows["vlm-fastgs+image-evidence"]["guidance"]
    assert guided["source"] == "image-evidence" and guided["phases"] == {} and guided["dropped_queries"] == 0
    assert (out / "curves.png").stat().st_size > 10_000
    md = (out / "results.md").read_text()
    assert "| vlm-fastgs:default+none |" in md and "## Guidance" in md and "against unguided vlm-fastgs" in md


def _script():
    spec = importlib.util.spec_from_file_location("compare_methods", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_counts_at_reads_the_last_logged_count_before_each_phase_end():
    curve = [[0, 100], [500, 180], [7999, 900], [8000, 1500], [13000, 4000], [19999, 3500]]
    ends = {"detail": 8000, "subject": 14000, "artifacts": 15000, "early": 0}
    assert _script().counts_at(curve, ends) == {"detail": 900, "subject": 4000, "artifacts": 4000}


def test_guidance_table_reports_phases_and_overhead():
    base = {"method": "vlm-fastgs", "train_wall_s": 200.0, "guidance": None}
    guided = {"method": "vlm-fastgs+vlm", "train_wall_s": 230.0, "guidance": {
        "source": "vlm", "worker_busy_s": 40.0, "main_thread_snapshot_s": 1.5, "main_thread_apply_s": 2.0,
        "dropped_queries": 1, "phases": {"detail": {"queries": 15, "boxes": 7, "source_s": 30.0,
                                                    "densify_gaussians": 1200, "prune_gaussians": 0, "errors": 0}}}}
    lines = _script().guidance_table([base, guided])
    assert "| vlm-fastgs+vlm | detail | 15 | 7 | 30.0 | 1,200 | 0 |" in lines
    assert any("+15.0% against unguided" in line and "1 queries dropped" in line for line in lines)
