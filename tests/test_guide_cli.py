"""cli.py (vlm-gs-guide) end to end: image evidence, the tiny Qwen3-VL, and one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from vlm_instruct_gs.guidance.cli import main

H, W = 64, 96


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture()
def scene(tmp_path):
    """A red square (rows 16-48, cols 48-80) on a blue-grey background."""
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = (40, 70, 150)
    img[16:48, 48:80] = (230, 30, 30)
    path = tmp_path / "render.png"
    Image.fromarray(img).save(path)
    return path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_image_evidence_subject_writes_background_mask(scene, tmp_path, capsys):
    mask_path = tmp_path / "out" / "mask.png"
    code, out, _ = run_cli(
        capsys, "--phase", "subject", "--image", scene, "--source", "image-evidence", "--out-mask", mask_path
    )
    assert code == 0
    result = json.loads(out)
    assert result["phase"] == "subject" and (result["height"], result["width"]) == (H, W)
    assert len(result["boxes"]) == 1 and result["mask"] == str(mask_path)
    x1, y1, x2, y2 = result["boxes"][0]["bbox_2d"]
    assert abs(x1 - 500) < 40 and abs(y1 - 250) < 40 and abs(x2 - 833) < 40 and abs(y2 - 750) < 40
    mask = np.array(Image.open(mask_path))
    assert mask.shape == (H, W) and mask[32, 64] == 0 and mask[2, 2] == 255  # densify the background

    code, _, _ = run_cli(
        capsys,
        "--phase",
        "subject",
        "--image",
        scene,
        "--source",
        "image-evidence",
        "--out-mask",
        mask_path,
        "--mask-boxes",
    )
    mask = np.array(Image.open(mask_path))
    assert code == 0 and mask[32, 64] == 255 and mask[2, 2] == 0


def test_image_evidence_artifacts_with_reference_and_error_map(scene, tmp_path, capsys):
    reference = np.array(Image.open(scene))
    reference[16:48, 48:80] = (40, 70, 150)  # the training view has no red square
    ref_path = tmp_path / "reference.png"
    Image.fromarray(reference).save(ref_path)
    code, out, _ = run_cli(
        capsys, "--phase", "artifacts", "--image", scene, "--source", "image-evidence", "--reference", ref_path
    )
    assert code == 0 and len(json.loads(out)["boxes"]) == 1

    err = np.zeros((H, W), np.uint8)
    err[0:16, 0:32] = 200
    err_path = tmp_path / "err.png"
    Image.fromarray(err).save(err_path)
    code, out, _ = run_cli(
        capsys, "--phase", "artifacts", "--image", scene, "--source", "image-evidence", "--error-map", err_path
    )
    boxes = json.loads(out)["boxes"]
    assert code == 0 and len(boxes) == 1 and boxes[0]["bbox_2d"][0] < 40 and boxes[0]["bbox_2d"][3] < 300


def test_tiny_vlm_end_to_end(scene, tiny_vlm_dir, tmp_path, capsys):
    mask_path = tmp_path / "vlm_mask.png"
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("# my prompt\nBox the blurry parts as JSON.\n")
    small = ["--max-new-tokens", "8", "--min-pixels", "1024", "--max-pixels", "4096", "--device", "cpu"]
    code, out, _ = run_cli(
        capsys,
        "--phase",
        "detail",
        "--image",
        scene,
        "--model",
        tiny_vlm_dir,
        "--out-mask",
        mask_path,
        "--prompt-file",
        prompt,
        *small,
    )
    assert code == 0
    result = json.loads(out)
    assert result["source"] == "vlm" and isinstance(result["answer"], str) and isinstance(result["boxes"], list)
    assert np.array(Image.open(mask_path)).shape == (H, W)


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--image", "MISSING.png"], "image not found"),
        (["--model", "/nonexistent/qwen3-vl"], "VLMBackendConfig.model_path='/nonexistent/qwen3-vl'"),
        (["--prompt-file", "missing_prompt.txt"], "prompt file not found"),
        (["--source", "image-evidence", "--reference", "missing_ref.png"], "reference image not found"),
    ],
)
def test_errors_are_one_line_and_nonzero(scene, capsys, extra, needle):
    argv = ["--phase", "artifacts", "--image", scene, "--model", "/nonexistent/qwen3-vl"]
    if "--image" in extra:
        argv = argv[:2] + argv[4:]
    code, out, err = run_cli(capsys, *argv, *extra)
    assert code == 2 and out == ""
    lines = [ln for ln in err.splitlines() if ln.startswith("vlm-gs-guide: error:")]
    assert len(lines) == 1 and needle in lines[0]


def test_artifacts_evidence_needs_reference(scene, capsys):
    code, _, err = run_cli(capsys, "--phase", "artifacts", "--image", scene, "--source", "image-evidence")
    assert code == 2 and "--reference" in err


def test_bad_arguments_are_one_line_too(scene, capsys):
    code, out, err = run_cli(capsys, "--phase", "colour", "--image", scene)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("vlm-gs-guide: error:") and "'colour'" in err and "--help" in err
    code, _, err = run_cli(capsys, "--image", scene)  # --phase missing
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--phase" in err


def test_subject_without_boxes_writes_an_empty_mask_as_training_applies_nothing(tmp_path, capsys):
    flat = tmp_path / "flat.png"
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(flat)
    mask_path = tmp_path / "mask.png"
    code, out, _ = run_cli(capsys, "--phase", "subject", "--image", flat, "--source", "image-evidence",
                           "--out-mask", mask_path)
    assert code == 0 and json.loads(out)["boxes"] == []
    assert not np.array(Image.open(mask_path)).any()  # the same rule as training: no answer is no guidance


def _run_subprocess(*argv):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.getcwd(), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "vlm_instruct_gs.guidance.cli", *map(str, argv)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_unreadable_depth_and_unwritable_mask_are_one_line_errors(scene, tmp_path):
    """vlm-gs-guide as users run it: a depth that is not a .npy and a mask path under a regular file."""
    not_npy = tmp_path / "depth.png"
    not_npy.write_bytes(scene.read_bytes())
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cases = [
        (["--phase", "subject", "--image", scene, "--source", "image-evidence", "--depth", not_npy], "cannot read depth"),
        (["--phase", "subject", "--image", scene, "--source", "image-evidence", "--out-mask", blocker / "m.png"],
         "cannot write mask"),
    ]
    for argv, needle in cases:
        done = _run_subprocess(*argv)
        assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("vlm-gs-guide: error:") and needle in lines[0]
