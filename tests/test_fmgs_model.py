"""The fmgs pipeline on CPU: teacher maps in batches, feature rendering, losses, relevancy outputs, registration."""

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.plugins.types import MethodSpecification

from fmgs_field.data.fmgs_datamanager import FMGSDataManagerConfig
from fmgs_field.fmgs_config import fmgs
from fmgs_field.fmgs_model import FMGSModel, FMGSModelConfig
from fmgs_field.fmgs_pipeline import FMGSPipelineConfig
from fmgs_field.relevancy import relevancy
from fmgs_field.teachers import DINOTeacherConfig, resize_feature_map
from fmgs_field.testing.tiny import tiny_fmgs_field, write_tiny_clip
from splat_core.data.scene_dataparser import SceneDataParserConfig

TINY_CLIP = "fmgs-model-test-tiny-clip"


@pytest.fixture()
def tiny_teachers(tmp_path):
    clip = write_tiny_clip(tmp_path, name=TINY_CLIP, weights_name="clip.pt", num_scales=2, min_tile=0.25)
    from transformers import ViTConfig, ViTModel

    vit = ViTConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, patch_size=8, image_size=32
    )
    ViTModel(vit, add_pooling_layer=False).save_pretrained(tmp_path / "dino")
    dino = DINOTeacherConfig(backend="transformers", pretrained=str(tmp_path / "dino"), layer=-1, load_size=24)
    return clip, dino


def _pipeline(scene, tmp_path, clip, dino, feature_start_step=2):
    field = tiny_fmgs_field()
    config = FMGSPipelineConfig(
        datamanager=FMGSDataManagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=60),
            clip=clip,
            dino=dino,
            feature_cache_dir=tmp_path / "cache",
        ),
        model=FMGSModelConfig(
            fmgs_field=field, feature_start_step=feature_start_step, pixel_alignment_after=0, num_downscales=0
        ),
    )
    return config.setup(device="cpu", test_mode="val")


def test_pipeline_trains_features_and_answers_queries(transforms_scene, tmp_path, tiny_teachers):
    pipeline = _pipeline(transforms_scene, tmp_path, *tiny_teachers)
    model = pipeline.model
    assert isinstance(model, FMGSModel) and model.clip_teacher is pipeline.datamanager.clip_teacher
    assert "fmgs_field" in model.get_param_groups()
    assert not any("clip_teacher" in k and "network" in k for k in model.state_dict())
    assert len(list((tmp_path / "cache").rglob("*.pt"))) == 2 * 7  # 7 train images x (CLIP, DINO)

    camera, batch = pipeline.datamanager.next_train(0)
    assert batch["fmgs_clip"].shape[-1] == 16 and batch["fmgs_dino"].shape == (3, 4, 24)  # 24x32 -> 24x32 -> 3x4
    model.train()
    optimizers = Optimizers(fmgs.config.optimizers, model.get_param_groups())  # keys must cover every group
    # before feature_start_step: plain splatting
    model.step_cb(optimizers, 0)
    outputs = model(camera)
    assert "fmgs_clip" not in outputs and "main_loss" in model.get_loss_dict(outputs, batch)
    # feature phase: half-resolution feature maps, feature losses only, Gaussians untouched by them
    model.step_cb(optimizers, 2)
    outputs = model(camera)
    assert outputs["fmgs_clip"].shape == (12, 16, 16) and outputs["fmgs_dino"].shape == (12, 16, 24)
    losses = model.get_loss_dict(outputs, batch)
    assert set(losses) == {"clip_loss", "dino_loss", "pixel_alignment_loss"}
    optimizers.zero_grad_all()
    sum(losses.values()).backward()
    assert model.gauss_params["means"].grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fmgs_field.parameters())
    means = model.gauss_params["means"].detach().clone()
    field_before = [p.detach().clone() for p in model.fmgs_field.parameters()]
    optimizers.optimizer_step_all()
    assert torch.equal(model.gauss_params["means"], means)
    assert any(not torch.equal(a, b) for a, b in zip(field_before, model.fmgs_field.parameters()))
    assert "clip_cosine" in model.get_metrics_dict(outputs, batch)
    model.step_post_backward(2)  # frozen Gaussians: no densification, no error without means2d gradients

    # eval: relevancy only once a query is set
    model.eval()
    with torch.no_grad():
        plain = model.get_outputs_for_camera(camera)
        assert not any(k.startswith("relevancy") for k in plain)
        model.clip_teacher.set_positives(["a mug", "a plate"])
        queried = model.get_outputs_for_camera(camera)
    for i in range(2):
        assert queried[f"relevancy_{i}"].shape == (24, 32, 1)
        assert queried[f"composited_{i}"].shape == (24, 32, 3)
        assert ((queried[f"relevancy_{i}"] > 0) & (queried[f"relevancy_{i}"] < 1)).all()
    # the basis-coefficient render equals relevancy of the full CLIP map (the reference path, tol < 0)
    basis, coefficients = model.clip_coefficients()
    assert basis.shape[0] == 16 and coefficients.shape == (model.num_points, basis.shape[1])
    model.config.relevancy_basis_tol = -1.0
    with torch.no_grad():
        reference = model.get_outputs_for_camera(camera)
    model.config.relevancy_basis_tol = 1e-6
    for i in range(2):
        assert torch.allclose(queried[f"relevancy_{i}"], reference[f"relevancy_{i}"], atol=1e-4)
    # the cached coefficients follow in-place updates of the field (optimiser steps, checkpoint loads)
    assert model.clip_coefficients()[1] is coefficients
    with torch.no_grad():
        next(model.fmgs_field.parameters()).add_(0.5)
    assert not torch.equal(model.clip_coefficients()[1], coefficients)


