"""End to end through the command-line tools a user runs: ns-train, ns-eval, ns-render, ns-viewer (CPU)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splat_core.testing import shared_scene

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _cli(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=timeout)


def _config(root: Path) -> Path:
    configs = sorted(root.glob("*/*/*/config.yml"))
    assert configs, f"ns-train wrote no config.yml under {root}"
    return configs[-1]


# Weights-free guidance (no Qwen3-VL weights in CI) on a schedule compressed into 100 steps: detail queries at
# 10, 20, 30, subject at 40, 60, artifacts at 50, 70; each answer is applied at the first refine step (20, 40, 60, 80)
# at least 10 steps after its query (the deterministic mode's apply delay, 200 steps by default, scaled down).
GUIDANCE_FLAGS = (
    "--pipeline.guidance.source", "image-evidence", "--pipeline.guidance.wait-for-results", "True",
    "--pipeline.guidance.apply-delay", "10",
    "--pipeline.guidance.schedule.detail-start", "10", "--pipeline.guidance.schedule.detail-stop", "40",
    "--pipeline.guidance.schedule.detail-every", "10", "--pipeline.guidance.schedule.subject-start", "40",
    "--pipeline.guidance.schedule.subject-stop", "70", "--pipeline.guidance.schedule.subject-every", "20",
    "--pipeline.guidance.schedule.artifacts-start", "50", "--pipeline.guidance.schedule.artifacts-stop", "80",
    "--pipeline.guidance.schedule.artifacts-every", "20",
)


@pytest.fixture(scope="module")
def beer_can_run(tmp_path_factory) -> Path:
    """vlm-fastgs (FastGS strategy) trained 100 steps on beer_can (4x), via the colmap subcommand with no path flags,
    guided by the weights-free image-evidence source through all three phases."""
    scene = shared_scene("beer_can")
    out = tmp_path_factory.mktemp("runs")
    result = _cli(
        "ns-train", "vlm-fastgs", "--data", str(scene), "--output-dir", str(out), "--machine.device-type", "cpu",
        "--max-num-iterations", "100", "--vis", "tensorboard", "--steps-per-save", "100",
        "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000",
        "--pipeline.model.fastgs.refine-start-iter", "10", "--pipeline.model.fastgs.refine-every", "20",
        *GUIDANCE_FLAGS,
        "colmap", "--downscale-factor", "4",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _config(out)


def test_guidance_phases_ran_and_left_records(beer_can_run):
    folder = beer_can_run.parent / "guidance"
    applied = [json.loads(line) for line in (folder / "applied.jsonl").read_text().splitlines()]
    assert {a["phase"] for a in applied} == {"detail", "subject", "artifacts"}
    assert {a["step"] for a in applied} <= {20, 40, 60, 80}
    assert len(list(folder.glob("step_*_view_*.json"))) == 7 * 4  # 7 queries x 4 views
    assert list(folder.glob("step_00050_artifacts_view_*.png"))


def test_missing_vlm_weights_stop_ns_train_with_one_line(transforms_scene, tmp_path):
    """The default source is the VLM: without its weights (offline, empty cache) ns-train stops before training."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [str(BIN / "ns-train"), "vlm-fastgs", "--data", str(transforms_scene), "--output-dir", str(tmp_path / "out"),
         "--machine.device-type", "cpu", "--vis", "tensorboard"],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the VLM guidance source could not load --pipeline.vlm.model-path")
    assert "--pipeline.guidance.source image-evidence" in last
    assert not list((tmp_path / "out").rglob("*.ckpt"))


def test_train_then_eval(beer_can_run, tmp_path):
    ckpts = list((beer_can_run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert len(ckpts) == 1
    out = tmp_path / "eval.json"
    result = _cli("ns-eval", "--load-config", str(beer_can_run), "--output-path", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    res = json.loads(out.read_text())["results"]
    assert 5.0 < res["psnr"] < 60.0 and 0.0 < res["ssim"] <= 1.0
    # FastGS refinements at steps 20, 40, 60, 80 densify (split/clone) Gaussians under multi-view error
    assert res["num_gaussians"] > 100.0


def test_render_from_checkpoint(beer_can_run, tmp_path):
    result = _cli("ns-render", "dataset", "--load-config", str(beer_can_run), "--output-path", str(tmp_path),
                  "--split", "test", "--rendered-output-names", "rgb")
    assert result.returncode == 0, result.stderr[-3000:]
    frames = list(tmp_path.rglob("*.jpg")) + list(tmp_path.rglob("*.png"))
    assert len(frames) == 9  # beer_can has 71 frames; every 8th is a test frame


def test_viewer_loads_checkpoint(beer_can_run):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(BIN / "ns-viewer"), "--load-config", str(beer_can_run), "--viewer.websocket-port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 300
        up = False
        while time.time() < deadline and proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    up = True
                    break
            time.sleep(1)
        assert up, f"ns-viewer exited ({proc.poll()}) or never served port {port}"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out[-3000:]


def test_bad_data_is_one_line_and_nonzero(tmp_path):
    result = _cli("ns-train", "vlm-fastgs", "--data", str(tmp_path / "missing"), "--machine.device-type", "cpu")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: data folder {tmp_path / 'missing'} does not")


def test_method_is_registered():
    result = _cli("ns-train", "--help")
    assert result.returncode == 0 and "vlm-fastgs" in result.stdout
    result = _cli("ns-train", "vlm-fastgs", "colmap", "--help")
    assert result.returncode == 0 and "(default: sparse/0)" in result.stdout
