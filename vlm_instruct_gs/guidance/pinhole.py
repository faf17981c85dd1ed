"""Pixels to world points and back for nerfstudio pinhole cameras: the geometry shared by the depth warp of novel
views (:func:`~vlm_instruct_gs.guidance.novel_views.warp_to_view`) and the placement and colouring of spawned
Gaussians (:mod:`~vlm_instruct_gs.guidance.spawning`).

Conventions: camera-to-world ``c2w`` ``[3, 4]`` as in ``Cameras.camera_to_worlds``, OpenGL (x right, y up,
z backwards; the camera looks along ``-z``); intrinsics ``K`` ``[3, 3]`` in pixels at the resolution of the image
they index; pixel ``(u, v)`` (column, row; v down) has its centre at ``(u + 0.5, v + 0.5)``; depth is the camera z
along the optical axis (gsplat's expected depth), in world units.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

GL_TO_CV = torch.tensor([1.0, -1.0, -1.0])
"""Column signs turning an OpenGL camera-to-world rotation into OpenCV (x right, y down, z forward)."""


def intrinsics_at(camera: Cameras, height: int, width: int) -> Float[Tensor, "3 3"]:
    """Pinhole K (pixels, CPU) of a single camera ([1]) for an image of ``height x width`` pixels."""
    K = camera.get_intrinsics_matrices()[0].float().cpu().clone()
    K[0] *= width / float(camera.width[0])
    K[1] *= height / float(camera.height[0])
    return K


def lift_pixels(
    u: Tensor, v: Tensor, z: Tensor, K: Float[Tensor, "3 3"], c2w: Float[Tensor, "3 4"]
) -> Float[Tensor, "*M 3"]:
    """World points of pixel centres ``(u + 0.5, v + 0.5)`` at camera depth ``z`` (world units, optical axis).

    Args:
        u, v: pixel column / row indices (integer or float). [*M]
        z: depth along the optical axis (> 0 for a point in front). [*M]
        K: pinhole intrinsics in pixels. [3, 3]
        c2w: camera-to-world, OpenGL, on the device of ``u``. [3, 4]
    """
    x = (u.float() + 0.5 - K[0, 2]) / K[0, 0] * z
    y = (v.float() + 0.5 - K[1, 2]) / K[1, 1] * z
    R = c2w[:3, :3].float() * GL_TO_CV.to(c2w.device)
    return torch.stack([x, y, z], -1) @ R.T + c2w[:3, 3].float()


def to_camera(points: Float[Tensor, "*M 3"], c2w: Float[Tensor, "3 4"]) -> Float[Tensor, "*M 3"]:
    """World points in the OpenCV frame of camera ``c2w`` (OpenGL; moved to the points' device): z > 0 in front."""
    R = c2w[:3, :3].float().to(points.device) * GL_TO_CV.to(points.device)
    return (points - c2w[:3, 3].float().to(points.device)) @ R


def project(
    cam: Float[Tensor, "*M 3"], K: Float[Tensor, "3 3"], min_depth: float
) -> Tuple[Float[Tensor, "*M"], Float[Tensor, "*M"]]:
    """Pixel coordinates ``(u, v)`` (continuous; pixel centres at ``+0.5``) of camera-frame points (OpenCV, from
    :func:`to_camera`), dividing by the depth clamped to at least ``min_depth`` so points behind stay finite."""
    z = cam[..., 2].clamp_min(min_depth)
    K = K.to(cam.device)
    return K[0, 0] * cam[..., 0] / z + K[0, 2], K[1, 1] * cam[..., 1] / z + K[1, 2]


def sample_bilinear(
    image: Float[Tensor, "h w D"], us: Float[Tensor, "*M"], vs: Float[Tensor, "*M"]
) -> Float[Tensor, "*M D"]:
    """``image`` sampled bilinearly at continuous pixel coordinates (``grid_sample`` with ``align_corners=False``,
    whose pixel centres sit at ``+0.5`` as here; coordinates outside take the border's value), on ``us``' device.

    ``us``/``vs`` are ``[M]`` or ``[H, W]``; the sampling grid keeps that layout.
    """
    h, w = image.shape[:2]
    rows = us.shape[0] if us.dim() == 2 else 1
    grid = torch.stack([us / w * 2 - 1, vs / h * 2 - 1], -1).reshape(1, rows, us.shape[-1], 2)
    src = image.float().to(us.device).permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
    return out.permute(1, 2, 0).reshape(*us.shape, image.shape[-1])


__all__ = ["GL_TO_CV", "intrinsics_at", "lift_pixels", "project", "sample_bilinear", "to_camera"]
