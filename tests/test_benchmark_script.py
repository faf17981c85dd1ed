"""benchmarks/compare_methods.py end to end on CPU (tiny budget), so the recorded benchmark stays re-runnable."""

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
    for method in ("vlm-fastgs", "vlm-fastgs:default+none"):
        result = subprocess.run([sys.executable, str(SCRIPT), *common, "--run-one", method],
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, str(SCRIPT), *common, "--report-only",
                             "--methods", "vlm-fastgs", "vlm-fastgs:default+none"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "results.json").read_text())
    rows = {r["method"]: r for r in report["results"]}
    assert set(rows) == {"vlm-fastgs", "vlm-fastgs:default+none"}
    for row in rows.values():
        assert 0 < row["metrics"]["psnr"] < 60 and row["num_gaussians"] > 0 and row["curves"]["loss"]
        assert row["gpu"] == "cpu" and row["num_gaussians"] == row["curves"]["gaussians"][-1][1]
    assert (out / "curves.png").stat().st_size > 10_000
    assert "| vlm-fastgs:default+none |" in (out / "results.md").read_text()
