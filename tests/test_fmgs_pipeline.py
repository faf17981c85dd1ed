"""The fmgs pipeline on CPU: viewer query fields, eval metrics (feature fidelity, LERF-OVS labels), geometry loading."""

import json
from dataclasses import replace

import pytest
import torch
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerElement

from fmgs_field.data.fmgs_datamanager import FMGSDataManagerConfig
from fmgs_field.evaluation import evaluate_frame, feature_fidelity, summarize
from fmgs_field.fmgs_model import FMGSModelConfig
from fmgs_field.fmgs_pipeline import FMGSPipelineConfig
from fmgs_field.relevancy import relevancy
from fmgs_field.teachers.base import resize_feature_map
from fmgs_field.testing.tiny import tiny_fmgs_field, write_tiny_teachers
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.data.synthetic_scene import write_synthetic_scene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scene_and_teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fmgs_pipeline")
    scene = write_synthetic_scene(root / "scene", num_views=8, width=32, height=24)  # frame_00000 ... frame_00007
    clip, dino = write_tiny_teachers(root / "teachers")
    return root, scene, clip, dino


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def _write_labels(folder):
    """Labels at twice the image resolution (48 x 64): eval frames 0 (one category) and 4 (two); frame 2 is a
    training frame, so it is not evaluated."""
    folder.mkdir()
    frames = {
        "frame_00000": [("a ball", _square(20, 10, 40, 30))],
        "frame_00004": [("a box", _square(30, 20, 50, 40)), ("a ball", _square(5, 5, 20, 25))],
        "frame_00002": [("a ball", _square(0, 0, 10, 10))],
    }
    for stem, objects in frames.items():
        data = {
            "info": {"name": f"{stem}.jpg", "width": 64, "height": 48},
            "objects": [{"category": c, "segmentation": poly} for c, poly in objects],
        }
        (folder / f"{stem}.json").write_text(json.dumps(data))
    return folder


def _pipeline(root, scene, clip, dino, test_mode="val", eval_labels=None, **model_overrides):
    field = tiny_fmgs_field()
    config = FMGSPipelineConfig(
        datamanager=FMGSDataManagerConfig(
            dataparser=SceneDataParserConfig(
                data=scene, num_random_points=60, eval_mode="interval", eval_interval=4
            ),
            clip=clip,
            dino=dino,
            feature_cache_dir=root / "cache",
            eval_labels=eval_labels,
        ),
        model=FMGSModelConfig(fmgs_field=field, feature_start_step=0, num_downscales=0, **model_overrides),
    )
    torch.manual_seed(0)
    return config.setup(device="cpu", test_mode=test_mode)


def test_viewer_query_fields_are_discovered_and_update_embeddings(scene_and_teachers):
    pipeline = _pipeline(*scene_and_teachers)
    teacher, model = pipeline.model.clip_teacher, pipeline.model
    elements = {element.name: (path, element) for path, element in parse_object(pipeline, ViewerElement, "Custom")}
    assert {"FMGS Positives", "FMGS Negatives"} <= set(elements)
    assert elements["FMGS Positives"][0].endswith("clip_teacher/positives_text")
    positives, negatives = elements["FMGS Positives"][1], elements["FMGS Negatives"][1]
    assert negatives.value == "object;things;stuff;texture"

    positives.value = "a mug; a plate;"
    positives.cb_hook(positives)
    assert teacher.positives == ["a mug", "a plate"]
    torch.testing.assert_close(teacher.pos_embeds, teacher.encode_text(["a mug", "a plate"]))
    negatives.value = "a wall"
    negatives.cb_hook(negatives)
    assert teacher.negatives == ["a wall"]
    torch.testing.assert_close(teacher.neg_embeds, teacher.encode_text(["a wall"]))

    # the next render carries one relevancy map per positive, against the edited negatives
    camera, _ = pipeline.datamanager.next_train(0)
    model.eval()
    with model.feature_outputs():
        outputs = model.get_outputs_for_camera(camera)
    assert {"relevancy_0", "relevancy_1", "composited_0", "composited_1"} <= set(outputs)
    pos, neg = teacher.encode_text(["a mug", "a plate"]), teacher.encode_text(["a wall"])
    expected = relevancy(outputs["fmgs_clip"], pos, neg)
    torch.testing.assert_close(outputs["relevancy_1"], resize_feature_map(expected, (24, 32))[..., 1:2])
    assert not torch.equal(teacher.neg_embeds, teacher.canonical_neg_embeds)

    negatives.value = " "  # blank: back to the canonical negatives
    negatives.cb_hook(negatives)
    torch.testing.assert_close(teacher.neg_embeds, teacher.canonical_neg_embeds)
    positives.value = ""
    positives.cb_hook(positives)
    assert teacher.pos_embeds.shape == (0, 16)
    assert not any(k.startswith("relevancy") for k in model.get_outputs_for_camera(camera))


