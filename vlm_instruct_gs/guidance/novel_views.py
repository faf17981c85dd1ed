"""Viewpoints that are not training views, for phase 3 (artefacts), and a depth warp of training images into them.

Poses are nerfstudio camera-to-world matrices ``c2w`` ``[..., 3, 4]`` in the OpenGL convention (x right, y up,
z backwards; the camera looks along ``-z``), as in ``Cameras.camera_to_worlds``. Two kinds of novel poses:

- *interpolated*: between a training camera and its nearest neighbour (by centre distance): centre lerped, rotation
  slerped (geodesic on SO(3)) at ``t`` drawn from ``t_range``, so the pose lies strictly between the two.
- *perturbed*: around a training camera: centre moved by ``[0.5, 1] x translation_frac`` of the distance to its
  nearest neighbour in a random direction, rotated about its own centre by ``[0.5, 1] x rotation_deg`` about a random
  axis (in the camera frame). Never equal to the training pose.

All functions are pure (randomness comes from an explicit ``torch.Generator``) and vectorised over poses, except the
slerp, which runs nerfstudio's numpy quaternions per pose (a few poses per query).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from nerfstudio.cameras import camera_utils
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.lie_groups import exp_map_SO3xR3
from torch import Tensor

from vlm_instruct_gs.guidance.pinhole import lift_pixels, project, sample_bilinear, to_camera


def camera_centres(c2w: Float[Tensor, "C 3 4"]) -> Float[Tensor, "C 3"]:
    """Camera centres in world units. [C, 3]"""
    return c2w[..., :3, 3]


def nearest_neighbours(c2w: Float[Tensor, "C 3 4"]) -> Tuple[Int[Tensor, "C"], Float[Tensor, "C"]]:
    """Index of each camera's nearest other camera (by centre distance) and that distance.

    With a single camera the neighbour is itself and the distance is 1 (world unit), so perturbations stay defined.
    """
    centres = camera_centres(c2w).float()
    n = centres.shape[0]
    if n < 2:
        return torch.zeros(n, dtype=torch.long), torch.ones(n)
    dist = torch.cdist(centres, centres)
    dist.fill_diagonal_(float("inf"))
    d, idx = dist.min(dim=1)
    return idx, d


def interpolate_poses(
    c2w_a: Float[Tensor, "M 3 4"], c2w_b: Float[Tensor, "M 3 4"], t: Float[Tensor, "M"]
) -> Float[Tensor, "M 3 4"]:
    """Poses at fraction ``t`` from ``a`` (t = 0) to ``b`` (t = 1): centres lerped, rotations slerped on the shortest
    geodesic (nerfstudio's ``quaternion_slerp``, as ``camera_utils.get_interpolated_poses`` does). Float32, CPU."""
    rotations = []
    for Ra, Rb, f in zip(c2w_a[..., :3, :3].double().numpy(), c2w_b[..., :3, :3].double().numpy(), t.tolist()):
        q = camera_utils.quaternion_slerp(
            camera_utils.quaternion_from_matrix(Ra), camera_utils.quaternion_from_matrix(Rb), f
        )  # a few query poses, numpy per pose
        rotations.append(camera_utils.quaternion_matrix(q)[:3, :3])
    R = torch.from_numpy(np.stack(rotations)).float() if rotations else c2w_a.new_zeros(0, 3, 3)
    centre = (1 - t)[:, None] * c2w_a[..., :3, 3] + t[:, None] * c2w_b[..., :3, 3]
    return torch.cat([R, centre[..., None]], dim=-1)


def perturb_poses(
    c2w: Float[Tensor, "M 3 4"], translation: Float[Tensor, "M 3"], rotation: Float[Tensor, "M 3"]
) -> Float[Tensor, "M 3 4"]:
    """Poses moved by ``translation`` (world units) and rotated about their own centre by the axis-angle
    ``rotation`` (radians, expressed in the camera frame), through nerfstudio's ``exp_map_SO3xR3``.

    .. note::
        ``exp_map_SO3xR3`` clamps angles below 0.01 rad to 0.01 in its Rodrigues factors (a relative error of
        about 2e-5 on such tiny turns); the perturbations here are degrees.
    """
    R = c2w[..., :3, :3] @ exp_map_SO3xR3(torch.cat([torch.zeros_like(rotation), rotation], dim=-1))[..., :3]
    return torch.cat([R, (c2w[..., :3, 3] + translation)[..., None]], dim=-1)


def _random_unit(n: int, generator: torch.Generator) -> Float[Tensor, "n 3"]:
    return F.normalize(torch.randn(n, 3, generator=generator), dim=-1)


def novel_poses(
    c2w: Float[Tensor, "C 3 4"],
    num: int,
    generator: torch.Generator,
    interpolate_frac: float = 0.5,
    t_range: Tuple[float, float] = (0.25, 0.75),
    translation_frac: float = 0.1,
    rotation_deg: float = 5.0,
) -> Tuple[Float[Tensor, "num 3 4"], Int[Tensor, "num"], Bool[Tensor, "num"]]:
    """Novel poses between and around training poses (CPU, float32).

    Args:
        c2w: training camera-to-world matrices (OpenGL). [C, 3, 4]
        num: number of poses.
        generator: CPU generator for every random choice (seed it with the step for reproducibility).
        interpolate_frac: share of interpolated poses (rounded; 0 with a single camera); the rest are perturbed.
        t_range: interpolation fractions are uniform in this open range, inside (0, 1).
        translation_frac: perturbation distance as a fraction of the distance to the nearest neighbour.
        rotation_deg: largest perturbation angle, degrees.

    Returns:
        A tuple:

        **poses**: novel camera-to-world matrices, interpolated ones first. [num, 3, 4]

        **source**: the training camera each pose was derived from (the endpoint ``a`` when interpolated). [num]

        **interpolated**: True for interpolated poses. [num]

    Raises:
        ValueError: ``num < 0``, no camera, or ``t_range`` not inside (0, 1).
    """
    c2w = c2w.detach().float().cpu()
    n_cams = c2w.shape[0]
    if num < 0 or n_cams == 0:
        raise ValueError(f"need num >= 0 and at least one camera, got num={num}, {n_cams} cameras")
    lo, hi = t_range
    if not 0.0 < lo <= hi < 1.0:
        raise ValueError(f"t_range must lie inside (0, 1), got {t_range}")
    neighbour, dist = nearest_neighbours(c2w)
    n_interp = 0 if n_cams < 2 else int(round(num * min(max(interpolate_frac, 0.0), 1.0)))
    source = torch.randperm(n_cams, generator=generator).repeat(num // n_cams + 1)[:num]
    a, b = source[:n_interp], neighbour[source[:n_interp]]
    t = lo + (hi - lo) * torch.rand(n_interp, generator=generator)
    interp = interpolate_poses(c2w[a], c2w[b], t)

    p = source[n_interp:]
    m = p.shape[0]
    length = dist[p] * translation_frac * (0.5 + 0.5 * torch.rand(m, generator=generator))
    shift = _random_unit(m, generator) * length[:, None]
    angle = math.radians(rotation_deg) * (0.5 + 0.5 * torch.rand(m, generator=generator))
    perturbed = perturb_poses(c2w[p], shift, _random_unit(m, generator) * angle[:, None])
    interpolated = torch.arange(num) < n_interp
    return torch.cat([interp, perturbed]), source, interpolated


def nearest_views(
    c2w_query: Float[Tensor, "M 3 4"], c2w_train: Float[Tensor, "C 3 4"], angle_weight: float = 1.0
) -> Int[Tensor, "M"]:
    """Closest training camera for each query pose: centre distance (relative to the median neighbour spacing) plus
    ``angle_weight * (1 - cos)`` of the angle between the viewing directions. [M] long"""
    q, c = c2w_query.detach().float().cpu(), c2w_train.detach().float().cpu()
    _, spacing = nearest_neighbours(c)
    scale = spacing.median().clamp_min(1e-9)
    dist = torch.cdist(camera_centres(q), camera_centres(c)) / scale
    cos = (-q[:, :3, 2]) @ (-c[:, :3, 2]).T  # viewing directions are -z
    return (dist + angle_weight * (1 - cos)).argmin(dim=1)


def novel_cameras(
    cameras: Cameras, num: int, generator: torch.Generator, **kwargs
) -> Tuple[Cameras, Int[Tensor, "num"], Bool[Tensor, "num"]]:
    """Pinhole :class:`Cameras` at :func:`novel_poses` (CPU), each with its source camera's intrinsics and size.

    Args:
        cameras: training cameras (flat batch ``[C]``).
        num: number of cameras.
        generator: CPU generator.
        kwargs: further arguments of :func:`novel_poses`.

    Returns:
        ``(cameras [num], nearest training view [num] (see :func:`nearest_views`), interpolated [num])``.
    """
    cameras = cameras.to("cpu")
    poses, source, interpolated = novel_poses(cameras.camera_to_worlds, num, generator, **kwargs)
    novel = Cameras(
        camera_to_worlds=poses,
        fx=cameras.fx[source],
        fy=cameras.fy[source],
        cx=cameras.cx[source],
        cy=cameras.cy[source],
        width=cameras.width[source],
        height=cameras.height[source],
        camera_type=cameras.camera_type[source],
    )
    return novel, nearest_views(poses, cameras.camera_to_worlds), interpolated


@torch.no_grad()
def warp_to_view(
    depth: Float[Tensor, "H W"],
    K_dst: Float[Tensor, "3 3"],
    c2w_dst: Float[Tensor, "3 4"],
    image_src: Float[Tensor, "h w 3"],
    K_src: Float[Tensor, "3 3"],
    c2w_src: Float[Tensor, "3 4"],
    valid_dst: Optional[Bool[Tensor, "H W"]] = None,
    near: float = 1e-3,
) -> Tuple[Float[Tensor, "H W 3"], Bool[Tensor, "H W"]]:
    """Backward-warp a source (training) image into a destination view through the destination's depth.

    Each destination pixel centre ``(u + 0.5, v + 0.5)`` is lifted to 3D with its camera-space depth (gsplat's
    expected depth: z along the optical axis), projected into the source camera and sampled bilinearly there.

    Args:
        depth: destination depth, world units along the optical axis; non-finite or <= 0 is missing. [H, W]
        K_dst: destination pinhole intrinsics in pixels at resolution H x W. [3, 3]
        c2w_dst: destination camera-to-world (OpenGL). [3, 4]
        image_src: source image, float in [0, 1]. [h, w, 3]
        K_src: source intrinsics at resolution h x w. [3, 3]
        c2w_src: source camera-to-world (OpenGL). [3, 4]
        valid_dst: optional destination pixels to use (e.g. accumulated alpha > 0.5). [H, W]
        near: source points at depth <= this are invalid.

    Returns:
        A tuple ``(warped [H, W, 3] float in [0, 1], 0 where invalid; valid [H, W] bool)``.
    """
    dev = depth.device
    H, W = depth.shape
    h, w = image_src.shape[:2]
    v, u = torch.meshgrid(torch.arange(H, device=dev), torch.arange(W, device=dev), indexing="ij")
    z = torch.nan_to_num(depth.float(), nan=0.0, posinf=0.0, neginf=0.0)
    cam = to_camera(lift_pixels(u, v, z, K_dst, c2w_dst), c2w_src)  # [H, W, 3] in the source camera (OpenCV)
    us, vs = project(cam, K_src, near)
    valid = (z > 0) & (cam[..., 2] > near) & (us >= 0) & (us <= w) & (vs >= 0) & (vs <= h)
    if valid_dst is not None:
        valid &= valid_dst.to(dev)
    warped = sample_bilinear(image_src, us, vs) * valid[..., None]
    return warped.clamp(0.0, 1.0), valid


__all__ = [
    "camera_centres",
    "interpolate_poses",
    "nearest_neighbours",
    "nearest_views",
    "novel_cameras",
    "novel_poses",
    "perturb_poses",
    "warp_to_view",
]
