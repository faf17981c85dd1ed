import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras

from splat_core.data.init_points import count_views, focus_point, random_points_in_view
from splat_core.testing import look_at


def _cameras(eyes, target=(0.0, 0.0, 0.0)) -> Cameras:
    c2w = torch.tensor(np.stack([look_at(e, target)[:3] for e in eyes]), dtype=torch.float32)
    n = len(eyes)
    return Cameras(camera_to_worlds=c2w, fx=torch.full((n, 1), 40.0), fy=torch.full((n, 1), 40.0),
                   cx=torch.full((n, 1), 32.0), cy=torch.full((n, 1), 24.0), width=64, height=48)


def _ring(n=12, radius=3.0, target=(0.5, -0.2, 0.3)):
    return [[radius * np.cos(2 * np.pi * i / n), radius * np.sin(2 * np.pi * i / n), 1.0] for i in range(n)], target


def test_focus_point_of_an_orbit_is_the_target():
    eyes, target = _ring()
    cams = _cameras(eyes, target)
    c2w = cams.camera_to_worlds
    p = focus_point(c2w[:, :3, 3], -c2w[:, :3, 2])
    torch.testing.assert_close(p, torch.tensor(target, dtype=torch.float32), atol=1e-4, rtol=0)


def test_focus_point_of_a_forward_facing_rig_is_in_front():
    eyes = [[x, 0.0, 0.0] for x in np.linspace(-0.3, 0.3, 5)]
    cams = _cameras(eyes, (0.0, 5.0, 0.0))
    c2w = cams.camera_to_worlds
    # parallel axes: no unique intersection, the fallback lies in front of the cameras
    c2w[:, :3, :3] = c2w[:1, :3, :3]
    p = focus_point(c2w[:, :3, 3], -c2w[:, :3, 2])
    assert ((p[None] - c2w[:, :3, 3]) * -c2w[:, :3, 2]).sum(-1).min() > 0.5


def test_count_views_matches_projection():
    eyes, target = _ring(n=4)
    cams = _cameras(eyes, target)
    pts = torch.tensor([target, [50.0, 50.0, 50.0]], dtype=torch.float32)
    counts = count_views(pts, cams)
    assert counts.tolist() == [4.0, 0.0]  # the target is at every image centre; a far point is behind/outside


def test_random_points_are_covisible_deterministic_and_sized():
    eyes, target = _ring()
    cams = _cameras(eyes, target)
    xyz, rgb = random_points_in_view(cams, 100, seed=3)
    assert xyz.shape == (100, 3) and rgb.shape == (100, 3) and rgb.dtype == torch.uint8
    assert (count_views(xyz, cams) >= 2).all()
    xyz2, rgb2 = random_points_in_view(cams, 100, seed=3)
    assert torch.equal(xyz, xyz2) and torch.equal(rgb, rgb2)
    xyz3, _ = random_points_in_view(cams, 100, seed=4)
    assert not torch.equal(xyz, xyz3)
    # points lie inside the ring, around the target, not in splatfacto's +-5 cube corners
    assert (xyz[:, :2].norm(dim=-1) < 3.0).float().mean() > 0.9


def test_far_share_puts_that_share_beyond_the_subject_and_zero_keeps_the_points():
    eyes, target = _ring(n=24)
    cams = _cameras(eyes, target)
    near, rgb = random_points_in_view(cams, 200, seed=5)
    same, same_rgb = random_points_in_view(cams, 200, seed=5, far_share=0.0)
    assert torch.equal(near, same) and torch.equal(rgb, same_rgb)
    far, _ = random_points_in_view(cams, 200, seed=5, far_share=1.0, far_depth=4.0)
    dist = float(torch.linalg.norm(torch.tensor(eyes[0]) - torch.tensor(target)))  # every camera's focus distance
    # z-depth of a point in the camera that drew it is >= 1.5 x its focus distance, so it lies beyond the target
    assert (torch.linalg.norm(far - torch.tensor(target), dim=-1) > 0.45 * dist).all()
    assert torch.linalg.norm(far - torch.tensor(target), dim=-1).median() > 2 * torch.linalg.norm(
        near - torch.tensor(target), dim=-1).median()
    assert (count_views(far, cams) >= 2).all()
    half, _ = random_points_in_view(cams, 400, seed=5, far_share=0.5)
    beyond = (torch.linalg.norm(half - torch.tensor(target), dim=-1) > 1.2 * dist).float().mean()
    assert 0.2 < beyond < 0.6
    with pytest.raises(ValueError, match="far_share"):
        random_points_in_view(cams, 10, far_share=1.5)
    with pytest.raises(ValueError, match="far_depth"):
        random_points_in_view(cams, 10, far_share=0.2, far_depth=1.0)
