"""Test helpers that ship with the package: cameras looking at a point, a tiny transforms.json scene, and the real
scenes in ``../shared/data`` (beside the project's own checkout) for tests that skip without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
"""Folder of the real scenes (COLMAP layouts), next to the repository's checkout."""


def shared_scene(name: str) -> Path:
    """Path of the real scene ``name`` in :data:`SHARED_DATA`.

    Raises:
        pytest.skip.Exception: the scene (its ``sparse/0``) is absent, so a test calling this is skipped.
    """
    import pytest  # a test dependency: only tests call this

    path = SHARED_DATA / name
    if not (path / "sparse" / "0").is_dir():
        pytest.skip(f"real scene {path} is not available (../shared/data is only beside the project's own checkout)")
    return path


def look_at(eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """Camera-to-world [4, 4] (float64) at ``eye`` looking at ``target``, in nerfstudio's OpenGL convention (x right,
    y up, camera looking along -z) with world z up. ``eye`` must not lie straight above or below ``target``."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -fwd, eye
    return c2w


def write_transforms_scene(path: Path) -> Path:
    """Writes a nerfstudio transforms.json folder at ``path`` (created; must not hold ``images/`` yet): 8 noise images
    (32 x 24 PNG, seed 0) from a ring of cameras of radius 3 at height 1 looking at the origin (focal 30 px). Returns
    ``path``."""
    rng = np.random.default_rng(0)
    (path / "images").mkdir(parents=True)
    frames = []
    for i in range(8):
        a = 2 * np.pi * i / 8
        name = f"images/{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path / name)
        frames.append({"file_path": name, "transform_matrix": look_at([3 * np.cos(a), 3 * np.sin(a), 1.0]).tolist()})
    meta = {"camera_model": "OPENCV", "fl_x": 30.0, "fl_y": 30.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24,
            "frames": frames}
    (path / "transforms.json").write_text(json.dumps(meta))
    return path


__all__ = ["SHARED_DATA", "look_at", "shared_scene", "write_transforms_scene"]


def write_colmap_scene(path: Path, size: Tuple[int, int] = (32, 24), num: int = 8) -> Path:
    """A tiny 3DGS-layout scene at ``path``: ``images/*.jpg`` of noise (``size`` = width, height in pixels) and
    ``sparse/0`` (binary COLMAP, one PINHOLE camera, ``num`` views on a ring looking at the origin, 50 points).

    Returns:
        ``path``.
    """
    from nerfstudio.data.utils import colmap_parsing_utils as cu

    rng = np.random.default_rng(0)
    w, h = size
    (path / "images").mkdir(parents=True)
    (path / "sparse" / "0").mkdir(parents=True)
    cameras = {1: cu.Camera(id=1, model="PINHOLE", width=w, height=h, params=np.array([30.0, 30.0, w / 2, h / 2]))}
    images = {}
    for i in range(num):
        a = 2 * np.pi * i / num
        c2w_cv = look_at([3 * np.cos(a), 3 * np.sin(a), 1.0]) @ np.diag([1.0, -1.0, -1.0, 1.0])
        w2c = np.linalg.inv(c2w_cv)
        name = f"{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path / "images" / name, quality=95)
        images[i + 1] = cu.Image(id=i + 1, qvec=cu.rotmat2qvec(w2c[:3, :3]), tvec=w2c[:3, 3], camera_id=1, name=name,
                                 xys=np.zeros((0, 2)), point3D_ids=np.zeros(0, dtype=np.int64))
    points = {j + 1: cu.Point3D(id=j + 1, xyz=rng.normal(size=3) * 0.3, rgb=np.array([128, 128, 128]), error=0.5,
                                image_ids=np.array([1]), point2D_idxs=np.array([0])) for j in range(50)}
    cu.write_model(cameras, images, points, path / "sparse" / "0", ext=".bin")
    return path
