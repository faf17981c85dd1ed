"""The lean training step (issue 11): SplatTrainer.train_iteration against nerfstudio's, the model's cached training
projection and sync-free losses against splatfacto's, FastGS's dense accumulation against the index-based one, and
(CUDA only) no host synchronisation after the rasterisation of a step."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from nerfstudio.engine.trainer import Trainer
from nerfstudio.models.splatfacto import SplatfactoModel
from nerfstudio.utils import writer

from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.ssim import FastSSIM
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------- FastGS accumulation
def _reference_update(state, grad, absgrad, radii, width, height, n_cameras):
    """The index-based accumulation FastGS had before (torch.where over visible ids + index_add_)."""
    to_ndc = grad.new_tensor([width / 2.0, height / 2.0]) * n_cameras
    sel = radii > 0
    if sel.dim() == grad.dim():
        sel = sel.all(dim=-1)
    ids = torch.where(sel)[-1]
    state["grad2d"].index_add_(0, ids, (grad * to_ndc)[sel].norm(dim=-1))
    state["grad2d_abs"].index_add_(0, ids, (absgrad * to_ndc)[sel].norm(dim=-1))
    state["count"].index_add_(0, ids, torch.ones_like(ids, dtype=torch.float32))


def _info(C, N, radii_pairs, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    means2d = torch.randn(C, N, 2, generator=g).to(device).requires_grad_()
    means2d.grad = torch.randn(C, N, 2, generator=g).to(device) * 1e-3
    means2d.absgrad = means2d.grad.abs() + 1e-4
    radii = (torch.rand(C, N, 2 if radii_pairs else 1, generator=g) * 4 - 1).clamp_min(0).ceil().int()
    radii = radii if radii_pairs else radii[..., 0]
    return {"means2d": means2d, "radii": radii.to(device), "width": 40, "height": 30, "n_cameras": C}


@pytest.mark.parametrize("radii_pairs", [False, True])  # gsplat 1.4 radii [C, N], gsplat 1.5 [C, N, 2]
@pytest.mark.parametrize("C", [1, 3])
def test_dense_accumulation_matches_index_add(C, radii_pairs):
    N = 200
    strategy = FastGSStrategy()
    params = {"means": torch.zeros(N, 3)}
    state = strategy.initialize_state()
    ref = {k: torch.zeros(N) for k in ("grad2d", "grad2d_abs", "count")}
    for seed in range(3):
        info = _info(C, N, radii_pairs, seed=seed)
        strategy._update_state(params, state, info)
        _reference_update(ref, info["means2d"].grad, info["means2d"].absgrad, info["radii"], 40, 30, C)
    assert float(ref["count"].min()) < float(ref["count"].max())  # visibility differs between Gaussians
    for k in ref:
        torch.testing.assert_close(state[k], ref[k], rtol=1e-6, atol=1e-9)


def test_dense_accumulation_ignores_nan_gradients_of_culled_gaussians():
    strategy = FastGSStrategy()
    info = _info(1, 50, False)
    culled = info["radii"][0] == 0
    info["means2d"].grad[0, culled] = float("nan")
    info["means2d"].absgrad[0, culled] = float("nan")
    state = strategy.initialize_state()
    strategy._update_state({"means": torch.zeros(50, 3)}, state, info)
    assert torch.isfinite(state["grad2d"]).all() and torch.isfinite(state["grad2d_abs"]).all()
    assert (state["grad2d"][culled] == 0).all() and (state["count"][culled] == 0).all()


def test_ndc_scale_is_made_on_the_device_without_a_host_copy():
    """The NDC scale of the gradient norms is filled on the device: a CPU tensor copied over (``torch.tensor(...,
    device=)`` or item assignment) waits for the GPU, which the CUDA sync test caught on the H200."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from splat_core.strategy.gradients import _ndc_scale

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    with Ops() as ops:
        scale = _ndc_scale.__wrapped__(476.0, 267.5, torch.device("cpu"))
    assert scale.tolist() == [476.0, 267.5] and scale.dtype == torch.float32
    assert not [n for n in ops.names if "copy" in n or "lift_fresh" in n], ops.names
    assert _ndc_scale(1.0, 2.0, torch.device("cpu")) is _ndc_scale(1.0, 2.0, torch.device("cpu"))  # once per size