def test_eval_reports_feature_fidelity_and_lerf_ovs_metrics(scene_and_teachers):
    root, scene, clip, dino = scene_and_teachers
    labels = _write_labels(root / "labels")
    # the full-map relevancy path, so that the numbers by hand below are the same computation
    pipeline = _pipeline(root, scene, clip, dino, test_mode="test", eval_labels=labels, relevancy_basis_tol=-1.0)
    dm, model = pipeline.datamanager, pipeline.model
    with torch.no_grad():  # an untrained field is nearly constant, which leaves the relevancy masks to rounding noise
        for p in model.fmgs_field.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    assert dm.train_clip_maps == [] and dm.eval_clip_maps == []  # "test" mode: no training maps; eval maps lazily
    assert sorted(dm.eval_labels) == [0, 1]  # eval split = frames 0 and 4; frame 2 (train) is skipped

    metrics = pipeline.get_average_eval_image_metrics()
    assert len(dm.eval_clip_maps) == 2
    for key in ("psnr", "ssim", "feature_fidelity_clip", "feature_fidelity_dino", "miou", "localization_accuracy"):
        assert key in metrics, key
    assert not any(k.startswith("lerf_ovs") for k in metrics)
    assert metrics["num_label_queries"] == 3

    # the same numbers by hand: render each eval frame, relevancy to its categories at label resolution
    results, fidelity = [], []
    model.eval()
    for i, (camera, batch) in enumerate(dm.eval_batches()):
        with torch.no_grad(), model.feature_outputs():
            outputs = model.get_outputs_for_camera(camera)
        fidelity.append(feature_fidelity(outputs["fmgs_clip"], batch["fmgs_clip"]).item())
        frame = batch["fmgs_labels"]
        assert (frame.height, frame.width) == (48, 64)
        text = model.clip_teacher.encode_text(list(frame.masks))
        with torch.no_grad():  # the full CLIP map rendered at the labels' 48 x 64, not the 12 x 16 feature map resized
            full = model.render_feature_maps(camera, size=(48, 64))["fmgs_clip"]
        rel = relevancy(full, text, model.clip_teacher.canonical_neg_embeds)
        results.append(evaluate_frame({c: rel[..., j] for j, c in enumerate(frame.masks)}, frame))
    expected = summarize(results)
    assert [len(r) for r in results] == [1, 2]
    assert metrics["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    assert metrics["localization_accuracy"] == pytest.approx(expected["localization_accuracy"], abs=1e-6)
    assert metrics["feature_fidelity_clip"] == pytest.approx(sum(fidelity) / 2, abs=1e-5)
    assert -1.0 <= metrics["feature_fidelity_dino"] <= 1.0

    # one-image evaluation (the trainer's eval-image callback) reports the per-frame sums
    one, _ = pipeline.get_eval_image_metrics_and_images(step=0)
    assert one["lerf_ovs_queries"] in (1.0, 2.0) and "feature_fidelity_clip" in one


def test_eval_without_dino_weights_skips_fidelity(scene_and_teachers, tmp_path):
    root, scene, clip, dino = scene_and_teachers
    missing = replace(dino, pretrained=str(tmp_path / "no_such_dino"))
    pipeline = _pipeline(root, scene, clip, missing, test_mode="test")  # "test" mode loads no DINO at set-up
    metrics = pipeline.get_average_eval_image_metrics()
    assert "psnr" in metrics and not any(k.startswith("feature_fidelity") for k in metrics)


def test_geometry_checkpoint_without_field_loads(scene_and_teachers):
    """A splatting checkpoint (vlm-fastgs: same Gaussians, no fmgs_field.*) loads, so features can be trained on it."""
    pipeline = _pipeline(*scene_and_teachers)
    state = {k: v.clone() if torch.is_tensor(v) else v for k, v in pipeline.state_dict().items() if "fmgs_field" not in k}
    with torch.no_grad():
        state["_model.gauss_params.means"] += 1.0
    fresh = _pipeline(*scene_and_teachers)
    field_before = {k: v.clone() for k, v in fresh.model.fmgs_field.state_dict().items()}
    fresh.load_pipeline(state, step=30000)
    torch.testing.assert_close(fresh.model.gauss_params["means"], state["_model.gauss_params.means"])
    assert fresh.model.in_feature_phase()
    for k, v in fresh.model.fmgs_field.state_dict().items():
        assert torch.equal(v, field_before[k])
