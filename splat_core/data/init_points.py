"""Random initial points placed where the training cameras look.

FastGS-style training starts from ~100 random points instead of an SfM cloud. Splatfacto's random init fills a
fixed cube around the origin, which wastes most points on space no camera sees (and depends on the dataparser's
scale). Here the points are drawn on the cameras' own viewing rays and kept only where several cameras see them.
"""

from __future__ import annotations

from typing import Tuple

import torch
from jaxtyping import Float, UInt8
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor


def focus_point(
    centers: Float[Tensor, "C 3"], forwards: Float[Tensor, "C 3"]
) -> Float[Tensor, "3"]:
    """Least-squares point closest to all optical axes (the point an orbit or a forward capture looks at).

    Args:
        centers: camera centres in world units. [C, 3]
        forwards: unit viewing directions. [C, 3]

    Returns:
        The focus point [3]. When the axes are (nearly) parallel, as in a forward-facing capture, the system is
        ill-conditioned and the point in front of the mean camera at the cameras' spread (at least 1 unit) is used.
    """
    eye = torch.eye(3, dtype=centers.dtype)
    proj = eye[None] - forwards[:, :, None] * forwards[:, None, :]  # [C, 3, 3]
    a = proj.sum(0)
    b = (proj @ centers[:, :, None]).sum(0)[:, 0]
    spread = float((centers - centers.mean(0)).norm(dim=-1).max().clamp(min=1e-3))
    fallback = centers.mean(0) + torch.nn.functional.normalize(forwards.mean(0), dim=0) * max(spread, 1.0)
    if torch.linalg.cond(a) > 1e4:
        return fallback
    p = torch.linalg.solve(a, b)
    in_front = (((p[None] - centers) * forwards).sum(-1) > 0).float().mean()
    too_far = (p - centers.mean(0)).norm() > 20 * max(spread, 1.0)
    return fallback if (in_front < 0.5 or too_far) else p


def camera_focus(
    camera_to_worlds: Float[Tensor, "C 3 4"]
) -> Tuple[Float[Tensor, "3"], Float[Tensor, "C 3"], Float[Tensor, "C"]]:
    """The cameras' :func:`focus_point`, their centres and each centre's distance to it (world units).

    Args:
        camera_to_worlds: nerfstudio camera-to-world matrices (OpenGL axes: a camera looks down its -z). [C, 3, 4]

    Returns:
        ``(focus [3], centers [C, 3], distances [C])``, float32, on the matrices' device.
    """
    c2w = camera_to_worlds.float()
    centers = c2w[:, :3, 3]
    focus = focus_point(centers, torch.nn.functional.normalize(-c2w[:, :3, 2], dim=-1))
    return focus, centers, (focus[None] - centers).norm(dim=-1)


def count_views(
    points: Float[Tensor, "M 3"], cameras: Cameras
) -> Float[Tensor, "M"]:
    """Number of cameras whose image contains each point (in front of the camera, inside the frame).

    Args:
        points: world points. [M, 3]
        cameras: nerfstudio cameras (OpenGL camera-to-world: x right, y up, looking down -z).

    Returns:
        Float counts [M].
    """
    c2w = cameras.camera_to_worlds.float()  # [C, 3, 4]
    rot, trans = c2w[:, :3, :3], c2w[:, :3, 3]
    local = torch.einsum("cji,cmj->cmi", rot, points[None] - trans[:, None])  # world -> camera (OpenGL)
    depth = -local[..., 2]
    fx, fy = cameras.fx.float(), cameras.fy.float()  # [C, 1]
    cx, cy = cameras.cx.float(), cameras.cy.float()
    u = fx * local[..., 0] / depth.clamp(min=1e-6) + cx
    v = -fy * local[..., 1] / depth.clamp(min=1e-6) + cy
    inside = (depth > 1e-3) & (u >= 0) & (u < cameras.width.float()) & (v >= 0) & (v < cameras.height.float())
    return inside.float().sum(0)


