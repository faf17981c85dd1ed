"""nerfstudio's ``FullImageDatamanager`` with each training camera sliced and moved to the device once.

``FullImageDatamanager.next_train`` slices ``train_cameras[i : i + 1]`` and moves it to the device every step. A
``Cameras`` is a ``TensorDataclass``: that slice and ``.to`` walk all of its fields in Python (about 25 ATen ops,
0.12 ms of host time per step on the CPU, measured with ``benchmarks/sync_sites.py``'s dispatch counting), which is
host time the splatting step cannot hide (it is host-bound, ``docs/benchmarks/profile_sync_sites``). The camera of an
image never changes during training (the camera optimiser corrects poses in the model, not in the datamanager), so
this subclass keeps each one after its first use. Images, the view order and the returned values are nerfstudio's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Tuple, Type

from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig


@dataclass
class SplatDatamanagerConfig(FullImageDatamanagerConfig):
    """nerfstudio's ``FullImageDatamanagerConfig`` (every field still applies) for :class:`SplatDatamanager`."""

    _target: Type = field(default_factory=lambda: SplatDatamanager)


class SplatDatamanager(FullImageDatamanager):
    """``FullImageDatamanager`` whose :meth:`next_train` reuses each training camera's device copy (module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        self._train_camera_cache: Dict[int, Cameras] = {}
        self._cached_from: object = None
        super().__init__(*args, **kwargs)

    def train_camera(self, image_idx: int) -> Cameras:
        """Training camera ``image_idx`` as ``next_train`` returns it: ``train_cameras[i : i + 1]`` on the device, with
        ``metadata["cam_idx"] = i``; the same object on every call while ``train_cameras`` is the same object.
        Callers must not modify it in place."""
        if self._cached_from is not self.train_cameras:
            self._train_camera_cache, self._cached_from = {}, self.train_cameras
        camera = self._train_camera_cache.get(image_idx)
        if camera is None:
            camera = self.train_cameras[image_idx : image_idx + 1].to(self.device)
            if camera.metadata is None:
                camera.metadata = {}
            camera.metadata["cam_idx"] = image_idx
            self._train_camera_cache[image_idx] = camera
        return camera

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """nerfstudio's ``next_train`` (same view order, same batch) with the camera from :meth:`train_camera`."""
        image_idx = self.train_unseen_cameras.pop(0)
        if len(self.train_unseen_cameras) == 0:
            self.train_unseen_cameras = self.sample_train_cameras()
        data = self.cached_train[image_idx].copy()  # a copy, as nerfstudio: the cached dict is never mutated
        data["image"] = data["image"].to(self.device)
        return self.train_camera(image_idx), data