# ---------------------------------------------------------------------------------------------- model hot path
def _pipeline(scene, **model_kwargs):
    from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
    from nerfstudio.pipelines.base_pipeline import VanillaPipelineConfig

    from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig

    device = "cuda" if model_kwargs.pop("_cuda", False) else "cpu"
    config = VanillaPipelineConfig(
        datamanager=FullImageDatamanagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=60), cache_images_type="uint8"
        ),
        model=VLMFastGSModelConfig(**model_kwargs),
    )
    return config.setup(device=device, test_mode="val")


def test_cached_training_projection_renders_as_rasterize(transforms_scene):
    pipeline = _pipeline(transforms_scene, num_downscales=1, resolution_schedule=5, background_color="white")
    model = pipeline.model
    model.train()
    model.optimizers = {}  # what the trainer's step_cb sets; FastGS's step_pre_backward does not use them
    for step in (0, 5):  # half resolution, then full
        model.step = step
        camera, _ = pipeline.datamanager.next_train(step)
        lean = model.get_outputs(camera)
        lean_info = model.info
        plain = copy.deepcopy(camera)
        plain.metadata = None  # no cam_idx: the _rasterize path
        ref = model.get_outputs(plain)
        assert lean["rgb"].shape == ref["rgb"].shape == ((12, 16, 3) if step == 0 else (24, 32, 3))
        torch.testing.assert_close(lean["rgb"], ref["rgb"], rtol=0, atol=1e-6)
        torch.testing.assert_close(lean_info["means2d"], model.info["means2d"], rtol=0, atol=1e-5)
        assert float(lean["accumulation"].max()) > 0.05  # the points are in view: a real render, not background
    widths = sorted((k[1], e[3], e[4]) for k, e in model._train_projections.items())  # (scale, W, H)
    assert widths == [(1, 32, 24), (2, 16, 12)]
    # an entry is reused for the same camera, rebuilt for another camera storage with the same cam_idx
    camera, _ = pipeline.datamanager.next_train(6)
    model.get_outputs(camera)
    key = (camera.metadata["cam_idx"], 1, "cpu")
    entry = model._train_projections[key]
    model.get_outputs(camera)
    assert model._train_projections[key] is entry
    moved = copy.deepcopy(camera)
    moved.camera_to_worlds[..., 0, 3] += 0.5
    lean = model.get_outputs(moved)["rgb"]
    assert model._train_projections[key] is not entry
    moved.metadata = None
    torch.testing.assert_close(lean, model.get_outputs(moved)["rgb"], rtol=0, atol=1e-6)
    assert not torch.allclose(lean, model.get_outputs(camera)["rgb"])  # the moved camera does see another image


def test_loss_dict_matches_splatfactos(transforms_scene):
    pytorch_msssim = pytest.importorskip("pytorch_msssim")
    pipeline = _pipeline(transforms_scene, num_downscales=0, use_scale_regularization=True)
    model = pipeline.model
    assert isinstance(model.ssim, FastSSIM)
    model.train()
    model.optimizers = {}
    for step in (0, 3):  # with and without splatfacto's every-10th-step scale regulariser
        model.step = step
        camera, batch = pipeline.datamanager.next_train(step)
        outputs = model.get_outputs(camera)
        ours = model.get_loss_dict(outputs, batch)
        fast_ssim, model.ssim = model.ssim, pytorch_msssim.SSIM(data_range=1.0, size_average=True, channel=3)
        ref = SplatfactoModel.get_loss_dict(model, outputs, batch)
        model.ssim = fast_ssim
        assert set(ours) == set(ref)
        for k in ref:
            torch.testing.assert_close(ours[k], ref[k].to(ours[k].dtype), rtol=1e-6, atol=1e-6)
        assert float(ours["main_loss"]) > 0.01
    assert float(ours["scale_reg"]) == 0.0 and float(model.get_loss_dict(outputs, batch)["main_loss"]) > 0


