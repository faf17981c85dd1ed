"""Bad input through the command-line tools is one ``error:`` line and exit status 1 (issue 10, items 7, 9, 10).

The dataparser's cases are tested in-process in ``test_scene_dataparser.py``; here the ends a user meets: ns-train
without a terminal, an unusable ``--output-dir``, and ns-eval on a missing, truncated or foreign checkpoint.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from splat_core.compat import CheckpointError, find_checkpoint, load_checkpoint_file
from splat_core.data.synthetic_scene import write_synthetic_scene
from splat_core.testing import write_colmap_scene
from vlm_instruct_gs.testing.cpu_runs import trainer_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BIN = Path(sys.executable).parent


def _cli(name: str, *args: str) -> subprocess.CompletedProcess:
    """Run a CLI without a terminal (stdin from /dev/null, as under a batch job)."""
    return subprocess.run([str(BIN / name), *args], capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> Path:
    """config.yml of a 2-step vlm-fastgs run (CPU) with its checkpoint in nerfstudio_models/."""
    scene = write_synthetic_scene(tmp_path_factory.mktemp("scene"), num_views=10, width=48, height=36)
    config = trainer_config(scene, tmp_path_factory.mktemp("runs"), 2)
    config.save_config()
    trainer = config.setup()
    trainer.setup()
    trainer.train()
    assert len(list(trainer.checkpoint_dir.glob("step-*.ckpt"))) == 1
    return trainer.base_dir / "config.yml"


def test_ns_train_missing_downscaled_folder_without_a_terminal(tmp_path):
    """nerfstudio asked on stdin (EOFError without one) and answered yes left an empty images_8/ behind."""
    scene = write_colmap_scene(tmp_path / "scene")
    result = _cli("ns-train", "vlm-fastgs", "--data", str(scene), "--output-dir", str(tmp_path / "out"),
                  "--machine.device-type", "cpu", "--vis", "tensorboard", "--pipeline.guidance.source", "none",
                  "colmap", "--downscale-factor", "8")
    line = _one_error_line(result)
    assert line.startswith("error: no images_8/ for --downscale-factor 8 in ") and "(it has images/)" in line
    assert sorted(p.name for p in scene.iterdir()) == ["images", "sparse"]


def test_ns_train_output_dir_under_a_file(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file")
    result = _cli("ns-train", "vlm-fastgs", "--data", str(tmp_path), "--output-dir", str(blocker / "runs"),
                  "--machine.device-type", "cpu", "--vis", "tensorboard")
    line = _one_error_line(result)
    assert line.startswith("error: cannot create the run folder ") and f"({blocker} is a file, not a folder)" in line


def test_ns_eval_garbage_checkpoint(run_config, tmp_path):
    checkpoint = find_checkpoint(run_config.parent / "nerfstudio_models")
    saved = checkpoint.read_bytes()
    try:
        checkpoint.write_bytes(b"\x80\x02}q\x00(X\x04\x00\x00\x00junk" + bytes(range(256)) * 8)  # a pickle-ish mess
        line = _one_error_line(_cli("ns-eval", "--load-config", str(run_config), "--output-path",
                                    str(tmp_path / "eval.json")))
    finally:
        checkpoint.write_bytes(saved)
    assert line.startswith(f"error: checkpoint {checkpoint} ") and "weights_only=False" not in line, line


def test_eval_setup_checkpoint_errors_are_one_line(run_config):
    """ns-eval / ns-viewer / ns-render all go through eval_utils.eval_setup, which the model's set-up points at
    splat_core.compat's loader (in-process here, one subprocess above)."""
    from nerfstudio.utils.eval_utils import eval_setup

    models = run_config.parent / "nerfstudio_models"
    checkpoint = find_checkpoint(models)
    saved = checkpoint.read_bytes()
    _, pipeline, path, step = eval_setup(run_config)  # the intact checkpoint loads as before
    assert path == checkpoint and step == 1 and pipeline.model.num_points > 0
    cases = {
        "truncated": (saved[: len(saved) // 2], r"\(\d+ bytes\) is truncated or corrupt and cannot be read"),
        "empty": (b"", r"is empty \(0 bytes\)"),
        "text": (b"hello, not a checkpoint\n" * 10, r"truncated or corrupt|is not a torch checkpoint"),
    }
    try:
        for name, (content, expected) in cases.items():
            checkpoint.write_bytes(content)
            with pytest.raises(CheckpointError, match=rf"^error: checkpoint {checkpoint} .*{expected}") as err:
                eval_setup(run_config)
            assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value), name
        checkpoint.unlink()
        with pytest.raises(CheckpointError, match=rf"^error: checkpoint folder {models} holds no step-\*.ckpt"):
            eval_setup(run_config)
    finally:
        checkpoint.write_bytes(saved)


def test_checkpoint_loader_names_refused_types(tmp_path):
    """A checkpoint with a type weights_only loading refuses is named, never 'set weights_only=False'."""
    path = tmp_path / "step-000000001.ckpt"
    torch.save({"step": 1, "pipeline": {}, "extra": Path("x")}, path)
    with pytest.raises(CheckpointError, match=r"holds the type pathlib\.\w*Path, which safe loading"):
        load_checkpoint_file(path)
    with pytest.raises(CheckpointError, match=r"has no checkpoint of step 7; it has steps \[1\]"):
        find_checkpoint(tmp_path, 7)
    with pytest.raises(CheckpointError, match=r"checkpoint folder .*nope does not exist"):
        find_checkpoint(tmp_path / "nope")
