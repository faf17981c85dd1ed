"""Image dtype conversions shared by both methods, through torchvision's ``to_dtype`` (0-255 uint8 <-> 0-1 float).

Images here are channels-last ``[H, W, C]`` (nerfstudio's convention for cached images and renders), RGB, optionally
with a 4th alpha channel that is dropped; torchvision works channels-first, so the helpers permute around it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from jaxtyping import Float, UInt8
from PIL import Image
from torch import Tensor
from torchvision.transforms.v2 import functional as TF


def _as_tensor(image: Any) -> Tensor:
    """``[H, W, 3]`` CPU tensor (uint8 or float) from a tensor, array or PIL image of shape [H, W], [H, W, 1|3|4].

    Raises:
        ValueError: any other shape.
    """
    if isinstance(image, Image.Image):
        image = image.convert("RGB")
    t = image if isinstance(image, Tensor) else torch.from_numpy(np.array(image))
    t = t.detach().cpu()
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape [H, W, 3], got {tuple(t.shape)}")
    return t[..., :3] if t.shape[-1] >= 3 else t.expand(*t.shape[:2], 3)


def to_float_image(image: Any) -> Float[Tensor, "H W 3"]:
    """float32 ``[H, W, 3]`` CPU image in [0, 1] (NaN as 0, clamped): integer inputs are read as 0-255, floats as 0-1.

    Raises:
        ValueError: unsupported shape (see :func:`_as_tensor`).
    """
    t = _as_tensor(image)
    if t.is_floating_point():
        return torch.nan_to_num(t.float()).clamp(0.0, 1.0)
    return TF.to_dtype(t.to(torch.uint8).permute(2, 0, 1), torch.float32, scale=True).permute(1, 2, 0)


def to_uint8_image(image: Any) -> UInt8[Tensor, "H W 3"]:
    """uint8 ``[H, W, 3]`` contiguous CPU image: floats are read as 0-1, clamped and rounded; uint8 kept as is.

    Raises:
        ValueError: unsupported shape (see :func:`_as_tensor`).
    """
    t = _as_tensor(image)
    if t.dtype == torch.uint8:
        return t.contiguous()
    # torchvision's float -> uint8 truncates (x * 255); round instead so 0.5/255 steps survive a round trip
    return (to_float_image(t) * 255.0).round().to(torch.uint8).contiguous()


def to_pil_image(image: Any) -> Image.Image:
    """RGB PIL image of a tensor, array or PIL image (see :func:`to_uint8_image`)."""
    return TF.to_pil_image(to_uint8_image(image).permute(2, 0, 1))


__all__ = ["to_float_image", "to_pil_image", "to_uint8_image"]