def random_points_in_view(
    cameras: Cameras, num_points: int, seed: int = 0, min_views: int = 2, far_share: float = 0.0,
    far_depth: float = 4.0,
) -> Tuple[Float[Tensor, "N 3"], UInt8[Tensor, "N 3"]]:
    """Sample ``num_points`` random points inside the region the training cameras look at.

    Candidates are drawn along random pixel rays of random training cameras, at depths uniform in [0.2, 1.5] x the
    camera's distance to the :func:`focus_point`; a candidate is kept when at least ``min_views`` cameras see it
    (relaxed to 1 if too few survive). Colours are uniform random, like splatfacto's random init.

    With ``far_share`` > 0, that share of the candidates is drawn beyond the subject instead, at depths uniform in
    disparity between 1.5 and ``far_depth`` x the focus distance: an orbit's walls and shelves lie there, and without
    Gaussians there the background is painted on Gaussians inside the camera ring, in front of other cameras
    (docs/benchmarks/beer_can_4x_near_camera). gsplat's simple_trainer likewise spreads its random init over a cube of
    3x the scene scale.

    Args:
        cameras: training cameras (nerfstudio convention, world units of the dataparser). Must not be empty.
        num_points: number of points N (> 0).
        seed: seed of a private generator, so the same cameras and seed give the same points.
        min_views: co-visibility required of a point.
        far_share: share of candidates drawn beyond the subject, in [0, 1]; 0 draws none (and the same points as
            before the option existed).
        far_depth: farthest depth of those, in multiples of the focus distance (> 1.5).

    Returns:
        ``(xyz [N, 3] float32 world units, rgb [N, 3] uint8)``.

    Raises:
        ValueError: if ``num_points`` < 1, there are no cameras, or ``far_share`` / ``far_depth`` are out of range.
    """
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    n_cams = cameras.camera_to_worlds.shape[0]
    if n_cams == 0:
        raise ValueError("random_points_in_view needs at least one camera")
    if not 0.0 <= far_share <= 1.0 or (far_share > 0 and far_depth <= 1.5):
        raise ValueError(f"far_share must be in [0, 1] and far_depth > 1.5, got {far_share} and {far_depth}")
    gen = torch.Generator().manual_seed(seed)
    c2w = cameras.camera_to_worlds.float()
    _, centers, dist = camera_focus(c2w)
    dist = dist.clamp(min=1e-3)  # [C]

    m = max(64, 20 * num_points)
    cam = torch.randint(0, n_cams, (m,), generator=gen)
    w, h = cameras.width[cam, 0].float(), cameras.height[cam, 0].float()
    u, v = torch.rand(m, generator=gen) * w, torch.rand(m, generator=gen) * h
    x = (u - cameras.cx[cam, 0]) / cameras.fx[cam, 0]
    y = -(v - cameras.cy[cam, 0]) / cameras.fy[cam, 0]
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
    dirs = torch.einsum("mij,mj->mi", c2w[cam, :3, :3], dirs_cam)
    # depth along the optical axis, so the sampled slab is perpendicular to the view
    depth = dist[cam] * (0.2 + 1.3 * torch.rand(m, generator=gen))
    if far_share > 0:  # drawn only then, so far_share=0 keeps the generator's stream and the points as they were
        far = torch.rand(m, generator=gen) < far_share
        disparity = 1 / far_depth + (1 / 1.5 - 1 / far_depth) * torch.rand(m, generator=gen)
        depth = torch.where(far, dist[cam] / disparity, depth)
    candidates = centers[cam] + dirs * depth[:, None]

    views = count_views(candidates, cameras)
    need = min(min_views, n_cams)
    keep = views >= need
    if int(keep.sum()) < num_points:
        keep = views >= 1
    chosen = candidates[keep][:num_points]
    if chosen.shape[0] < num_points:  # a degenerate rig: repeat what we have rather than fail
        reps = -(-num_points // max(chosen.shape[0], 1))
        chosen = (chosen if chosen.shape[0] else candidates).repeat(reps, 1)[:num_points]
    rgb = torch.randint(0, 256, (num_points, 3), generator=gen, dtype=torch.uint8)
    return chosen.contiguous(), rgb
