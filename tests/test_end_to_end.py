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

from tests.conftest import shared_scene

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _cli(name: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=timeout)


def _config(root: Path) -> Path:
    configs = sorted(root.glob("*/*/*/config.yml"))
    assert configs, f"ns-train wrote no config.yml under {root}"
    return configs[-1]


@pytest.fixture(scope="module")
def beer_can_run(tmp_path_factory) -> Path:
    """vlm-fastgs (FastGS strategy) trained 100 steps on beer_can (4x), via the colmap subcommand with no path flags."""
    scene = shared_scene("beer_can")
    out = tmp_path_factory.mktemp("runs")
    result = _cli(
        "ns-train", "vlm-fastgs", "--data", str(scene), "--output-dir", str(out), "--machine.device-type", "cpu",
        "--max-num-iterations", "100", "--vis", "tensorboard", "--steps-per-save", "100",
        "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000",
        "--pipeline.model.fastgs.refine-start-iter", "10", "--pipeline.model.fastgs.refine-every", "20",
        "colmap", "--downscale-factor", "4",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return _config(out)


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
