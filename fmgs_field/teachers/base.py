"""Base class of the frozen 2D teachers (CLIP, DINO) whose dense features FMGS distils into its field.

Shaped after LERF's lerf/encoders/image_encoder.py (``BaseImageEncoder``) and lerf/data/utils/dino_extractor.py, with
two differences. Weights are loaded explicitly at construction from a config field, and a missing file raises one
error naming that field, never a hidden download. The frozen network is kept out of the module tree, so a model
that owns a teacher neither checkpoints its weights nor lists them in ``parameters()``. ``.to()`` still moves it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn


class MissingWeightsError(FileNotFoundError):
    """Raised at teacher construction when the weights named by a config field cannot be found locally."""


@dataclass
class FeatureTeacherConfig(InstantiateConfig):
    """Common configuration of the teachers."""

    _target: Type = field(default_factory=lambda: FeatureTeacher)


class FeatureTeacher(nn.Module, ABC):
    """A frozen image model that turns an RGB image into a dense feature map ``[h, w, D]``.

    Subclasses load their network in ``__init__`` and hand it to :meth:`_set_network`.

    Args:
        config (FeatureTeacherConfig): The teacher's configuration.
    """

    def __init__(self, config: FeatureTeacherConfig) -> None:
        super().__init__()
        self.config = config
        object.__setattr__(self, "_network", None)

    def _set_network(self, network: nn.Module) -> None:
        """Stores the frozen network outside ``_modules`` (no state_dict entries, no parameters)."""
        network.eval().requires_grad_(False)
        object.__setattr__(self, "_network", network)

    @property
    def network(self) -> nn.Module:
        """The frozen network (eval mode, no gradients)."""
        if self._network is None:
            raise RuntimeError(f"{type(self).__name__} has no network")
        return self._network

    def _apply(self, fn, recurse: bool = True):  # moves/casts the hidden network with the module
        if self._network is not None:
            self._network._apply(fn)
        return super()._apply(fn, recurse)

    @property
    def device(self) -> torch.device:
        """Device of the frozen network."""
        return next(self.network.parameters()).device

    @property
    @abstractmethod
    def name(self) -> str:
        """Short identifier used in cache folders and logs, e.g. ``openclip_ViT-B-16_laion2b_s34b_b88k``."""

    @property
    @abstractmethod
    def feature_dim(self) -> int:
        """Channels ``D`` of :meth:`image_features`."""

    @abstractmethod
    def fingerprint(self) -> Dict[str, Any]:
        """JSON-able description of everything that changes the features (model, weights tag, settings)."""

    @abstractmethod
    def image_features(self, image: Float[Tensor, "H W 3"]) -> Float[Tensor, "h w D"]:
        """Dense feature map of one RGB image with values in [0, 1]."""


def resize_feature_map(
    features: Float[Tensor, "h w D"],
    size: Tuple[int, int],
    mode: str = "bilinear",
) -> Float[Tensor, "H W D"]:
    """Resizes a feature map (e.g. a teacher map to the rendered resolution), ``align_corners=False``.

    Args:
        features: Feature map. [h, w, D]
        size: Target (H, W).
        mode: ``F.interpolate`` mode.

    Returns:
        Resized map. [H, W, D]
    """
    if tuple(features.shape[:2]) == tuple(size):
        return features
    out = F.interpolate(features.permute(2, 0, 1)[None].float(), size=size, mode=mode, align_corners=False)
    return out[0].permute(1, 2, 0)


def normalize_image(
    images: Float[Tensor, "B 3 H W"],
    mean: Tuple[float, ...],
    std: Tuple[float, ...],
    size: Optional[Tuple[int, int]] = None,
) -> Float[Tensor, "B 3 h w"]:
    """Optionally resizes (bilinear, antialiased) and then standardises a batch of images.

    Args:
        images: Images in [0, 1]. [B, 3, H, W]
        mean: Per-channel mean.
        std: Per-channel standard deviation.
        size: Target (h, w) or None to keep the size.

    Returns:
        Network input. [B, 3, h, w]
    """
    if size is not None and tuple(images.shape[-2:]) != tuple(size):
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=True)
    m = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s
