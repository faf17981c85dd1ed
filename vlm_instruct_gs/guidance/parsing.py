"""VLM text to typed records: the Qwen3-VL grounding-answer parser, :func:`parse_boxes`.

Qwen3-VL answers grounding prompts with JSON such as ``[{"bbox_2d": [x1, y1, x2, y2], "label": "sky"}]``, normalised
to 0-1000 of the image (:mod:`~vlm_instruct_gs.guidance.boxes`). :func:`parse_boxes` turns such an answer, however
messy, into a list of :class:`~vlm_instruct_gs.guidance.boxes.Box`; it never raises on model output and logs a
warning when it had to give up. Pure Python.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
from typing import Any, List, Optional

from vlm_instruct_gs.guidance.boxes import NORM, Box

logger = logging.getLogger(__name__)

_BOX_KEYS = ("bbox_2d", "bbox", "box_2d", "box", "bbox2d", "bounding_box")
_LABEL_KEYS = ("label", "name", "category", "description", "object")
_SNIPPET = 160
_OPEN = re.compile(r"[\[{]")
_FLAT_OBJECT = re.compile(r"\{[^{}]*\}")


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


__all__ = ["parse_boxes"]