def test_training_metrics_only_when_due(transforms_scene):
    pipeline = _pipeline(transforms_scene, num_downscales=0)
    model = pipeline.model
    camera, batch = pipeline.datamanager.next_train(0)
    model.train()
    model.optimizers = {}
    outputs = model.get_outputs(camera)
    model.train_metrics_due = False
    assert model.get_metrics_dict(outputs, batch) == {}
    model.train_metrics_due = True
    assert float(model.get_metrics_dict(outputs, batch)["psnr"]) > 0
    model.eval()
    model.train_metrics_due = False  # evaluation always gets its metrics
    assert "psnr" in model.get_metrics_dict(outputs, batch)


# ---------------------------------------------------------------------------------------------- the trainer
def _trainer(scene, tmp_path, name, steps=6, **overrides):
    config = copy.deepcopy(vlm_fastgs.config)
    config.pipeline.datamanager.dataparser = SceneDataParserConfig(data=scene, num_random_points=60, init_seed=3)
    config.pipeline.guidance.source = "none"
    config.pipeline.model.num_downscales = 0
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.logging.steps_per_log = 3
    config.output_dir = tmp_path / name
    config.experiment_name = "lean"
    config.max_num_iterations = steps
    config.steps_per_save = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**6
    for key, value in overrides.items():
        target = config
        *path, last = key.split(".")
        for part in path:
            target = getattr(target, part)
        setattr(target, last, value)
    config.set_timestamp()
    for seed_fn in (torch.manual_seed, random.seed, np.random.seed):
        seed_fn(0)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def _record(trainer, iteration):
    steps = {}

    def recorded(step):
        rest = trainer.pipeline.model.gauss_params["features_rest"].detach().clone()
        out = iteration(step)
        steps[step] = {"metrics": dict(out[2]), "loss": float(out[0]),
                       "rest_changed": not torch.equal(rest, trainer.pipeline.model.gauss_params["features_rest"])}
        return out

    trainer.train_iteration = recorded
    return steps


def test_lean_step_trains_as_nerfstudios_step(transforms_scene, tmp_path, monkeypatch):
    scalars = []
    put_scalar = writer.put_scalar
    monkeypatch.setattr(writer, "put_scalar", lambda name, scalar, step: (scalars.append((str(name), step)),
                                                                          put_scalar(name, scalar, step)))
    lean = _trainer(transforms_scene, tmp_path, "lean")
    lean_steps = _record(lean, lean.train_iteration)
    lean.train()
    lean_scalars, scalars[:] = list(scalars), []
    ref = _trainer(transforms_scene, tmp_path, "ref")
    ref_steps = _record(ref, lambda step: Trainer.train_iteration(ref, step))
    ref.train()

    for k, p in lean.pipeline.model.gauss_params.items():
        torch.testing.assert_close(p.detach(), ref.pipeline.model.gauss_params[k].detach(), rtol=1e-5, atol=1e-6)
    assert lean_steps[5]["loss"] == pytest.approx(ref_steps[5]["loss"], rel=1e-5)
    assert lean_steps[5]["loss"] < lean_steps[0]["loss"]  # it did train
    # metrics and learning rates only on logging steps (0, 3), nerfstudio's every step
    assert [s for s, r in lean_steps.items() if r["metrics"]] == [0, 3]
    assert all("psnr" in r["metrics"] for r in ref_steps.values())
    assert float(lean_steps[3]["metrics"]["psnr"]) == pytest.approx(float(ref_steps[3]["metrics"]["psnr"]), rel=1e-4)
    assert sorted(s for n, s in lean_scalars if n == "learning_rate/means") == [0, 3]
    assert sorted(s for n, s in scalars if n == "learning_rate/means") == list(range(6))


