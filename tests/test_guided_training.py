"""Guided training on CPU: the phases fire in a short in-process run and change the Gaussians versus no guidance."""

import json
import logging

import pytest
import torch
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.utils import writer
from nerfstudio.viewer.utils import parse_object
from nerfstudio.viewer.viewer_elements import ViewerText

import splat_core.strategy.fastgs as fastgs_module
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.strategy import FastGSStrategy
from splat_core.testing import write_transforms_scene
from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.guidance.sources import GuidanceSetupError
from vlm_instruct_gs.guidance.vlm_backend import VLMBackendConfig
from vlm_instruct_gs.testing.guided_runs import (
    STEPS,
    EmptyAnswerBackend,
    FixedAnswerBackend,
    FloaterAnswerBackend,
)
from vlm_instruct_gs.testing.guided_runs import (
    guided_pipeline as _pipeline,
)
from vlm_instruct_gs.testing.guided_runs import (
    same as _same,
)
from vlm_instruct_gs.testing.guided_runs import (
    train_steps as _train,
)
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig
from vlm_instruct_gs.vlm_fastgs_pipeline import VLMFastGSPipelineConfig


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """conftest's transforms_scene, built once for the module: 8 noise images (32x24) from a ring of cameras."""
    return write_transforms_scene(tmp_path_factory.mktemp("scene"))


@pytest.fixture(scope="module")
def unguided(scene):
    """Final means of the unguided run, by number of steps (computed once)."""
    cache = {}

    def run(steps=STEPS):
        if steps not in cache:
            cache[steps] = _train(_pipeline(scene, "none"), steps=steps)
        return cache[steps]

    return run


def test_image_evidence_phases_fire_and_change_training(scene, unguided, tmp_path):
    pipeline = _pipeline(scene, "image-evidence")
    assert pipeline.guidance is not None and pipeline.guidance.source.__class__.__name__ == "ImageEvidenceGuide"
    n_images = len(writer.EVENT_STORAGE)
    guided = _train(pipeline, out_dir=tmp_path / "guidance")
    applied = pipeline.guidance.applied
    assert {a["phase"] for a in applied} == {"detail", "subject", "artifacts"}
    assert [(a["step"], a["query_step"]) for a in applied if a["phase"] == "artifacts"] == [(10, 8), (12, 10)]
    assert not _same(guided, unguided())  # guidance changed which Gaussians were densified or pruned
    # every call is on disk: image, JSON (boxes, camera) and the mask where boxes were found
    records = sorted((tmp_path / "guidance").glob("step_*_view_*.json"))
    assert len(records) == 12  # 6 queries x 2 views
    rec = json.loads((tmp_path / "guidance" / "step_00008_artifacts_view_00.json").read_text())
    assert rec["view_id"].startswith("novel_") and (tmp_path / "guidance" / rec["image"]).is_file()
    assert len((tmp_path / "guidance" / "applied.jsonl").read_text().splitlines()) == len(applied)
    assert any(json.loads(r.read_text())["mask"] for r in records)
    names = {e["name"] for e in writer.EVENT_STORAGE[n_images:]}
    assert {"guidance/detail", "guidance/subject"} <= names  # TensorBoard images
    last = applied[-1]
    assert pipeline.guidance_status.value == "refinement"
    assert pipeline.guidance_last.value == (
        f"artifacts@10 +{last['densify_gaussians']} -{last['prune_gaussians']}"  # short: a text field shows ~30
    )
    elements = dict(parse_object(pipeline, ViewerText, "Custom Elements"))  # how the viewer finds them
    assert elements["Custom Elements/guidance_status"].disabled and elements["Custom Elements/guidance_last"].disabled
    # guidance adds nothing to checkpoints: the phase is a function of the step
    assert set(pipeline.model.state_dict()) == set(_pipeline(scene, "none").model.state_dict())


def test_empty_answers_leave_training_unchanged_and_threaded_matches_inline(scene, unguided):
    empty = _pipeline(scene, "vlm", vlm=VLMBackendConfig(_target=EmptyAnswerBackend))
    assert _same(_train(empty), unguided())  # runs are deterministic, so any difference elsewhere is guidance
    fixed = _train(_pipeline(scene, "vlm", vlm=VLMBackendConfig(_target=FixedAnswerBackend)))
    threaded = _pipeline(scene, "vlm", vlm=VLMBackendConfig(_target=FixedAnswerBackend),
                         asynchronous=True, wait_for_results=True)
    assert _same(_train(threaded), fixed) and not _same(fixed, unguided())


