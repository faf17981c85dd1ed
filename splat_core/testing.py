"""Test helpers that ship with the package: cameras looking at a point, a tiny transforms.json scene, and the real
scenes in ``../shared/data`` (beside the project's own checkout) for tests that skip without them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

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
