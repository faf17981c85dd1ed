"""``fmgs-query`` and ``ns-eval`` end to end on a run trained with nerfstudio's own ``ns-train`` code path in-process
(CPU, tiny teachers given by file paths), in the README's two-stage workflow: 6 steps of ``vlm-fastgs`` (geometry),
then ``fmgs --load-checkpoint`` on that checkpoint with features from step 6 to 11."""

import copy
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from nerfstudio.scripts.train import main as ns_train_main
from PIL import Image

from fmgs_field.field import FMGSField, FMGSFieldHeadNames
from fmgs_field.fmgs_config import fmgs
from fmgs_field.query_cli import main as fmgs_query
from fmgs_field.query_cli import query_slug, split_phrases
from fmgs_field.testing.tiny import tiny_fmgs_field, write_tiny_teachers
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.testing import write_transforms_scene
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs

TINY_FIELD = tiny_fmgs_field()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cpu_run(config, root, steps):
    config.output_dir = root / "outputs"
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.max_num_iterations = steps
    config.steps_per_save = 1000
    config.steps_per_eval_image = config.steps_per_eval_all_images = 1000
    config.data = root / "scene"
    config.pipeline.datamanager.dataparser = SceneDataParserConfig(num_random_points=60)
    config.pipeline.model.num_downscales = 0
    ns_train_main(config)
    runs = sorted((root / "outputs").rglob(f"{config.method_name}/*/config.yml"))
    assert len(runs) == 1
    return runs[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """vlm-fastgs steps 0-5, then fmgs from its checkpoint, steps 6-11 (all feature steps), on a 7 + 1 view
    transforms.json scene; the fmgs run's config.yml."""
    root = tmp_path_factory.mktemp("fmgs_query")
    write_transforms_scene(root / "scene")

    geometry_config = copy.deepcopy(vlm_fastgs.config)
    if hasattr(geometry_config.pipeline, "guidance"):  # no VLM weights here
        geometry_config.pipeline.guidance.source = "none"
    geometry = _cpu_run(geometry_config, root, steps=6)
    geometry_ckpt = geometry.parent / "nerfstudio_models" / "step-000000005.ckpt"
    assert geometry_ckpt.is_file()

    clip, dino = write_tiny_teachers(root / "teachers")  # by path: config.yml reloads them in any process
    config = copy.deepcopy(fmgs.config)
    config.load_checkpoint = geometry_ckpt
    dm = config.pipeline.datamanager
    dm.clip, dm.dino, dm.feature_cache_dir = clip, dino, root / "cache"
    config.pipeline.model.fmgs_field, config.pipeline.model.feature_start_step = TINY_FIELD, 6
    run = _cpu_run(config, root, steps=6)  # the trainer resumes at step 6 and runs 6 more
    state = torch.load(run.parent / "nerfstudio_models" / "step-000000011.ckpt", map_location="cpu", weights_only=False)
    geometry_state = torch.load(geometry_ckpt, map_location="cpu", weights_only=False)
    for key in ("means", "scales", "opacities"):  # the Gaussians came from the geometry run and stayed frozen
        key = f"_model.gauss_params.{key}"
        assert torch.equal(state["pipeline"][key], geometry_state["pipeline"][key])
    return run


def test_helpers():
    assert split_phrases(" a mug; a plate;; ") == ["a mug", "a plate"] and split_phrases(None) == []
    assert query_slug("A Mug!") == "a_mug" and query_slug("???") == "query"


def test_query_split_writes_heatmaps_and_exports_features(trained_run, tmp_path):
    ckpts = sorted((trained_run.parent / "nerfstudio_models").glob("step-*.ckpt"))
    assert [c.name for c in ckpts] == ["step-000000011.ckpt"]
    out = tmp_path / "heatmaps"
    fmgs_query([
        "--load-config", str(trained_run), "--query", "a mug;a plate", "--output-dir", str(out), "--split", "test",
        "--save-relevancy", "--export-gaussian-features",
    ])
    summary = json.loads((out / "queries.json").read_text())
    assert summary["positives"] == ["a mug", "a plate"] and summary["step"] == 11
    assert summary["negatives"] == ["object", "things", "stuff", "texture"]
    assert summary["frames"] == ["000"]  # 8 frames, eval interval 8: frame 0 is the eval frame
    for folder in ("a_mug", "a_plate"):
        png = np.asarray(Image.open(out / folder / "000.png"))
        assert png.shape == (24, 32, 3) and png.dtype == np.uint8
        rel = np.load(out / folder / "000.npy")
        assert rel.shape == (24, 32) and rel.dtype == np.float16 and ((rel > 0) & (rel < 1)).all()

    # per-Gaussian features: the trained field of the checkpoint evaluated at the checkpoint's means
    export = torch.load(trained_run.parent / "fmgs_gaussian_features-000000011.pt", weights_only=True)
    state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["pipeline"]
    means = state["_model.gauss_params.means"]
    assert export["step"] == 11 and torch.equal(export["means"], means)
    assert export["clip"].shape == (means.shape[0], 16) and export["dino"].shape == (means.shape[0], 24)
    assert export["clip"].dtype == torch.float16 and export["opacities"].shape == (means.shape[0],)
    field = FMGSField(TINY_FIELD)
    prefix = "_model.fmgs_field."
    field.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    with torch.no_grad():
        expected = field(means)
    torch.testing.assert_close(export["clip"].float(), expected[FMGSFieldHeadNames.CLIP], atol=2e-3, rtol=0)
    torch.testing.assert_close(export["dino"].float(), expected[FMGSFieldHeadNames.DINO], atol=2e-3, rtol=2e-3)
    # the exported field is the trained one: its optimiser stepped in feature steps 6..11
    optimizer_state = torch.load(ckpts[0], map_location="cpu", weights_only=False)["optimizers"]["fmgs_field"]
    assert {int(s["step"]) for s in optimizer_state["state"].values()} == {6}


def test_query_camera_path_and_custom_negatives(trained_run, tmp_path):
    """With the tiny CLIP architecture unregistered first, as in a fresh ``fmgs-query`` process: it must come back
    from the ``model_config_file`` path stored in config.yml. (A real subprocess costs 20 s of imports here.)"""
    from open_clip import factory

    name = "fmgs-tiny-clip-16"  # write_tiny_teachers' name for a 16-d CLIP
    factory._MODEL_CONFIGS.pop(name, None)
    factory._MODEL_CONFIG_PATHS[:] = [p for p in factory._MODEL_CONFIG_PATHS if name not in str(p)]
    assert name not in open_clip.list_models()
    cameras = SceneDataParserConfig(data=trained_run.parents[3].parent / "scene", num_random_points=60).setup()
    cameras = cameras.get_dataparser_outputs("train").cameras
    fov = math.degrees(2 * math.atan(12.0 / float(cameras.fy[0])))
    path = {
        "render_height": 36, "render_width": 48, "camera_type": "perspective", "seconds": 1.0,
        "camera_path": [
            {"camera_to_world": torch.cat([c2w, torch.tensor([[0.0, 0, 0, 1]])]).reshape(-1).tolist(), "fov": fov,
             "aspect": 4 / 3}
            for c2w in cameras.camera_to_worlds[:3]
        ],
    }
    (tmp_path / "path.json").write_text(json.dumps(path))
    out = tmp_path / "orbit"
    fmgs_query([
        "--load-config", str(trained_run), "--query", "a chair", "--negatives", "a wall;a floor",
        "--camera-path", str(tmp_path / "path.json"), "--output-dir", str(out),
    ])
    assert name in open_clip.list_models()
    summary = json.loads((out / "queries.json").read_text())
    assert summary["negatives"] == ["a wall", "a floor"]
    frames = sorted(p.name for p in (out / "a_chair").iterdir())
    assert frames == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    assert np.asarray(Image.open(out / "a_chair" / "frame_00001.png")).shape == (36, 48, 3)


def test_ns_eval_reports_feature_fidelity(trained_run, tmp_path):
    from nerfstudio.scripts.eval import ComputePSNR

    ComputePSNR(load_config=trained_run, output_path=tmp_path / "eval.json").main()
    results = json.loads((tmp_path / "eval.json").read_text())["results"]
    for key in ("psnr", "ssim", "feature_fidelity_clip", "feature_fidelity_dino", "feature_fidelity_clip_std"):
        assert key in results, key
    assert -1.0 <= results["feature_fidelity_clip"] <= 1.0 and "miou" not in results


def test_eval_labels_after_training(trained_run, tmp_path):
    """Labels for frames 1 and 5 (training frames): evaluated because every image joins the eval split."""
    labels = tmp_path / "labels"
    labels.mkdir()
    for stem, categories in (("001", ["a mug", "a plate"]), ("005", ["a mug"])):
        objects = [{"category": c, "segmentation": [[2, 2], [20, 2], [20, 15], [2, 15]]} for c in categories]
        data = {"info": {"name": f"{stem}.png", "width": 32, "height": 24}, "objects": objects}
        (labels / f"frame_{stem}.json").write_text(json.dumps(data))
    fmgs_query(["--load-config", str(trained_run), "--eval-labels", str(labels), "--output-dir", str(tmp_path)])
    report = json.loads((tmp_path / "lerf_ovs_metrics.json").read_text())
    metrics = report["metrics"]
    assert report["step"] == 11 and report["all_images"]
    assert metrics["num_label_queries"] == 3
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["localization_accuracy"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert "feature_fidelity_clip" in metrics


def test_nothing_to_do_is_an_error(trained_run):
    with pytest.raises(SystemExit, match="nothing to do"):
        fmgs_query(["--load-config", str(trained_run)])


def test_missing_config_is_one_error_line(tmp_path):
    missing = tmp_path / "no_run" / "config.yml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "fmgs_field.query_cli", "--load-config", str(missing), "--query", "a"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --load-config") and str(missing) in last, out.stderr[-2000:]
    assert not missing.parent.exists()