def test_sparse_sh_rest_schedule(transforms_scene, tmp_path):
    """FastGS's sparse SH-rest optimiser: nerfstudio's gradient_accumulation_steps steps features_rest every k steps,
    with the gradients of the k steps accumulated."""
    trainer = _trainer(transforms_scene, tmp_path, "sparse", steps=8, gradient_accumulation_steps={"features_rest": 4},
                       **{"pipeline.model.sh_degree_interval": 1})
    steps = _record(trainer, trainer.train_iteration)
    trainer.train()
    assert [s for s, r in steps.items() if r["rest_changed"]] == [3, 7]


# ---------------------------------------------------------------------------------------------- CUDA: no host syncs
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (gsplat kernels, torch's sync debug mode)")
def test_step_after_rasterisation_does_not_synchronise(transforms_scene):
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes
    from nerfstudio.engine.optimizers import Optimizers

    pipeline = _pipeline(transforms_scene, num_downscales=0, _cuda=True)
    model = pipeline.model
    optimizers = Optimizers(copy.deepcopy(vlm_fastgs.config.optimizers), model.get_param_groups())
    model.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, pipeline, None))
    model.train()
    for step in range(3):  # the first steps build the projection cache and the optimiser state
        model.step_cb(optimizers, step)
        model.train_metrics_due = False
        camera, batch = pipeline.datamanager.next_train(step)
        outputs = model(camera)  # gsplat's isect_tiles reads its intersection count back: the one sync of a step
        if step == 2:
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
        try:
            metrics = model.get_metrics_dict(outputs, batch)
            loss = sum(model.get_loss_dict(outputs, batch, metrics).values())
            loss.backward()
            for name, opt in optimizers.optimizers.items():
                opt.step()
                opt.zero_grad()
            for scheduler in optimizers.schedulers.values():
                scheduler.step()
            model.step_post_backward(step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert optimizers.optimizers["means"].param_groups[0]["fused"]
    assert float(model.strategy_state["count"].sum()) > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fast_ssim_and_accumulation_do_not_synchronise():
    x, y = torch.rand(1, 3, 64, 80, device="cuda"), torch.rand(1, 3, 64, 80, device="cuda", requires_grad=True)
    module = FastSSIM(data_range=1.0).cuda()
    module(x, y)
    strategy = FastGSStrategy()
    state = strategy.initialize_state()
    infos = [_info(2, 100, pairs, device="cuda") for pairs in (False, True)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        (1 - module(x, y)).backward()
        for info in infos:
            strategy._update_state({"means": torch.zeros(100, 3, device="cuda")}, state, info)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert y.grad is not None and float(state["count"].sum()) > 0


# ---------------------------------------------------------------------------------------------- profile script
@pytest.mark.slow
def test_profile_step_script_runs_on_cpu(transforms_scene, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_step.py"
    common = ["--data", str(transforms_scene), "--downscale", "1", "--start", "2", "--steps", "3",
              "--profile-steps", "2", "--out", str(tmp_path / "prof")]
    for extra in (["--sync-steps", "2"], ["--baseline", "step", "ssim", "adam"]):
        result = subprocess.run([sys.executable, str(script), *common, *extra], capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    lean = json.loads((tmp_path / "prof" / "vlm-fastgs.json").read_text())
    base = json.loads((tmp_path / "prof" / "vlm-fastgs-baseline.json").read_text())
    assert lean["meta"]["ms_per_step"] > 0 and lean["meta"]["num_gaussians"] > 0 and lean["by_cpu"]
    assert base["meta"]["baseline"] == ["step", "ssim", "adam"] and "sync_sites" not in base
    # on CPU the traced window shows the sites that would wait on CUDA: the CPU rasteriser's boolean masks at least
    sites = lean["sync_sites"]
    assert any("torch_rasterizer" in r["site"] and r["per_step"] > 0 for r in sites)
    assert all(r["kind"] in ("item", "data-dependent shape", "device-to-host copy", "host-to-device copy") for r in sites)
    assert lean["meta"]["ms_per_step"] == pytest.approx(lean["meta"]["iteration_host_ms"]
                                                        + lean["meta"]["loop_host_ms"])
