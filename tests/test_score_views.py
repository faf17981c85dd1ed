"""SplatModel.score_views on CPU: batched renders agree with one render per view, resolution and footprint modes."""

import pytest
import torch
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.callbacks import TrainingCallbackAttributes
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

import splat_core.view_scoring as view_scoring
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.rendering.contributions import count_contributions
from splat_core.strategy import FastGSStrategy, high_error_masks
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(scene, num_downscales=0, device="cpu", **strategy_kwargs):
    config = VanillaPipelineConfig(
        datamanager=FullImageDatamanagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=80), cache_images_type="uint8"
        ),
        model=VLMFastGSModelConfig(num_downscales=num_downscales, fastgs=FastGSStrategy(**strategy_kwargs)),
    )
    pipeline = config.setup(device=device, test_mode="val")
    model = pipeline.model
    with torch.no_grad():  # larger, more opaque Gaussians than the init: real occlusion in the 32x24 views
        model.gauss_params["scales"] += 1.5
        model.gauss_params["opacities"].fill_(2.0)
    optimizers = Optimizers(vlm_fastgs.config.optimizers, model.get_param_groups())
    model.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, pipeline, None))
    model.train()
    return model


def _scores(model, seed=0):
    torch.manual_seed(seed)
    return model.score_views(4)


def test_batched_render_matches_one_render_per_view(transforms_scene, monkeypatch):
    model = _model(transforms_scene)
    calls = []
    render = view_scoring.render_score_views
    monkeypatch.setattr(
        view_scoring, "render_score_views", lambda m, cams, scale: calls.append(len(cams)) or render(m, cams, scale)
    )
    batched = _scores(model)
    assert calls == [4]  # 4 views of one size: one rasterization
    calls.clear()
    monkeypatch.setattr(view_scoring, "SCORE_PIXELS_PER_RENDER", 1)
    single = _scores(model)
    assert calls == [1, 1, 1, 1]
    for key in ("densify_score", "prune_score"):
        torch.testing.assert_close(batched[key], single[key], rtol=1e-5, atol=1e-5)
    assert batched["densify_score"].shape == (80,) and batched["densify_score"].sum() > 0


def test_scores_are_fastgs_counts_of_blended_high_error_pixels(transforms_scene):
    """The score of each Gaussian is floor(mean over views of the high-error pixels it blends into), recomputed here
    view by view from the model's own render."""
    model = _model(transforms_scene)
    got = _scores(model, seed=3)
    torch.manual_seed(3)
    views = model._train_views
    total = torch.zeros(80)
    ids = torch.randperm(len(views.images))[:4].tolist()
    for i in ids:
        rgb, info = view_scoring.render_score_views(model, views.cameras[torch.tensor([i])], 1)
        gt = view_scoring.score_gt(model, views.images[i]["image"], 1, model.background_color)
        mask = high_error_masks((rgb[0] - gt).abs().mean(-1)[None], model.strategy.high_error_thresh)
        total += count_contributions(info, mask)[0]
    torch.testing.assert_close(got["densify_score"], torch.floor(total / 4))


def test_full_resolution_and_scaled_training_resolution(transforms_scene, monkeypatch):
    sizes = []
    full = _model(transforms_scene, num_downscales=1)  # training renders at 1/2 until the resolution schedule ends
    assert full._get_downscale_factor() == 2
    render = view_scoring.render_score_views

    def spy(model, cams, scale):
        rgb, info = render(model, cams, scale)
        sizes.append(tuple(rgb.shape[1:3]))
        return rgb, info

    monkeypatch.setattr(view_scoring, "render_score_views", spy)
    _scores(full)
    assert sizes == [(24, 32)]  # "full": the training images' size, not the schedule's 12x16
    sizes.clear()
    scaled = _model(transforms_scene, num_downscales=1, score_resolution="training")
    unscaled = _model(transforms_scene, num_downscales=1, score_resolution="training-unscaled")
    a, b = _scores(scaled), _scores(unscaled)
    assert sizes == [(12, 16), (12, 16)]
    # same renders and counts; "training" reports them in full-resolution pixels (x4 before the floor)
    assert (a["densify_score"] >= 4 * b["densify_score"]).all() and (a["densify_score"] < 4 * b["densify_score"] + 4).all()
    assert a["densify_score"].sum() > 0
    torch.testing.assert_close(a["prune_score"], b["prune_score"])


def test_box_footprints_count_more_than_blended(transforms_scene):
    blended = _scores(_model(transforms_scene))
    box = _scores(_model(transforms_scene, score_footprint="box"))
    assert box["densify_score"].sum() > blended["densify_score"].sum() > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="No CUDA device")
def test_cuda_scores_match_cpu(transforms_scene):
    """gsplat's kernels and rasterize_to_indices_in_range give the CPU path's scores for the same Gaussians."""
    cpu = _model(transforms_scene)
    gpu = _model(transforms_scene, device="cuda")
    with torch.no_grad():
        for k, v in cpu.gauss_params.items():
            gpu.gauss_params[k].copy_(v)
    a, b = _scores(cpu, seed=5), _scores(gpu, seed=5)
    diff = (a["densify_score"] - b["densify_score"].cpu()).abs()
    assert a["densify_score"].sum() > 0 and diff.max() <= 2 and (diff > 0).float().mean() <= 0.05
    torch.testing.assert_close(b["prune_score"].cpu(), a["prune_score"], rtol=0, atol=0.02)