def test_method_registration():
    assert isinstance(fmgs, MethodSpecification)
    assert fmgs.config.method_name == "fmgs"
    optimizers = fmgs.config.optimizers
    assert {"means", "scales", "quats", "features_dc", "features_rest", "opacities", "fmgs_field"} <= set(optimizers)
    assert optimizers["fmgs_field"]["optimizer"].max_norm == 1.0
    assert fmgs.config.pipeline.model.feature_start_step == 30000 and fmgs.config.max_num_iterations == 34200


def test_relevancy_at_label_size_and_one_rasterisation_path(transforms_scene, tmp_path, tiny_teachers):
    """Label-resolution relevancy (LangSplat scores at the label image's size) renders at that size through the
    model's one ``_rasterize`` call; it is not the half-resolution map resized."""
    pipeline = _pipeline(transforms_scene, tmp_path, *tiny_teachers)
    model = pipeline.model
    with torch.no_grad():  # an untrained field is nearly constant: vary it so the maps have structure
        for p in model.fmgs_field.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.3)
    model.eval()
    camera, _ = pipeline.datamanager.next_eval_image(0)  # 32 x 24
    teacher = model.clip_teacher
    text, neg = teacher.encode_text(["a mug", "a plate"]), teacher.canonical_neg_embeds
    fast = model.relevancy_at(camera, text, neg, (37, 50))
    assert fast.shape == (37, 50, 2) and ((fast > 0) & (fast < 1)).all()
    model.config.relevancy_basis_tol = -1.0  # reference: the full CLIP map rendered at 37 x 50
    with torch.no_grad():
        full = model.render_feature_maps(camera, size=(37, 50))
        reference = model.relevancy_at(camera, text, neg, (37, 50))
    assert full["fmgs_clip"].shape == (37, 50, 16) and full["fmgs_alpha"].shape == (37, 50, 1)
    torch.testing.assert_close(reference, relevancy(full["fmgs_clip"], text, neg))
    torch.testing.assert_close(fast, reference, atol=1e-4, rtol=0)
    upsampled = resize_feature_map(model.relevancy_at(camera, text, neg), (37, 50))  # from 12 x 16
    assert (upsampled - reference).abs().max() > 1e-3  # 10x the basis path's tolerance above
    # an exact size equal to the scaled one gives the same render as the fraction
    model.config.feature_resolution = 1.0
    with torch.no_grad():
        by_fraction = model.render_feature_maps(camera)["fmgs_clip"]
        by_size = model.render_feature_maps(camera, size=(24, 32))["fmgs_clip"]
    assert by_fraction.shape == (24, 32, 16) and torch.equal(by_fraction, by_size)

    # training at half resolution: odd sizes truncate as Cameras.rescale_output_resolution does, and the camera
    # object keeps its size (it used to be rescaled in place and back, which lost the odd pixel)
    model.train()
    model.config.num_downscales = 1
    odd = Cameras(camera_to_worlds=camera.camera_to_worlds, fx=30.0, fy=30.0, cx=16.5, cy=12.5, width=33, height=25)
    params = {k: model.gauss_params[k] for k in model.gauss_params.keys()}
    render, alpha, _ = model._rasterize(params, odd, odd.camera_to_worlds)
    assert render.shape == (1, 12, 16, 3) and alpha.shape == (1, 12, 16, 1)
    assert (int(odd.width), int(odd.height), float(odd.fx)) == (33, 25, 30.0)
