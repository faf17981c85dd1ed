"""Phases 2/3 spawning: pixels of an under-populated region lifted to 3D with training-image colours, on hand-built
renders, and in a guided CPU run driven by a boxes file."""

import json

import pytest
import torch

from splat_core.rendering.views import RenderedView
from splat_core.testing import look_at, write_transforms_scene
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.guidance.pinhole import lift_pixels
from vlm_instruct_gs.guidance.spawning import sample_colours, spawn_points
from vlm_instruct_gs.testing.guided_runs import guided_pipeline as _pipeline
from vlm_instruct_gs.testing.guided_runs import train_steps as _train

H, W, F_PX = 16, 24, 20.0
K = torch.tensor([[F_PX, 0.0, W / 2], [0.0, F_PX, H / 2], [0.0, 0.0, 1.0]])
C2W = torch.from_numpy(look_at([0.5, -3.0, 1.0])).float()[:3]


def test_lifted_pixels_project_back_onto_themselves_at_their_depth():
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    u, v = u.flatten(), v.flatten()
    z = torch.linspace(0.5, 4.0, u.numel())
    points = lift_pixels(u, v, z, K, C2W)
    # OpenGL camera: the point is z in front of the camera, along -z of its frame
    local = (points - C2W[:, 3]) @ C2W[:, :3]
    torch.testing.assert_close(-local[:, 2], z, atol=1e-5, rtol=0)
    image = torch.rand(H, W, 3)
    colours, valid = sample_colours(points, image, K, C2W)
    assert bool(valid.all())
    torch.testing.assert_close(colours, image[v, u], atol=1e-5, rtol=0)  # pixel centres sample exactly
    _, behind = sample_colours(2 * C2W[:, 3] - points, image, K, C2W)  # mirrored behind the camera
    assert not bool(behind.any())


def _render(n_right=40):
    """Gaussian centres only in the right half; top rows opaque at depth 2, bottom rows transparent; render grey."""
    gen = torch.Generator().manual_seed(0)
    means2d = torch.stack([W / 2 + torch.rand(n_right, generator=gen) * W / 2, torch.rand(n_right, generator=gen) * H], -1)
    alpha = torch.zeros(H, W)
    alpha[: H // 2] = 0.9
    return RenderedView(rgb=torch.full((H, W, 3), 0.5), depth=torch.full((H, W), 2.0), alpha=alpha,
                        means2d=means2d[None], radii=torch.full((1, n_right), 3, dtype=torch.int32),
                        depths=torch.full((1, n_right), 2.0))


def test_spawn_points_fill_the_empty_part_of_the_region_highest_error_first():
    out = _render()
    image = torch.full((H, W, 3), 0.5)
    image[:, :6] = 1.0  # the training image differs from the render in columns 0-5: error 0.5
    image[:, 6:8] = 0.8  # columns 6-7: error 0.3; columns 8-11 match the render (error 0): never spawned
    region = torch.zeros(H, W, dtype=torch.bool)
    region[:, : W // 2 + 4] = True  # the left half (empty) and 4 columns of the populated right half
    gen = torch.Generator().manual_seed(1)
    pts = spawn_points(out, K, C2W, region, image, K, C2W, budget=1000, depth_range=(1.0, 3.0), generator=gen,
                       cell=4)
    n_candidates = H * 8  # columns 0-7 of every row: in the region, in empty cells, error >= 0.1
    assert pts["means"].shape == (n_candidates, 3)
    cam = (pts["means"] - C2W[:, 3]) @ C2W[:, :3]
    u = (K[0, 0] * cam[:, 0] / -cam[:, 2] + K[0, 2]).floor()  # project back (OpenGL: y up, looking down -z)
    v = (-K[1, 1] * cam[:, 1] / -cam[:, 2] + K[1, 2]).floor()
    assert bool((u < 8).all()) and bool((u >= 0).all())
    opaque = v < H // 2
    torch.testing.assert_close(-cam[opaque, 2], torch.full((int(opaque.sum()),), 2.0), atol=1e-4, rtol=0)
    assert bool(((-cam[~opaque, 2] >= 1.0) & (-cam[~opaque, 2] <= 3.0)).all())  # sampled in the bounds
    torch.testing.assert_close(pts["colors"][: H * 6], torch.ones(H * 6, 3))  # highest error first
    torch.testing.assert_close(pts["colors"][H * 6 :], torch.full((H * 2, 3), 0.8))
    torch.testing.assert_close(pts["scales"], -cam[:, 2] / F_PX)  # one pixel's footprint (spacing 1)
    few = spawn_points(out, K, C2W, region, image, K, C2W, budget=H * 2, depth_range=(1.0, 3.0), cell=4)
    assert few["means"].shape[0] == H * 2 and bool((few["colors"] == 1.0).all())
    assert float(few["scales"][0]) == pytest.approx(2.0 / F_PX * 2.0)  # row 0 (opaque, depth 2); 4x fewer points than candidates: spacing 2
    populated = spawn_points(out, K, C2W, ~region, image, K, C2W, budget=1000, depth_range=(1.0, 3.0), cell=4)
    assert populated["means"].shape[0] == 0  # the rest of the image holds Gaussians in every cell


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_transforms_scene(tmp_path_factory.mktemp("scene"))


def test_background_boxes_spawn_new_gaussians_within_the_budget(scene, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"images": {f"{i:03d}.png": {"background": [[0, 0, 1000, 1000]]} for i in range(8)}}))
    schedule = GuidanceSchedule(detail_every=0, subject_start=2, subject_stop=3, subject_every=1, artifacts_every=0)
    kwargs = dict(boxes_file=boxes, schedule=schedule, subject_views=2, spawn_cell=4, spawn_min_error=0.0)
    spawning = _pipeline(scene, "boxes", spawn_budget=30, **kwargs)
    grown = _train(spawning, steps=4)
    (record,) = spawning.guidance.applied
    assert record["phase"] == "subject" and 0 < record["spawned_gaussians"] <= 30
    held = _pipeline(scene, "boxes", spawn_budget=0, **kwargs)
    plain = _train(held, steps=4)
    assert held.guidance.applied[0]["spawned_gaussians"] == 0
    assert grown.shape[0] - plain.shape[0] == record["spawned_gaussians"]
