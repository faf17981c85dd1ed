"""A small built-in scene, rendered from known Gaussians, so the method runs anywhere with nothing to download.

The scene is a checkered floor with a striped ball and a box on it, seen by a ring of cameras; images are rendered
with the project's own rasteriser and written as a nerfstudio ``transforms.json`` folder, which the scene
dataparser reads like any capture.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Tuple

import numpy as np
import torch
from PIL import Image

from splat_core.rendering import rasterize


def _scene_gaussians(seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """means [N,3], scales [N,3], colours [N,3] in [0,1], opacities [N] of the built-in scene (z up, metres)."""
    gen = torch.Generator().manual_seed(seed)
    # floor: a 9x9 checkerboard of flat Gaussians
    g = torch.linspace(-1.6, 1.6, 24)
    fx, fy = torch.meshgrid(g, g, indexing="ij")
    floor = torch.stack([fx.reshape(-1), fy.reshape(-1), torch.zeros(fx.numel())], -1)
    check = ((torch.floor((floor[:, 0] + 1.6) / 0.4) + torch.floor((floor[:, 1] + 1.6) / 0.4)) % 2)[:, None]
    floor_rgb = check * torch.tensor([0.85, 0.82, 0.75]) + (1 - check) * torch.tensor([0.25, 0.3, 0.35])
    floor_scale = torch.tensor([0.09, 0.09, 0.01]).expand(floor.shape[0], 3)
    # ball: points on a sphere with coloured latitude stripes
    n_ball = 700
    v = torch.nn.functional.normalize(torch.randn(n_ball, 3, generator=gen), dim=-1)
    ball = v * 0.45 + torch.tensor([-0.3, 0.2, 0.5])
    stripe = (torch.floor((v[:, 2] + 1) * 4) % 3).long()
    palette = torch.tensor([[0.9, 0.2, 0.15], [0.95, 0.85, 0.2], [0.15, 0.45, 0.9]])
    ball_rgb = palette[stripe]
    ball_scale = torch.full((n_ball, 3), 0.05)
    # box: points on the faces of a cube, green with a darker top
    n_box = 500
    p = torch.rand(n_box, 3, generator=gen) * 2 - 1
    axis = torch.randint(0, 3, (n_box,), generator=gen)
    p[torch.arange(n_box), axis] = torch.sign(p[torch.arange(n_box), axis])
    box = p * 0.3 + torch.tensor([0.55, -0.35, 0.3])
    box_rgb = torch.where((p[:, 2:3] > 0.99), torch.tensor([0.1, 0.35, 0.1]), torch.tensor([0.3, 0.75, 0.3]))
    box_scale = torch.full((n_box, 3), 0.045)
    means = torch.cat([floor, ball, box])
    scales = torch.cat([floor_scale, ball_scale, box_scale])
    colors = torch.cat([floor_rgb, ball_rgb, box_rgb])
    opacities = torch.full((means.shape[0],), 0.95)
    return means, scales, colors, opacities


def _look_at_c2w(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """OpenGL camera-to-world (x right, y up, looking down -z) at ``eye`` looking at ``target``, z-up world."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 0.0, 1.0]))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, eye
    return c2w


def write_synthetic_scene(
    out_dir: Path, num_views: int = 24, width: int = 128, height: int = 96, seed: int = 0
) -> Path:
    """Render the built-in scene from a ring of cameras into ``out_dir`` (nerfstudio ``transforms.json`` layout).

    Args:
        out_dir: folder to create; ``images/frame_XXXXX.png`` and ``transforms.json`` are written there.
        num_views: cameras on two rings (alternating heights) around the scene.
        width, height: image size in pixels; focal length is 0.9 x width (pinhole, no distortion).
        seed: seed of the scene's Gaussians.

    Returns:
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    means, scales, colors, opacities = _scene_gaussians(seed)
    quats = torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(means.shape[0], 4)
    focal = 0.9 * width
    K = torch.tensor([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]], dtype=torch.float32)
    frames = []
    for i in range(num_views):
        angle = 2 * math.pi * i / num_views
        eye = np.array([3.0 * math.cos(angle), 3.0 * math.sin(angle), 1.3 + 0.5 * (i % 2)])
        c2w = _look_at_c2w(eye, np.array([0.0, 0.0, 0.3]))
        c2w_cv = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL -> OpenCV axes for the rasteriser
        viewmat = torch.from_numpy(np.linalg.inv(c2w_cv)).float()
        with torch.no_grad():
            render, _, _ = rasterize(
                means=means, quats=quats, scales=scales, opacities=opacities, colors=colors,
                viewmats=viewmat[None], Ks=K[None], width=width, height=height,
                backgrounds=torch.tensor([[0.62, 0.74, 0.86]]),
            )
        img = (render[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        name = f"images/frame_{i:05d}.png"
        Image.fromarray(img).save(out_dir / name)
        frames.append({"file_path": name, "transform_matrix": c2w.tolist()})
    meta = {
        "camera_model": "OPENCV", "fl_x": focal, "fl_y": focal, "cx": width / 2, "cy": height / 2,
        "w": width, "h": height, "frames": frames,
    }
    (out_dir / "transforms.json").write_text(json.dumps(meta, indent=1))
    return out_dir
