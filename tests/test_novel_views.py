"""Novel viewpoints between and around training cameras, and the depth warp used as phase-3 evidence."""

import math

import numpy as np
import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType

from splat_core.testing import look_at
from vlm_instruct_gs.guidance.novel_views import (
    interpolate_poses,
    nearest_neighbours,
    nearest_views,
    novel_cameras,
    novel_poses,
    perturb_poses,
    warp_to_view,
)


def so3_exp(w):
    """Reference: Rodrigues' formula (the hand-written version the module used before nerfstudio's lie groups)."""
    theta = w.norm(dim=-1, keepdim=True)[..., None]
    k = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    zero = torch.zeros_like(k[..., 0])
    kx = torch.stack(
        [zero, -k[..., 2], k[..., 1], k[..., 2], zero, -k[..., 0], -k[..., 1], k[..., 0], zero], dim=-1
    ).reshape(*k.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype).expand_as(kx)
    return eye + torch.sin(theta) * kx + (1 - torch.cos(theta)) * (kx @ kx)


def so3_log(R):
    """Reference: axis-angle vector of a rotation matrix (angles in [0, pi))."""
    cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    theta = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    sin = torch.sin(theta)
    small = sin.abs() < 1e-6
    scale = torch.where(small, torch.full_like(theta, 0.5), theta / (2 * torch.where(small, torch.ones_like(sin), sin)))
    return v * scale[..., None]


def _ring(n=8, radius=3.0):
    return torch.tensor(
        np.stack([look_at([radius * math.cos(2 * math.pi * i / n), radius * math.sin(2 * math.pi * i / n), 1.0])[:3]
                  for i in range(n)]), dtype=torch.float32)


def _angle(Ra, Rb):
    return float(so3_log(Ra.T @ Rb).norm())


