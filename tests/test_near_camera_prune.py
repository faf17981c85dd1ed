"""The near-camera prune (FastGSStrategy.prune_near_camera): Gaussians right in front of where a camera stood are
removed at refine and final-prune steps, measured after the refinement's growth; params, Adam moments and state
stay aligned; on by default, off in the legacy settings."""

import pytest
import torch

from splat_core.data.init_points import camera_focus
from splat_core.strategy import FastGSStrategy, camera_proximity
from splat_core.strategy.testing import REFINE_STEP, N, assert_aligned, ids_of, make_info, make_scene, run, scores

CENTERS = torch.tensor([[0.0, 0.0, 4.0], [4.0, 0.0, 0.0]])  # two cameras on a circle of radius 4 ...
FOCUS = torch.tensor([4.0, 4.0])  # ... looking at the origin


def test_camera_proximity_is_the_nearest_camera_distance_over_its_focus_distance():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.6], [4.0, 0.0, 1.0], [8.0, 0.0, 0.0]])
    ratio = camera_proximity(means, CENTERS, torch.tensor([4.0, 2.0]))
    torch.testing.assert_close(ratio, torch.tensor([1.0, 0.1, 0.5, 2.0]))  # 4/4; 0.4/4; 1/2; 4/2 (not 8.9/4)


def test_camera_focus_of_an_orbit_is_the_distance_to_its_centre():
    # cameras at radius 4 looking at the origin (nerfstudio c2w, OpenGL: the camera looks down -z)
    eye = torch.eye(3)
    towards_x = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # columns: x, y, z=+x (looks -x)
    c2w = torch.stack([torch.cat([eye, CENTERS[0][:, None]], 1), torch.cat([towards_x, CENTERS[1][:, None]], 1)])
    focus, centers, dist = camera_focus(c2w)
    torch.testing.assert_close(focus, torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(centers, CENTERS)
    torch.testing.assert_close(dist, FOCUS, atol=1e-4, rtol=0)


def _cameras(n):
    return {**scores(0.0, 0.0, n), "camera_centers": CENTERS, "camera_focus_distances": FOCUS}


@pytest.mark.parametrize("step_kind", ["refine", "final"])
def test_gaussians_in_front_of_a_camera_are_removed_and_the_rest_stay_aligned(step_kind):
    strategy = FastGSStrategy(prune_near_camera=0.25, refine_opa_clamp=1.0)
    params, optimizers = make_scene()
    with torch.no_grad():
        params["means"][:] = torch.randn(N, 3) * 0.3  # around the focus: kept
        params["means"][:5] = CENTERS[0] + torch.tensor([0.0, 0.0, -0.5])  # 0.5 / 4 in front of camera 0
        params["means"][5:8] = CENTERS[1] + torch.tensor([-0.9, 0.0, 0.0])  # 0.9 / 4 in front of camera 1
    state = strategy.initialize_state()
    step = REFINE_STEP if step_kind == "refine" else strategy.final_prune_start_iter + strategy.final_prune_every
    run(strategy, params, optimizers, state, step, make_info(torch.zeros(N)), view_scores=_cameras(N))
    assert_aligned(params, optimizers, state)
    assert sorted(ids_of(params).tolist()) == list(range(8, N))


def test_on_by_default_off_when_zero_and_a_clear_error_without_the_cameras():
    assert FastGSStrategy().prune_near_camera == 0.25
    assert FastGSStrategy.legacy().prune_near_camera == 0.0
    params, optimizers = make_scene()
    with torch.no_grad():
        params["means"][:5] = CENTERS[0]
    strategy = FastGSStrategy(prune_near_camera=0.0, refine_opa_clamp=1.0)
    state = strategy.initialize_state()
    run(strategy, params, optimizers, state, REFINE_STEP, make_info(torch.zeros(N)),
        view_scores=scores(0.0, 0.0, cameras=False))
    assert len(params["means"]) == N  # nothing removed (no opacity candidates, no cameras needed)
    on = FastGSStrategy(refine_opa_clamp=1.0)
    with pytest.raises(ValueError, match="camera_centers"):
        run(on, params, optimizers, on.initialize_state(), REFINE_STEP, make_info(torch.zeros(N)),
            view_scores=scores(0.0, 0.0, cameras=False))