def test_fixed_answer_densifies_exactly_the_gaussians_under_the_box(scene, monkeypatch):
    """Unguided, nothing passes VCD (threshold 1e9); guidance g lowers it to 1e9 * 1e-12 ** g under the box only."""
    strategy = FastGSStrategy(refine_start_iter=1, refine_every=2, refine_stop_iter=10, num_score_views=3,
                              densify_min_count=1e9, guidance_densify_scale=1e-12, grow_grad2d=0.0,
                              grow_grad2d_abs=0.0, refine_opa_clamp=1.0)
    schedule = GuidanceSchedule(detail_start=2, detail_stop=3, detail_every=1, subject_every=0, artifacts_every=0)
    pipeline = _pipeline(scene, "vlm", strategy=strategy, vlm=VLMBackendConfig(_target=FixedAnswerBackend),
                         schedule=schedule, detail_views=1, detail_grow=False)  # the threshold path alone
    model = pipeline.model
    seen, grown = {}, []
    for op in ("duplicate", "split"):
        original = getattr(fastgs_module, op)

        def record(*args, _original=original, **kwargs):
            grown.append(kwargs["mask"].clone())
            return _original(*args, **kwargs)

        monkeypatch.setattr(fastgs_module, op, record)
    step_post_backward = model.strategy.step_post_backward

    def recorder(**kwargs):
        if kwargs.get("guidance") is not None:
            view = pipeline.guidance.applied[-1]["views"][0]
            i = int(view.split("_")[1])
            seen.update(kwargs, render=model.render_view(pipeline.datamanager.train_cameras[i : i + 1]))
        return step_post_backward(**kwargs)

    monkeypatch.setattr(model.strategy, "step_post_backward", recorder)
    _train(pipeline, steps=4)
    assert seen["step"] == 4  # the query of step 2 lands at the next refine step
    g = seen["guidance"]["densify"]
    out = seen["render"]
    H, W = out.depth.shape
    c0, c1, r0, r1 = 3, 20, 4, 22  # bbox_2d [100, 200, 600, 900] of a 32x24 image: columns [3, 20), rows [4, 22)
    expected = torch.zeros_like(g)
    for k in range(g.shape[0]):  # slow reference: share of footprint pixels inside the box
        mx, my = out.means2d[0, k].tolist()
        r = float(out.radii[0, k]) if out.radii.dim() == 2 else float(out.radii[0, k].min())
        pix = [(y, x) for y in range(H) for x in range(W)
               if r > 0 and mx - r <= x + 0.5 <= mx + r and my - r <= y + 0.5 <= my + r]
        if pix:
            expected[k] = sum(r0 <= y < r1 and c0 <= x < c1 for y, x in pix) / len(pix)
    torch.testing.assert_close(g, expected, atol=1e-5, rtol=0)
    assert 0 < int((g > 0).sum()) < g.shape[0]
    threshold = torch.full_like(g, 1e9) * 1e-12**g
    should_grow = seen["view_scores"]["densify_score"] > threshold
    assert len(grown) >= 1 and bool(should_grow.any())
    did_grow = grown[0] | (grown[1][: g.shape[0]] if len(grown) > 1 else torch.zeros_like(grown[0]))
    assert torch.equal(did_grow, should_grow) and bool((g[did_grow] > 0).all())


def test_floater_answers_prune_gaussians_in_front_of_the_surface(scene, unguided):
    schedule = GuidanceSchedule(detail_every=0, subject_every=0, artifacts_start=2, artifacts_stop=3,
                                artifacts_every=1)
    pipeline = _pipeline(scene, "vlm", vlm=VLMBackendConfig(_target=FloaterAnswerBackend),
                         schedule=schedule, floater_depth_margin=0.05)
    guided = _train(pipeline, steps=4)
    (record,) = pipeline.guidance.applied
    assert record["phase"] == "artifacts" and record["prune_gaussians"] > 0 and record["densify_gaussians"] == 0
    assert guided.shape[0] < unguided(4).shape[0]  # marked floaters joined the prune candidates and were removed



