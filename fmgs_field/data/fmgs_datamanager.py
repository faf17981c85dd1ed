"""Full-image datamanager that attaches cached teacher feature maps (hybrid CLIP, DINO) to every training batch.

Splatfacto trains on whole images through ``FullImageDatamanager``, so where LERF's datamanager attaches per-ray CLIP
and DINO samples (lerf:lerf/data/lerf_datamanager.py), this one attaches each training image's full teacher maps:
``batch["fmgs_clip"]`` [h, w, 512] and ``batch["fmgs_dino"]`` [h', w', 384], at the teachers' own resolutions. The maps
are computed once per image at construction (with a rich progress bar) and kept in a disk cache keyed by image content
and teacher (:mod:`fmgs_field.teachers.feature_cache`); in memory they are held as float16 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanager, FullImageDatamanagerConfig
from torch import Tensor

from fmgs_field.teachers import (
    CLIPTeacher,
    CLIPTeacherConfig,
    DINOTeacherConfig,
    FeatureCache,
    cached_teacher_features,
)


@dataclass
class FMGSDataManagerConfig(FullImageDatamanagerConfig):
    """Configuration of :class:`FMGSDataManager`."""

    _target: Type = field(default_factory=lambda: FMGSDataManager)
    clip: CLIPTeacherConfig = field(default_factory=CLIPTeacherConfig)
    """CLIP teacher: hybrid CLIP maps for training, text embeddings for queries (shared with the model)."""
    dino: DINOTeacherConfig = field(default_factory=DINOTeacherConfig)
    """DINO teacher: patch descriptors for training (loaded only while maps are computed)."""
    feature_cache_dir: Optional[Path] = None
    """Folder of the teacher-map cache (None: outputs/<data folder name>/fmgs_features, as LERF's outputs/<name>)."""


class FMGSDataManager(FullImageDatamanager):
    """``FullImageDatamanager`` whose training batches carry the image's teacher maps.

    Args:
        config (FMGSDataManagerConfig): Datamanager and teacher settings.
        device (torch.device or str): Device of the batches and of the CLIP teacher.
        test_mode (str): "val", "test" or "inference"; "inference" loads no images and computes no maps.
        world_size (int): Distributed world size.
        local_rank (int): Distributed rank.
    """

    config: FMGSDataManagerConfig

    def __init__(
        self,
        config: FMGSDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ) -> None:
        super().__init__(config, device, test_mode, world_size, local_rank, **kwargs)
        self.clip_teacher: CLIPTeacher = config.clip.setup().to(device)
        self.train_clip_maps: List[Tensor] = []
        self.train_dino_maps: List[Tensor] = []
        if test_mode != "inference":
            self._compute_teacher_maps()

    def feature_cache(self) -> FeatureCache:
        """The disk cache under ``feature_cache_dir`` (or its default)."""
        root = self.config.feature_cache_dir
        if root is None:
            data = Path(self.config.data or self.config.dataparser.data)
            name = (data if data.is_dir() or not data.suffix else data.parent).name or "scene"
            root = Path("outputs") / name / "fmgs_features"
        return FeatureCache(root)

    def _compute_teacher_maps(self) -> None:
        images = [entry["image"] for entry in self.cached_train]
        cache = self.feature_cache()
        clip_maps = cached_teacher_features(self.clip_teacher, images, cache)
        dino_teacher = self.config.dino.setup().to(self.device)  # frees its memory when this method returns
        dino_maps = cached_teacher_features(dino_teacher, images, cache)
        self.train_clip_maps = [m.half() for m in clip_maps]
        self.train_dino_maps = [m.half() for m in dino_maps]

    def teacher_maps(self, image_idx: int) -> Dict[str, Tensor]:
        """Teacher maps of one training image as float32 on the datamanager's device.

        Returns:
            ``{"fmgs_clip": [h, w, Dc], "fmgs_dino": [h', w', Dd]}``, empty when no maps were computed.
        """
        if not self.train_clip_maps:
            return {}
        return {
            "fmgs_clip": self.train_clip_maps[image_idx].to(self.device).float(),
            "fmgs_dino": self.train_dino_maps[image_idx].to(self.device).float(),
        }

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """``FullImageDatamanager.next_train`` plus the image's teacher maps (keys of :meth:`teacher_maps`)."""
        camera, data = super().next_train(step)
        data.update(self.teacher_maps(int(camera.metadata["cam_idx"])))
        return camera, data
