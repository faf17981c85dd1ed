"""``benchmarks/bench_fmgs.py`` runs on CPU with its tiny preset and writes its JSON and Markdown reports."""

import json

import pytest

from benchmarks.bench_fmgs import main as bench_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bench_tiny_on_cpu(tmp_path):
    results = bench_main(["--tiny", "--device", "cpu", "--steps", "3", "--renders", "2", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["gpu"] == "cpu" and saved["command"].endswith(f"--out {tmp_path}")
    if saved["teachers"]["kind"] == "tiny-random":  # no real weights here: the report must say so
        assert "TINY RANDOM TEACHERS" in (tmp_path / "results.md").read_text()
        assert "unavailable" in saved["teachers"]["note"]
    assert saved["scene"]["num_gaussians"] == 2000 and saved["scene"]["image_size"] == "48x36"
    assert saved["training"]["steps"] == 3 and saved["training"]["wall_s"] > 0
    render = saved["render"]
    assert render["resolution"] == [64, 36] and render["feature_map_resolution"] == [32, 18]
    assert {"rgb", "relevancy_0", "composited_0"} <= set(render["output_keys"])
    assert render["full_output"]["renders"] == 2 and render["full_output"]["fps"] > 0
    # the fast relevancy path renders fewer channels than the CLIP width and matches the full-map reference
    assert 1 <= render["relevancy_channels"]["rendered"] <= render["relevancy_channels"]["clip_dim"]
    assert render["relevancy_max_abs_diff"] < 1e-3 and render["basis_rebuild"]["ms_per_frame"] > 0
    for key in ("psnr", "feature_fidelity_clip", "feature_fidelity_dino"):
        assert -1.0 <= saved["eval"][key] <= 100.0
    assert results["render"] == render