def test_tiny_vlm_garbage_answers_warn_and_never_crash(scene, unguided, tiny_vlm_dir, tmp_path, caplog):
    vlm = VLMBackendConfig(model_path=str(tiny_vlm_dir), max_new_tokens=8, batch_size=2, min_pixels=4096,
                           max_pixels=4096, device="cpu")
    pipeline = _pipeline(scene, "vlm", vlm=vlm, asynchronous=True, wait_for_results=True)  # the real thread
    with caplog.at_level(logging.WARNING):
        guided = _train(pipeline, out_dir=tmp_path)
    applied = pipeline.guidance.applied
    assert {a["phase"] for a in applied} == {"detail", "subject", "artifacts"}
    rec = json.loads((tmp_path / "step_00002_detail_view_00.json").read_text())
    assert rec["source"] == "vlm" and rec["answer"] and "bbox_2d" in rec["prompt"]
    if all(not any(a["boxes"]) for a in applied):  # garbage parsed to nothing: training is the unguided run
        assert "no boxes found in VLM answer" in caplog.text
        assert _same(guided, unguided())


def test_a_missing_vlm_stops_set_up_with_one_line(scene, tmp_path):
    missing = VLMBackendConfig(model_path=str(tmp_path / "no-such-model"))
    with pytest.raises(GuidanceSetupError) as err:
        _pipeline(scene, "vlm", vlm=missing)
    message = str(err.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert "--pipeline.vlm.model-path" in message and "--pipeline.guidance.source image-evidence" in message
    # evaluation and viewing never load the source
    assert _pipeline(scene, "vlm", vlm=missing, test_mode="test").guidance is None


def test_method_defaults_to_the_vlm_and_default_strategy_trains_unguided(scene):
    config = vlm_fastgs.config.pipeline
    assert isinstance(config, VLMFastGSPipelineConfig) and config.guidance.source == "vlm"
    assert config.vlm.model_path == "Qwen/Qwen3-VL-2B-Instruct"
    assert config.guidance.schedule == GuidanceSchedule()
    pipeline = VLMFastGSPipelineConfig(
        datamanager=FullImageDatamanagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=60), cache_images_type="uint8"
        ),
        model=VLMFastGSModelConfig(num_downscales=0, strategy="default"),
        guidance=GuidanceConfig(source="vlm"),
        vlm=VLMBackendConfig(model_path="/no/such/model"),
    ).setup(device="cpu", test_mode="val")
    assert pipeline.guidance is None  # DefaultStrategy takes no guidance: the VLM is not even loaded


def test_config_yaml_written_before_the_guidance_split_loads():
    """Saved config.yml files name the guidance configs by module path; those paths still resolve."""
    import yaml

    from vlm_instruct_gs.guidance.controller import GuidanceController
    from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuideConfig
    from vlm_instruct_gs.guidance.openai_backend import OpenAIChatVLMBackendConfig
    from vlm_instruct_gs.guidance.vlm_backend import TransformersVLMBackend

    text = yaml.dump(vlm_fastgs.config).replace(  # the controller class was in guidance_controller.py
        "vlm_instruct_gs.guidance.controller.GuidanceController",
        "vlm_instruct_gs.guidance.guidance_controller.GuidanceController",
    )
    for name in ("guidance_controller.GuidanceConfig", "guidance_controller.GuidanceController",
                 "phases.GuidanceSchedule", "image_evidence.ImageEvidenceGuideConfig", "vlm_backend.VLMBackendConfig",
                 "vlm_backend.TransformersVLMBackend"):
        assert f"vlm_instruct_gs.guidance.{name}" in text  # what configs saved before the split say
    pipeline = yaml.load(text, Loader=yaml.Loader).pipeline
    assert type(pipeline.guidance) is GuidanceConfig and pipeline.guidance._target is GuidanceController
    assert type(pipeline.guidance.schedule) is GuidanceSchedule
    assert type(pipeline.image_evidence) is ImageEvidenceGuideConfig and pipeline.vlm._target is TransformersVLMBackend
    # the OpenAI client's config lived in vlm_backend.py before
    old = yaml.dump(OpenAIChatVLMBackendConfig(base_url="http://host:1/v1")).replace(
        "vlm_instruct_gs.guidance.openai_backend", "vlm_instruct_gs.guidance.vlm_backend"
    )
    assert "guidance.vlm_backend.OpenAIChatVLMBackendConfig" in old and "openai_backend" not in old
    loaded = yaml.load(old, Loader=yaml.Loader)
    assert type(loaded) is OpenAIChatVLMBackendConfig and loaded.base_url == "http://host:1/v1"
