"""Per-pixel evidence maps of the weights-free guidance source (:mod:`~vlm_instruct_gs.guidance.image_evidence`):
float maps from arbitrary inputs, texture energy, and cell means over a coarse grid. CPU, float32, channels-last.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

EPS = 1e-6
"""Guard against division by zero in ratios and normalisations."""


def to_float_map(value: Any, height: int, width: int) -> Float[Tensor, "H W"]:
    """``[H, W]`` float32 map (error, depth) from ``[H, W]`` / ``[H, W, C]`` input (channels averaged; uint8 read
    as 0-255 and scaled to 0-1), resized bilinearly to ``height x width`` if needed. NaN/inf become 0."""
    t = value if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value))
    t = t.detach().cpu()
    t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
    if t.ndim == 3:
        t = t.mean(-1)
    if t.ndim != 2:
        raise ValueError(f"expected a map of shape [H, W] or [H, W, C], got {tuple(t.shape)}")
    t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
    if t.shape != (height, width):
        t = F.interpolate(t[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    return t


def resize_image(image: Float[Tensor, "h w 3"], height: int, width: int) -> Float[Tensor, "H W 3"]:
    """Bilinear resize of a channels-last image to ``height x width`` (e.g. a reference photo to the render's size)."""
    return F.interpolate(image.permute(2, 0, 1)[None], size=(height, width), mode="bilinear")[0].permute(1, 2, 0)


def laplacian_energy(image: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W"]:
    """Squared 4-neighbour Laplacian of the luminance (replicate padding): local high-frequency energy."""
    gray = (image * torch.tensor([0.299, 0.587, 0.114])).sum(-1)[None, None]  # [1, 1, H, W]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])[None, None]
    lap = F.conv2d(F.pad(gray, (1, 1, 1, 1), mode="replicate"), kernel)
    return lap[0, 0].square()


def cell_means(
    values: Float[Tensor, "H W"], grid: int, valid: Optional[Bool[Tensor, "H W"]] = None
) -> tuple[Float[Tensor, "G G"], Float[Tensor, "G G"]]:
    """Area means over a ``grid x grid`` partition (adaptive pooling) and the valid fraction of each cell.

    Returns:
        means: ``[G, G]`` mean of the valid pixels of each cell (0 where none is valid).
        coverage: ``[G, G]`` fraction of valid pixels per cell, in [0, 1].
    """
    w = torch.ones_like(values) if valid is None else valid.float()
    sums = F.adaptive_avg_pool2d((values * w)[None, None], grid)[0, 0]
    coverage = F.adaptive_avg_pool2d(w[None, None], grid)[0, 0]
    return sums / coverage.clamp_min(EPS), coverage


__all__ = ["EPS", "cell_means", "laplacian_energy", "resize_image", "to_float_map"]
