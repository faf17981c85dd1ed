"""Full-image datamanager that attaches cached teacher feature maps (hybrid CLIP, DINO) to training and eval batches.

Splatfacto trains on whole images through ``FullImageDatamanager``, so where LERF's datamanager attaches per-ray CLIP
and DINO samples (LERF's lerf/data/lerf_datamanager.py), this one attaches each image's full teacher maps:
``batch["fmgs_clip"]`` [h, w, 512] and ``batch["fmgs_dino"]`` [h', w', 384], at the teachers' own resolutions.

- Training images (``test_mode="val"``, i.e. ``ns-train``): maps computed at construction, with a rich progress bar.
- Eval images (``eval_feature_fidelity``): maps computed on the first eval batch (so ``ns-viewer``/``ns-render``, which
  set up in "test" mode, compute none), for the model's feature-fidelity metrics.
- ``eval_labels``: a LERF-OVS label folder; every eval batch then carries ``batch["fmgs_labels"]``, the
  :class:`~fmgs_field.evaluation.FrameLabels` of the frame with the same file stem (empty for unlabelled frames).

Maps go through a disk cache keyed by image content and teacher (:mod:`fmgs_field.teachers.feature_cache`), so eval
images that are also training images cost nothing; in memory they are float16 on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from fmgs_field.evaluation import FrameLabels, load_lerf_ovs_labels
from fmgs_field.teachers import (
    CLIPTeacher,
    CLIPTeacherConfig,
    DINOTeacherConfig,
    FeatureCache,
    MissingWeightsError,
    cached_teacher_features,
)
from splat_core.data.datamanager import SplatDatamanager, SplatDatamanagerConfig


@dataclass
class FMGSDataManagerConfig(SplatDatamanagerConfig):
    """Configuration of :class:`FMGSDataManager`."""

    _target: Type = field(default_factory=lambda: FMGSDataManager)
    clip: CLIPTeacherConfig = field(default_factory=CLIPTeacherConfig)
    """CLIP teacher: hybrid CLIP maps for training, text embeddings for queries (shared with the model)."""
    dino: DINOTeacherConfig = field(default_factory=DINOTeacherConfig)
    """DINO teacher: patch descriptors for training (loaded only while maps are computed)."""
    feature_cache_dir: Optional[Path] = None
    """Folder of the teacher-map cache (None: outputs/<data folder name>/fmgs_features, as LERF's outputs/<name>)."""
    eval_feature_fidelity: bool = True
    """Attach teacher maps to eval batches too (computed on first use), so evaluation reports feature fidelity (skipped
    with a log line when a teacher's weights are missing)."""
    eval_labels: Optional[Path] = None
    """LERF-OVS label folder of the scene (frame_*.json, e.g. lerf_ovs/label/teatime): evaluation then reports mIoU and
    localization accuracy. Label files are matched to eval images by file stem, so the labelled frames must be in the
    eval split (e.g. the colmap dataparser's --eval-mode all or filename)."""


class FMGSDataManager(SplatDatamanager):
    """The shared full-image datamanager (:class:`splat_core.data.datamanager.SplatDatamanager`) whose training and
    eval batches carry the image's teacher maps (see the module).

    Args:
        config (FMGSDataManagerConfig): Datamanager and teacher settings.
        device (torch.device or str): Device of the batches and of the CLIP teacher.
        test_mode (str): "val" (training: training maps at construction), "test" (ns-eval, ns-viewer: eval maps on
            first use only) or "inference" (no images, no maps, no labels).
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
        self.eval_clip_maps: List[Tensor] = []
        self.eval_dino_maps: List[Tensor] = []
        self.eval_labels: Dict[int, FrameLabels] = {}
        if test_mode == "val":
            self.train_clip_maps, self.train_dino_maps = self._compute_teacher_maps(self.cached_train)
        if test_mode != "inference" and config.eval_labels is not None:
            self.eval_labels = self._match_eval_labels(Path(config.eval_labels))

    def feature_cache(self) -> FeatureCache:
        """The disk cache under ``feature_cache_dir`` (or its default)."""
        root = self.config.feature_cache_dir
        if root is None:
            data = Path(self.config.data or self.config.dataparser.data)
            name = (data if data.is_dir() or not data.suffix else data.parent).name or "scene"
            root = Path("outputs") / name / "fmgs_features"
        return FeatureCache(root)

    def _compute_teacher_maps(self, entries: List[Dict[str, Tensor]]) -> Tuple[List[Tensor], List[Tensor]]:
        images = [entry["image"] for entry in entries]
        cache = self.feature_cache()
        dino_teacher = self.config.dino.setup().to(self.device)  # freed on return; loaded first to fail fast
        clip_maps = cached_teacher_features(self.clip_teacher, images, cache)
        dino_maps = cached_teacher_features(dino_teacher, images, cache)
        return [m.half() for m in clip_maps], [m.half() for m in dino_maps]

    def _match_eval_labels(self, folder: Path) -> Dict[int, FrameLabels]:
        if not folder.is_dir():
            raise FileNotFoundError(f"FMGSDataManagerConfig.eval_labels (= {str(folder)!r}) is not a folder")
        by_stem = {Path(f.name).stem: f for f in load_lerf_ovs_labels(folder).values()}
        stems = [Path(p).stem for p in self.eval_dataset.image_filenames]
        matched = {i: by_stem[s] for i, s in enumerate(stems) if s in by_stem}
        missing = sorted(set(by_stem) - set(stems))
        CONSOLE.log(f"LERF-OVS labels: {len(matched)} of {len(by_stem)} labelled frames are in the eval split")
        if missing:
            CONSOLE.log(f"[yellow]Labelled frames not in the eval split (not evaluated): {', '.join(missing)}")
        return matched

    def teacher_maps(self, image_idx: int, split: Literal["train", "eval"] = "train") -> Dict[str, Tensor]:
        """Teacher maps of one image as float32 on the datamanager's device (eval maps are computed on first use).

        Args:
            image_idx: Index in the split's dataset.
            split: "train" or "eval".

        Returns:
            ``{"fmgs_clip": [h, w, Dc], "fmgs_dino": [h', w', Dd]}``, empty when the split has no maps.
        """
        if split == "eval" and self.config.eval_feature_fidelity and not self.eval_clip_maps:
            try:
                self.eval_clip_maps, self.eval_dino_maps = self._compute_teacher_maps(self.cached_eval)
            except MissingWeightsError as err:  # e.g. ns-eval on a machine without the DINO weights
                CONSOLE.log(f"[yellow]Feature fidelity not evaluated: {err}")
                self.config.eval_feature_fidelity = False
        if split == "train":
            clip_maps, dino_maps = self.train_clip_maps, self.train_dino_maps
        else:
            clip_maps, dino_maps = self.eval_clip_maps, self.eval_dino_maps
        if not clip_maps:
            return {}
        return {
            "fmgs_clip": clip_maps[image_idx].to(self.device).float(),
            "fmgs_dino": dino_maps[image_idx].to(self.device).float(),
        }

    def eval_extras(self, image_idx: int) -> Dict[str, object]:
        """What an eval batch carries beyond the image: teacher maps and, with ``eval_labels``, ``fmgs_labels``.

        Returns:
            Keys of :meth:`teacher_maps` and ``"fmgs_labels"`` (empty :class:`FrameLabels` for unlabelled frames).
        """
        extras: Dict[str, object] = dict(self.teacher_maps(image_idx, "eval"))
        if self.config.eval_labels is not None:
            name = Path(self.eval_dataset.image_filenames[image_idx]).name
            empty = FrameLabels(name=name, index=image_idx, height=0, width=0)
            extras["fmgs_labels"] = self.eval_labels.get(image_idx, empty)
        return extras

    def next_train(self, step: int) -> Tuple[Cameras, Dict]:
        """``SplatDatamanager.next_train`` plus the image's teacher maps (keys of :meth:`teacher_maps`)."""
        camera, data = super().next_train(step)
        data.update(self.teacher_maps(int(camera.metadata["cam_idx"])))
        return camera, data

    def next_eval_image(self, step: int) -> Tuple[Cameras, Dict]:
        """``FullImageDatamanager.next_eval_image`` plus :meth:`eval_extras` of the drawn image."""
        unseen = list(self.eval_unseen_cameras)
        camera, data = super().next_eval_image(step)
        # the parent pops one random index (and refills the list once it is empty)
        image_idx = unseen[0] if len(unseen) == 1 else (set(unseen) - set(self.eval_unseen_cameras)).pop()
        data.update(self.eval_extras(image_idx))
        return camera, data

    def eval_batches(self) -> List[Tuple[Cameras, Dict]]:
        """``fixed_indices_eval_dataloader`` (every eval image, in order), each batch with :meth:`eval_extras`.

        A method, not a property override: the viewer's ``parse_object`` reads every public property at start-up, and
        that must not compute teacher maps.
        """
        pairs = self.fixed_indices_eval_dataloader
        for i, (_, data) in enumerate(pairs):
            data.update(self.eval_extras(i))
        return pairs
