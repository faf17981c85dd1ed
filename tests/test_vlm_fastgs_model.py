"""The vlm-fastgs model on CPU: initial Gaussians, rendering, and one FastGS refinement inside a real pipeline."""

import pytest
import torch
from gsplat.strategy import DefaultStrategy
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.callbacks import TrainingCallbackAttributes
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.models.splatfacto import SH2RGB
from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.model import camera_extent, gaussians_from_points
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig


def _pipeline(scene, **model_kwargs):
    config = VanillaPipelineConfig(
        datamanager=FullImageDatamanagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=60), cache_images_type="uint8"
        ),
        model=VLMFastGSModelConfig(num_downscales=0, **model_kwargs),
    )
    return config.setup(device="cpu", test_mode="val")


def test_gaussians_from_points_keep_colours_and_positions():
    xyz = torch.rand(5, 3)
    rgb = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30], [128, 128, 128]], dtype=torch.uint8)
    params = gaussians_from_points(xyz, rgb, sh_degree=3, scales=torch.full((5, 1), 0.1))
    torch.testing.assert_close(SH2RGB(params["features_dc"]), rgb.float() / 255, atol=1e-6, rtol=0)
    torch.testing.assert_close(params["means"].data, xyz)
    assert params["features_rest"].shape == (5, 15, 3) and params["scales"].exp().allclose(torch.tensor(0.1))
    assert torch.sigmoid(params["opacities"]).allclose(torch.tensor(0.1))


def test_camera_extent_is_3dgs_radius():
    c2w = torch.zeros(3, 3, 4)
    c2w[:, :3, 3] = torch.tensor([[0.0, 0, 0], [2.0, 0, 0], [1.0, 0, 0]])
    assert camera_extent(c2w) == pytest.approx(1.1)


def test_model_starts_from_dataparser_points_and_renders_on_cpu(transforms_scene):
    pipeline = _pipeline(transforms_scene)
    model = pipeline.model
    points = pipeline.datamanager.train_dataparser_outputs.metadata["points3D_xyz"]
    torch.testing.assert_close(model.gauss_params["means"].data, points)
    assert isinstance(model.strategy, FastGSStrategy)
    model.eval()
    camera, _ = pipeline.datamanager.next_eval_image(0)
    with torch.no_grad():
        out = model.get_outputs_for_camera(camera)
    assert out["rgb"].shape == (24, 32, 3) and out["depth"].shape == (24, 32, 1)
    assert 0 <= float(out["rgb"].min()) and float(out["rgb"].max()) <= 1
    assert float(out["accumulation"].max()) > 0.05  # the random points are in view


def test_default_strategy_is_splatfactos(transforms_scene):
    model = _pipeline(transforms_scene, strategy="default").model
    assert isinstance(model.strategy, DefaultStrategy) and model.strategy.refine_every == model.config.refine_every


def test_fastgs_refinement_through_the_model(transforms_scene):
    strategy = FastGSStrategy(refine_start_iter=0, refine_every=2, densify_min_count=0.0, grow_grad2d=0.0,
                              grow_grad2d_abs=0.0, num_score_views=3)
    pipeline = _pipeline(transforms_scene, fastgs=strategy)
    model = pipeline.model
    optimizers = Optimizers(vlm_fastgs.config.optimizers, model.get_param_groups())
    model.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, pipeline, None))
    assert model.strategy_state["scene_scale"] > 0.5  # the ring of cameras, not splatfacto's 1.0 default
    scores = model.score_views(3)
    assert scores["densify_score"].shape == (60,) and ((0 <= scores["prune_score"]) & (scores["prune_score"] <= 1)).all()

    model.train()
    model.step_cb(optimizers, 2)
    camera, batch = pipeline.datamanager.next_train(2)
    loss = sum(model.get_loss_dict(model(camera), batch).values())
    loss.backward()
    optimizers.optimizer_step_all()
    model.step_post_backward(2)
    n = model.num_points
    assert n > 60  # visible Gaussians with any gradient and score were cloned or split
    for name, param in model.gauss_params.items():
        assert param.shape[0] == n
        state = optimizers.optimizers[name].state[param]
        assert state["exp_avg"].shape == param.shape and state["exp_avg_sq"].shape == param.shape
