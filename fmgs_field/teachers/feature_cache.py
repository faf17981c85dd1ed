"""Disk cache of teacher feature maps, keyed by image content and teacher fingerprint.

Teacher maps are computed once per image. A cache entry is one file ``<root>/<teacher name>/<key>.pt`` with
``key = sha1(uint8 RGB bytes, image shape, fingerprint JSON)``: a changed image, model, weights tag or extraction
setting gives a new key, and renaming or moving images does not (LERF keys its cache by
path, with a ``.info`` check of the encoder).
Maps are stored as float16 (half the disk, as LERF stores its CLIP pyramid) and returned as float32 on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Float
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor

from fmgs_field.teachers.base import FeatureTeacher
from splat_core.images import to_uint8_image


def image_key(image: Tensor, fingerprint: Mapping[str, Any]) -> str:
    """sha1 hex digest of an image's uint8 RGB content, its shape and a teacher fingerprint.

    Float images are quantised to uint8 first, so a float image made from uint8 data (``/ 255``) hits the same entry.

    Args:
        image: RGB image, uint8 or float in [0, 1]. [H, W, 3]
        fingerprint: JSON-able teacher description (:meth:`FeatureTeacher.fingerprint`).

    Returns:
        40-character hex key.
    """
    rgb = to_uint8_image(image)
    digest = hashlib.sha1()
    digest.update(rgb.numpy().tobytes())
    digest.update(json.dumps({"shape": list(rgb.shape), "fp": fingerprint}, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class FeatureCache:
    """Folder of cached feature maps.

    Args:
        root (Path or str): Cache folder; created on first write.
    """

    def __init__(self, root: Union[str, Path]) -> None:
        self.root = Path(root)

    def path(self, name: str, key: str) -> Path:
        """File of one entry."""
        return self.root / name / f"{key}.pt"

    def load(self, name: str, key: str) -> Optional[Float[Tensor, "h w D"]]:
        """The cached map as float32, or None on a miss or an unreadable file."""
        path = self.path(name, key)
        if not path.is_file():
            return None
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)["features"].float()
        except Exception:  # truncated or foreign file: recompute
            return None

    def save(self, name: str, key: str, features: Tensor, fingerprint: Mapping[str, Any]) -> None:
        """Writes an entry atomically (temporary file, then rename)."""
        path = self.path(name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"features": features.detach().cpu().half(), "fingerprint": dict(fingerprint)}, str(tmp))
        os.replace(tmp, path)

    def get_or_compute(
        self,
        name: str,
        images: Sequence[Tensor],
        compute: Callable[[Tensor], Tensor],
        fingerprint: Mapping[str, Any],
    ) -> List[Float[Tensor, "h w D"]]:
        """Feature maps of ``images``, computing (with a rich progress bar) and storing the missing ones.

        Args:
            name: Sub-folder, e.g. the teacher's name.
            images: RGB images, uint8 or float in [0, 1]. Each [H, W, 3]
            compute: Image -> feature map. [H, W, 3] -> [h, w, D]
            fingerprint: Teacher description that is part of every key.

        Returns:
            One float32 CPU map per image, in order. Each [h, w, D]
        """
        keys = [image_key(img, fingerprint) for img in images]
        out: List[Optional[Tensor]] = [self.load(name, k) for k in keys]
        missing = [i for i, feats in enumerate(out) if feats is None]
        if not missing:
            return out  # type: ignore[return-value]
        columns = (
            TextColumn("[bold blue]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as progress:
            task = progress.add_task(f"Caching {name} features", total=len(missing))
            for i in missing:
                feats = compute(images[i]).detach()
                self.save(name, keys[i], feats, fingerprint)
                out[i] = feats.cpu().half().float()  # same values as a later cache hit
                progress.advance(task)
        return out  # type: ignore[return-value]


def cached_teacher_features(
    teacher: FeatureTeacher,
    images: Sequence[Tensor],
    cache: Optional[FeatureCache],
) -> List[Float[Tensor, "h w D"]]:
    """Teacher maps of ``images`` through ``cache`` (or computed directly when ``cache`` is None).

    Args:
        teacher: A CLIP or DINO teacher.
        images: RGB images. Each [H, W, 3]
        cache: Disk cache, or None.

    Returns:
        One float32 CPU map per image. Each [h, w, D]
    """
    if cache is None:
        return [teacher.image_features(img).float().cpu() for img in images]
    fingerprint: Dict[str, Any] = teacher.fingerprint()
    return cache.get_or_compute(teacher.name, images, teacher.image_features, fingerprint)