def test_reference_so3_exp_log_round_trip():
    w = torch.tensor([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [0.0, 2.0, 0.0], [1e-8, 0, 0]])
    R = so3_exp(w)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3).expand(4, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(so3_log(R), w, atol=1e-5, rtol=0)


def test_nerfstudio_slerp_and_exp_match_the_hand_written_geodesics():
    """interpolate_poses (nerfstudio's quaternion slerp) and perturb_poses (its exp_map_SO3xR3) give the poses the
    hand-written Ra exp(t log(Ra^T Rb)) and Rodrigues gave."""
    g = torch.Generator().manual_seed(3)
    Ra = so3_exp(torch.randn(6, 3, generator=g))
    Rb = Ra @ so3_exp(torch.randn(6, 3, generator=g) * 0.5)  # relative turns well below pi
    a = torch.cat([Ra, torch.randn(6, 3, 1, generator=g)], -1)
    b = torch.cat([Rb, torch.randn(6, 3, 1, generator=g)], -1)
    t = torch.rand(6, generator=g)
    expected = Ra @ so3_exp(so3_log(Ra.transpose(-1, -2) @ Rb) * t[:, None])
    got = interpolate_poses(a, b, t)
    torch.testing.assert_close(got[..., :3], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got[..., 3], (1 - t)[:, None] * a[..., 3] + t[:, None] * b[..., 3])
    turn = torch.randn(6, 3, generator=g) * 0.1
    shift = torch.randn(6, 3, generator=g)
    moved = perturb_poses(a, shift, turn)
    torch.testing.assert_close(moved[..., :3], Ra @ so3_exp(turn), atol=1e-5, rtol=0)
    torch.testing.assert_close(moved[..., 3], a[..., 3] + shift)


def test_interpolated_poses_lie_between_neighbours():
    c2w = _ring()
    poses, source, interpolated = novel_poses(c2w, 6, torch.Generator().manual_seed(0), interpolate_frac=1.0)
    assert poses.shape == (6, 3, 4) and bool(interpolated.all())
    neighbour, _ = nearest_neighbours(c2w)
    for pose, a in zip(poses, source.tolist()):
        b = int(neighbour[a])
        ca, cb, c = c2w[a, :, 3], c2w[b, :, 3], pose[:, 3]
        t = float((c - ca) @ (cb - ca) / (cb - ca).square().sum())
        assert 0.25 - 1e-5 <= t <= 0.75 + 1e-5
        torch.testing.assert_close(c, ca + t * (cb - ca), atol=1e-5, rtol=0)  # on the segment
        # on the rotation geodesic: angle(a, pose) + angle(pose, b) == angle(a, b)
        total = _angle(c2w[a, :, :3], c2w[b, :, :3])
        assert _angle(c2w[a, :, :3], pose[:, :3]) + _angle(pose[:, :3], c2w[b, :, :3]) == pytest.approx(total, abs=1e-4)
        assert min(float((c2w[:, :, 3] - c).norm(dim=-1).min()), 1.0) > 0.1  # not a training camera
        torch.testing.assert_close(pose[:, :3] @ pose[:, :3].T, torch.eye(3), atol=1e-5, rtol=0)


def test_perturbed_poses_are_near_but_not_training_poses():
    c2w = _ring()
    _, spacing = nearest_neighbours(c2w)
    poses, source, interpolated = novel_poses(
        c2w, 8, torch.Generator().manual_seed(1), interpolate_frac=0.0, translation_frac=0.1, rotation_deg=5.0
    )
    assert not bool(interpolated.any()) and sorted(source.tolist()) == list(range(8))
    for pose, s in zip(poses, source.tolist()):
        moved = float((pose[:, 3] - c2w[s, :, 3]).norm())
        turned = math.degrees(_angle(c2w[s, :, :3], pose[:, :3]))
        assert 0.05 * float(spacing[s]) - 1e-5 <= moved <= 0.1 * float(spacing[s]) + 1e-5
        assert 2.5 - 1e-3 <= turned <= 5.0 + 1e-3
        assert float((c2w - pose).abs().amax(dim=(1, 2)).min()) > 1e-3  # differs from every training pose


def test_novel_poses_are_reproducible_and_mixed():
    c2w = _ring()
    a = novel_poses(c2w, 5, torch.Generator().manual_seed(7))
    b = novel_poses(c2w, 5, torch.Generator().manual_seed(7))
    c = novel_poses(c2w, 5, torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and not torch.equal(a[0], c[0])
    assert a[2].tolist() == [True, True, False, False, False]  # round(0.5 * 5) = 2 interpolated, first
    single = novel_poses(c2w[:1], 3, torch.Generator().manual_seed(0))
    assert not bool(single[2].any())  # one camera: perturbations only
    with pytest.raises(ValueError):
        novel_poses(c2w, 2, torch.Generator(), t_range=(0.0, 1.0))


def test_novel_cameras_keep_source_intrinsics_and_find_the_nearest_view():
    c2w = _ring()
    cameras = Cameras(camera_to_worlds=c2w, fx=torch.arange(8.0)[:, None] + 30, fy=30.0, cx=16.0, cy=12.0,
                      width=32, height=24, camera_type=CameraType.PERSPECTIVE)
    novel, nearest, _ = novel_cameras(cameras, 4, torch.Generator().manual_seed(0), interpolate_frac=0.0)
    assert novel.shape == (4,) and int(novel.width[0]) == 32
    _, source, _ = novel_poses(c2w, 4, torch.Generator().manual_seed(0), interpolate_frac=0.0)
    torch.testing.assert_close(novel.fx[:, 0], 30 + source.float())
    assert nearest.tolist() == source.tolist()  # small perturbations stay closest to their source
    assert nearest_views(c2w, c2w).tolist() == list(range(8))


def _plane_setup():
    c2w = torch.eye(4)[:3]  # OpenGL camera at the origin looking down -z
    K = torch.tensor([[20.0, 0, 16], [0, 20.0, 12], [0, 0, 1]])
    depth = torch.full((24, 32), 4.0)  # a fronto-parallel plane 4 units away
    image = torch.rand(24, 32, 3, generator=torch.Generator().manual_seed(0))
    return c2w, K, depth, image


def test_warp_into_the_same_view_is_identity():
    c2w, K, depth, image = _plane_setup()
    warped, valid = warp_to_view(depth, K, c2w, image, K, c2w)
    assert bool(valid.all())
    torch.testing.assert_close(warped, image, atol=1e-5, rtol=0)


def test_warp_of_a_sideways_move_shifts_the_plane_by_the_disparity():
    c2w, K, depth, image = _plane_setup()
    dst = c2w.clone()
    dst[0, 3] = 0.4  # camera moved right by 0.4: the plane shifts left by fx * 0.4 / 4 = 2 pixels
    warped, valid = warp_to_view(depth, K, dst, image, K, c2w)
    torch.testing.assert_close(warped[:, :-2], image[:, 2:], atol=1e-5, rtol=0)
    assert bool(valid[:, :-2].all()) and not bool(valid[:, -1].any())
    empty = torch.zeros(24, 32, dtype=torch.bool)
    _, none = warp_to_view(depth, K, dst, image, K, c2w, valid_dst=empty)
    assert not bool(none.any())
