"""The answer format: the :class:`Box` record and box rasterising.

Qwen3-VL answers grounding prompts with JSON such as ``[{"bbox_2d": [x1, y1, x2, y2], "label": "sky"}]`` whose
coordinates are **normalised to 0-1000** of the image width (x) and height (y), independent of the pixel size the
vision encoder saw; :func:`~vlm_instruct_gs.guidance.parsing.parse_boxes` turns such an answer into :class:`Box`
records, which every source returns. :func:`boxes_to_mask` rasterises boxes into a pixel mask.

Coordinate conventions used throughout ``vlm_instruct_gs.guidance``:

- *normalised*: floats in [0, 1000]; x along the width, y along the height; (x1, y1) is the top-left corner.
- *pixel*: integer half-open ranges ``[c0, c1) x [r0, r1)`` of columns/rows of an ``H x W`` image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool
from torch import Tensor

NORM: float = 1000.0
"""Upper end of the normalised coordinate range used by Qwen3-VL grounding."""


@dataclass(frozen=True)
class Box:
    """One axis-aligned box in normalised 0-1000 image coordinates (immutable).

    Args:
        x1 (float): left edge, 0-1000 of the image width.
        y1 (float): top edge, 0-1000 of the image height.
        x2 (float): right edge, ``x1 <= x2 <= 1000``.
        y2 (float): bottom edge, ``y1 <= y2 <= 1000``.
        label (str): free text from the VLM or the evidence source. Default is "".

    Construct through :meth:`make` (clamps and orders the corners) unless the values are known to be valid.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    label: str = ""

    @classmethod
    def make(cls, x1: float, y1: float, x2: float, y2: float, label: str = "") -> "Box":
        """Clamp every coordinate to [0, 1000] and swap corners so that ``x1 <= x2`` and ``y1 <= y2``."""
        xa, xb = sorted((_clamp(x1), _clamp(x2)))
        ya, yb = sorted((_clamp(y1), _clamp(y2)))
        return cls(xa, ya, xb, yb, str(label))

    @classmethod
    def from_pixels(cls, c0: int, r0: int, c1: int, r1: int, height: int, width: int, label: str = "") -> "Box":
        """Box covering the half-open pixel ranges columns ``[c0, c1)`` and rows ``[r0, r1)`` of an H x W image."""
        return cls.make(c0 * NORM / width, r0 * NORM / height, c1 * NORM / width, r1 * NORM / height, label)

    @property
    def area(self) -> float:
        """Fraction of the image covered, in [0, 1]."""
        return (self.x2 - self.x1) * (self.y2 - self.y1) / (NORM * NORM)

    def to_pixels(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """Pixel ranges ``(c0, r0, c1, r1)``: columns ``c0 <= c < c1``, rows ``r0 <= r < r1``.

        A coordinate maps to ``v * size / 1000`` (rounded to 1e-6 to absorb float noise); the start is floored
        and the end ceiled, so every pixel the box touches is included and a box of positive area covers at least
        one pixel. Results are clipped to ``[0, size]``.
        """
        c0 = _px(self.x1, width, math.floor)
        c1 = _px(self.x2, width, math.ceil)
        r0 = _px(self.y1, height, math.floor)
        r1 = _px(self.y2, height, math.ceil)
        return c0, r0, c1, r1

    def to_json(self) -> Dict[str, Any]:
        """Qwen3-VL style record ``{"bbox_2d": [x1, y1, x2, y2], "label": label}`` (coords rounded to 0.1)."""
        return {"bbox_2d": [round(v, 1) for v in (self.x1, self.y1, self.x2, self.y2)], "label": self.label}


def _clamp(v: float) -> float:
    return min(max(float(v), 0.0), NORM)


def _px(v: float, size: int, rounding) -> int:
    return int(min(max(rounding(round(v * size / NORM, 6)), 0), size))


# ------------------------------------------------------------------------------------------------ rasterising


def boxes_to_mask(
    boxes: Sequence[Box], height: int, width: int, device: Optional[torch.device | str] = None
) -> Bool[Tensor, "H W"]:
    """Union of boxes rasterised on an ``H x W`` pixel grid.

    Args:
        boxes (Sequence[Box]): boxes in normalised 0-1000 coordinates.
        height (int): image height H in pixels.
        width (int): image width W in pixels.
        device: device of the returned mask. Default is CPU.

    Returns:
        Bool[Tensor, "H W"]: True where a pixel is touched by at least one box; pixel ranges follow
        :meth:`Box.to_pixels` (floor of the start, ceil of the end of ``v * size / 1000``).

    Raises:
        ValueError: if ``height`` or ``width`` is not positive.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"mask size must be positive, got height={height}, width={width}")
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    for box in boxes:  # a handful of boxes per image, not a per-Gaussian loop
        c0, r0, c1, r1 = box.to_pixels(height, width)
        mask[r0:r1, c0:c1] = True
    return mask


__all__ = ["NORM", "Box", "boxes_to_mask"]
