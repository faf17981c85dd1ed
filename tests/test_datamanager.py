"""splat_core.data.datamanager: the training batches of nerfstudio's FullImageDatamanager, with each camera sliced once."""

from __future__ import annotations

import random

import torch
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig

from splat_core.data.datamanager import SplatDatamanagerConfig
from splat_core.data.scene_dataparser import SceneDataParserConfig


def _datamanager(config_type, scene):
    random.seed(3)  # nerfstudio's view order draws from python's generator
    config = config_type(dataparser=SceneDataParserConfig(data=scene, num_random_points=20), cache_images_type="uint8")
    return config.setup(device="cpu", test_mode="val")


def test_batches_equal_nerfstudios_and_cameras_are_sliced_once(transforms_scene):
    ours, theirs = _datamanager(SplatDatamanagerConfig, transforms_scene), _datamanager(
        FullImageDatamanagerConfig, transforms_scene)
    n = len(ours.train_dataset)
    seen = {}
    for step in range(2 * n + 1):  # more than two epochs: the view list refills
        camera, batch = ours.next_train(step)
        ref_camera, ref_batch = theirs.next_train(step)
        idx = camera.metadata["cam_idx"]
        assert idx == ref_camera.metadata["cam_idx"]
        assert torch.equal(batch["image"], ref_batch["image"])
        for name in ("camera_to_worlds", "fx", "fy", "cx", "cy", "width", "height"):
            assert torch.equal(getattr(camera, name), getattr(ref_camera, name)), name
        assert seen.setdefault(idx, camera) is camera  # the same object every time this view comes round
        batch["image"] = None  # a consumer replacing a key changes its copy only
    assert len(seen) == n and ours.cached_train[0]["image"] is not None
    ours.train_cameras = ours.train_cameras.to("cpu")  # a new cameras object: the cache starts again
    camera, _ = ours.next_train(0)
    assert camera is not seen[camera.metadata["cam_idx"]]
