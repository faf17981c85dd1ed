"""The answer format: the :class:`Box` record, the Qwen3-VL grounding-answer parser, and box rasterising.

Qwen3-VL answers grounding prompts with JSON such as ``[{"bbox_2d": [x1, y1, x2, y2], "label": "sky"}]`` whose
coordinates are **normalised to 0-1000** of the image width (x) and height (y), independent of the pixel size the
vision encoder saw. :func:`parse_boxes` turns such an answer, however messy, into a list of :class:`Box`; it never
raises on model output and logs a warning when it had to give up. :func:`boxes_to_mask` rasterises boxes into a
pixel mask.

Coordinate conventions used throughout ``vlm_instruct_gs.guidance``:

- *normalised*: floats in [0, 1000]; x along the width, y along the height; (x1, y1) is the top-left corner.
- *pixel*: integer half-open ranges ``[c0, c1) x [r0, r1)`` of columns/rows of an ``H x W`` image.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool
from torch import Tensor

logger = logging.getLogger(__name__)

NORM: float = 1000.0
"""Upper end of the normalised coordinate range used by Qwen3-VL grounding."""

_BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d", "bounding_box")
_LABEL_KEYS = ("label", "name", "category", "description", "object")
_SNIPPET = 160
_OPEN = re.compile(r"[\[{]")
_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")


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


# --------------------------------------------------------------------------------------------------- parsing


def parse_boxes(text: Optional[str]) -> List[Box]:
    """Parse a VLM grounding answer into boxes; never raises on model output.

    Accepts a JSON list of ``{"bbox_2d": [x1, y1, x2, y2], "label": ...}`` records and common deviations: markdown
    code fences, prose around the JSON, ``<think>`` blocks, other box keys (``bbox``, ``box_2d``, ``box``), a single
    object instead of a list, bare ``[x1, y1, x2, y2]`` lists, ``{"x1": ..}`` dicts, a wrapper object such as
    ``{"regions": [...]}``, trailing commas, single quotes, a list cut off by ``max_new_tokens`` (complete records
    are kept) and Qwen2-VL style ``(x1,y1),(x2,y2)`` pairs. Coordinates that are all within [0, 1] with a fraction
    are read as fractions of the image and scaled to 0-1000.

    Args:
        text (str | None): raw model answer.

    Returns:
        list[Box]: boxes in normalised 0-1000 coordinates, clamped and ordered, zero-area boxes dropped. An empty
        list for ``[]`` (logged at debug level) and for empty or unparseable text (logged as a warning).
    """
    if text is None or not text.strip():
        logger.warning("VLM answer is empty; no boxes")
        return []
    body = text.rsplit("</think>", 1)[-1] if "</think>" in text else text  # reasoning before the answer
    body = re.sub(r"<think>.*$", " ", body, flags=re.S)  # reasoning cut off before it ended
    body = re.sub(r"<\|[a-z_]+\|>", " ", body)  # special tokens left in by a decoder (<|box_start|>, ...)
    fences = re.findall(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)(?:```|$)", body, flags=re.S)
    values: List[Any] = []
    for segment in fences if fences else [body]:
        values.extend(_decode_values(segment))
    if not values:
        values = [v for v in (_loads_lenient(m.group(0)) for m in _FLAT_OBJECT.finditer(body)) if v is not None]
    boxes: List[Box] = []
    for value in values:
        boxes.extend(_collect(value, depth=0))
    if not boxes:
        boxes = _pairs_fallback(body)
    kept = [b for b in boxes if b.x2 > b.x1 and b.y2 > b.y1]
    if len(kept) < len(boxes):
        logger.debug("dropped %d zero-area box(es)", len(boxes) - len(kept))
    if not kept and not _is_explicit_empty(values):
        logger.warning("no boxes found in VLM answer: %r", _snippet(text))
    return kept


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "..."


def _is_explicit_empty(values: List[Any]) -> bool:
    return bool(values) and all(v == [] or v == {} for v in values)


def _decode_values(segment: str) -> List[Any]:
    """Every JSON-like value (list or object) found left to right in ``segment``; truncated ones are salvaged."""
    out: List[Any] = []
    pos = 0
    while True:
        match = _OPEN.search(segment, pos)
        if match is None:
            return out
        start = match.start()
        end = _balanced_end(segment, start)
        if end is None:  # cut off (max_new_tokens): keep complete flat records after `start`
            tail = segment[start:]
            out.extend(v for v in (_loads_lenient(m.group(0)) for m in _FLAT_OBJECT.finditer(tail)) if v)
            return out
        value = _loads_lenient(segment[start:end])
        if value is None:
            pos = start + 1
        else:
            out.append(value)
            pos = end


def _balanced_end(text: str, start: int) -> Optional[int]:
    """Index one past the bracket closing ``text[start]``, skipping quoted strings; None if never closed."""
    depth, quote, escaped = 0, "", False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


def _loads_lenient(candidate: str) -> Any:
    """JSON, then JSON without trailing commas, then a Python literal, then single-to-double quotes; else None."""
    no_trailing = re.sub(r",\s*([\]}])", r"\1", candidate)
    for attempt in (candidate, no_trailing):
        try:
            return json.loads(attempt)
        except ValueError:
            pass
    try:
        return ast.literal_eval(no_trailing)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    try:
        return json.loads(no_trailing.replace("'", '"'))
    except ValueError:
        return None


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _four(v: Any) -> Optional[List[float]]:
    if isinstance(v, dict):
        v = [v.get(k) for k in ("x1", "y1", "x2", "y2")]
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        return None
    nums = [_number(x) for x in v]
    return None if any(n is None for n in nums) else nums  # type: ignore[return-value]


def _make(coords: List[float], label: Any) -> Box:
    if all(0.0 <= c <= 1.0 for c in coords) and any(c != int(c) for c in coords):
        coords = [c * NORM for c in coords]  # fractions of the image, not 0-1000
    return Box.make(*coords, label="" if label is None else str(label))


def _collect(value: Any, depth: int) -> List[Box]:
    """Boxes in a decoded value: a record, a bare 4-list, or (up to depth 3) containers of them."""
    if depth > 3:
        return []
    if isinstance(value, dict):
        label = next((value[k] for k in _LABEL_KEYS if k in value), None)
        for key in _BOX_KEYS:
            if key in value:
                coords = _four(value[key])
                if coords is None:
                    logger.warning("skipping record with malformed %r: %r", key, _snippet(str(value[key])))
                    return []
                return [_make(coords, label)]
        if _four(value) is not None:
            return [_make(_four(value), label)]  # type: ignore[arg-type]
        return [b for v in value.values() if isinstance(v, (list, dict)) for b in _collect(v, depth + 1)]
    if isinstance(value, (list, tuple)):
        coords = _four(value)
        if coords is not None:
            return [_make(coords, None)]
        return [b for v in value for b in _collect(v, depth + 1)]
    return []


def _pairs_fallback(body: str) -> List[Box]:
    """Qwen2-VL style ``label(x1,y1),(x2,y2)`` text (special tokens already stripped by the decoder)."""
    num = r"\s*(-?\d+(?:\.\d+)?)\s*"
    pattern = re.compile(r"([^()\n]{0,40}?)\(" + num + "," + num + r"\)\s*,?\s*\(" + num + "," + num + r"\)")
    out = []
    for m in pattern.finditer(body):
        label = m.group(1).strip(" :,-*\"'")
        out.append(_make([float(m.group(i)) for i in range(2, 6)], label))
    return out


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


__all__ = ["NORM", "Box", "boxes_to_mask", "parse_boxes"]
