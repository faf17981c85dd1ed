"""What every guidance call leaves behind: the image, prompt, raw answer, parsed boxes and masks, on disk.

Per query view (``<out_dir>`` is ``<run base dir>/guidance``):

- ``step_SSSSS_<phase>_view_VV.png``: the image the source saw (uint8 RGB).
- ``step_SSSSS_<phase>_view_VV_mask.png``: the densify region (255 = densify) at the image's size; for
  ``artifacts`` also ``..._floaters.png``, the region searched for floaters.
- ``step_SSSSS_<phase>_view_VV.json``: phase, step, view id, camera (camera-to-world, OpenGL; intrinsics in pixels),
  source, prompt, raw answer, boxes (normalised 0-1000 and as pixel ranges ``[c0, r0, c1, r1)``), error, seconds.

And one line per application in ``applied.jsonl`` (training step, query step, phase, boxes, how many Gaussians got
densify / prune guidance). Writing failures are logged, never raised.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from PIL import Image
from torch import Tensor

from vlm_instruct_gs.guidance.worker import GuidanceResult

logger = logging.getLogger(__name__)


def record_stem(step: int, phase: str, view: int) -> str:
    """File stem of one query view, e.g. ``step_01000_detail_view_02``."""
    return f"step_{step:05d}_{phase}_view_{view:02d}"


def _camera_json(camera) -> Dict[str, Any]:
    return {
        "camera_to_world": camera.camera_to_worlds[0].tolist(),
        "fx": float(camera.fx[0]),
        "fy": float(camera.fy[0]),
        "cx": float(camera.cx[0]),
        "cy": float(camera.cy[0]),
        "width": int(camera.width[0]),
        "height": int(camera.height[0]),
    }


def _save_mask(mask: Optional[Tensor], path: Path) -> Optional[str]:
    if mask is None:
        return None
    Image.fromarray(mask.cpu().numpy().astype(np.uint8) * 255).save(path)
    return path.name


def write_records(
    result: GuidanceResult,
    out_dir: Path,
    source: str,
    masks: Sequence[tuple],
) -> None:
    """Write the PNG/JSON records of one answered query.

    Args:
        result: the answered query.
        out_dir: destination folder (created).
        source (str): guidance source name for the JSON (``vlm``, ``image-evidence``).
        masks: per view ``(densify [H, W] bool or None, floater region [H, W] bool or None)`` at the image's size.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        job = result.job
        for j, (view, boxes, answer, (densify, floaters)) in enumerate(
            zip(job.views, result.boxes, result.answers, masks)
        ):
            stem = record_stem(job.step, job.phase, j)
            Image.fromarray(view.image.numpy()).save(out_dir / f"{stem}.png")
            h, w = view.image.shape[:2]
            record = {
                "phase": job.phase,
                "step": job.step,
                "view": j,
                "view_id": view.view_id,
                "source": source,
                "camera": _camera_json(view.camera),
                "image": f"{stem}.png",
                "prompt": result.prompt,
                "answer": answer,
                "boxes": [dict(b.to_json(), pixels=list(b.to_pixels(h, w))) for b in boxes],
                "mask": _save_mask(densify, out_dir / f"{stem}_mask.png"),
                "floater_region": _save_mask(floaters, out_dir / f"{stem}_floaters.png"),
                "error": result.error,
                "seconds": round(result.seconds, 4),
            }
            (out_dir / f"{stem}.json").write_text(json.dumps(record, indent=1))
    except OSError as err:
        logger.warning("guidance: could not write records to %s: %s", out_dir, err)


def append_applied(out_dir: Optional[Path], record: Dict[str, Any]) -> None:
    """Append one JSON line to ``<out_dir>/applied.jsonl`` (no-op when ``out_dir`` is None)."""
    if out_dir is None:
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "applied.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as err:
        logger.warning("guidance: could not append to %s: %s", out_dir / "applied.jsonl", err)


def overlay(
    image: UInt8[Tensor, "H W 3"],
    densify: Optional[Bool[Tensor, "H W"]] = None,
    floaters: Optional[Bool[Tensor, "H W"]] = None,
) -> Float[Tensor, "H W 3"]:
    """The image in [0, 1] with the densify region tinted green and the floater region tinted red (for TensorBoard)."""
    out = image.float() / 255.0
    for mask, colour in ((densify, (0.0, 1.0, 0.0)), (floaters, (1.0, 0.0, 0.0))):
        if mask is not None:
            tint = torch.tensor(colour)
            out = torch.where(mask[..., None], 0.6 * out + 0.4 * tint, out)
    return out


__all__ = ["append_applied", "overlay", "record_stem", "write_records"]
