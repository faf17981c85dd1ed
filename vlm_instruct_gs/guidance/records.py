"""What every guidance call leaves behind: the image, prompt, raw answer, parsed boxes and masks, on disk; and of
every applied answer, its record, its console / viewer verdict and its TensorBoard overlay.

Per query view (``<out_dir>`` is ``<run base dir>/guidance``):

- ``step_SSSSS_<phase>_view_VV.png``: the image the source saw (uint8 RGB).
- ``step_SSSSS_<phase>_view_VV_mask.png``: the densify region (255 = densify) at the image's size; for
  ``artifacts`` also ``..._floaters.png``, the region searched for floaters.
- ``step_SSSSS_<phase>_view_VV.json``: phase, step, view id, camera (camera-to-world, OpenGL; intrinsics in pixels),
  source, prompt, raw answer, boxes (normalised 0-1000 and as pixel ranges ``[c0, r0, c1, r1)``), error, seconds.

And one line per application in ``applied.jsonl`` (training step, query step, phase, boxes, how many Gaussians got
densify / prune guidance, how many were spawned), summed up by :func:`verdict` (console, viewer) and
:func:`short_verdict` (the short viewer field). Writing failures are logged, never raised.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch
from jaxtyping import Bool, Float, UInt8
from nerfstudio.utils import writer
from PIL import Image
from torch import Tensor

from splat_core.images import to_float_image
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions
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


def write_records(result: GuidanceResult, out_dir: Path, source: str) -> None:
    """Write the PNG/JSON records of one answered query.

    Args:
        result: the answered query, with its per-view ``regions`` at the image's size.
        out_dir: destination folder (created).
        source (str): guidance source name for the JSON (``vlm``, ``image-evidence``).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        job = result.job
        for j, (view, boxes, answer, (densify, floaters)) in enumerate(
            zip(job.views, result.boxes, result.answers, result.regions)
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


def applied_record(
    step: int, result: GuidanceResult, densify: Optional[Tensor], prune: Optional[Tensor], prune_thresh: float,
    spawned: int = 0,
) -> Dict[str, Any]:
    """The ``applied.jsonl`` record of one result applied at training ``step``.

    Args:
        step: the training step of the application.
        result: the applied result.
        densify: its per-Gaussian densify guidance, or None. [N]
        prune: its per-Gaussian prune guidance, or None. [N]
        prune_thresh: prune values above this mark a Gaussian (``FastGSStrategy.guidance_prune_thresh``).
        spawned: new Gaussians its regions added (phases 2 and 3).

    Returns:
        JSON-ready dict: steps, phase, view ids, boxes (Qwen3-VL records), error, Gaussians given densify guidance
        (> 0) and marked for pruning, new Gaussians spawned, the mean positive densify value, the source's seconds.
    """
    job = result.job
    n_densify = int((densify > 0).sum()) if densify is not None else 0
    n_prune = int((prune > prune_thresh).sum()) if prune is not None else 0
    return {
        "step": step, "query_step": job.step, "phase": job.phase, "views": [v.view_id for v in job.views],
        "boxes": [[b.to_json() for b in boxes] for boxes in result.boxes], "error": result.error,
        "densify_gaussians": n_densify, "prune_gaussians": n_prune, "spawned_gaussians": int(spawned),
        "seconds": round(result.seconds, 4),
        "mean_densify": round(float(densify[densify > 0].mean()), 4) if n_densify else 0.0,
    }


def verdict(record: Dict[str, Any]) -> str:
    """One console line of an :func:`applied_record`, e.g. ``detail@500: 3 box(es) in 4 view(s); densify 120 GSs,
    prune 0 GSs``."""
    boxes = sum(len(b) for b in record["boxes"])
    return (
        f"{record['phase']}@{record['query_step']}: {boxes} box(es) in {len(record['views'])} view(s)"
        + (f", error {record['error']}" if record["error"] else "")
        + f"; densify {record['densify_gaussians']} GSs, prune {record['prune_gaussians']} GSs"
        + (f", spawn {record['spawned_gaussians']} GSs" if record.get("spawned_gaussians") else "")
    )


def short_verdict(record: Dict[str, Any]) -> str:
    """The viewer's form of :func:`verdict`, at most 27 characters (query steps below 100,000) so a viewer text
    field shows all of it:
    ``artifacts@12000 +1.2k -56`` (phase@query step, Gaussians given densify guidance, marked for pruning) or
    ``subject@9000 failed``."""
    head = f"{record['phase']}@{record['query_step']}"
    if record["error"]:
        return f"{head} failed"
    return f"{head} +{_count(record['densify_gaussians'])} -{_count(record['prune_gaussians'])}"


def _count(n: int) -> str:  # at most 4 characters: 999, 1.2k, 999k, 1.2M
    if n < 1000:
        return str(n)
    if n < 10_000:
        return f"{n / 1000:.1f}k"
    if n < 1_000_000:
        return f"{n // 1000}k"
    return f"{n / 1e6:.1f}M"


OVERLAY_HEIGHT = 240
"""Height in pixels of the overlay strip :func:`log_overlays` writes (larger strips are shrunk to it). TensorBoard
encodes each image as PNG on the training thread when nerfstudio's writer flushes: four 953x535 views took 0.28 s
a query on a 2-core CPU, 0.09 s at this height."""


def log_overlays(result: GuidanceResult, regions: Sequence[PhaseRegions], step: int) -> None:
    """Put the query's images with their regions tinted (:func:`overlay`) side by side in TensorBoard as
    ``guidance/<phase>`` at ``step``, at most :data:`OVERLAY_HEIGHT` pixels tall (area-averaged), skipped when the
    views differ in size."""
    tiles = [overlay(v.image, *r) for v, r in zip(result.job.views, regions)]
    if tiles and all(t.shape == tiles[0].shape for t in tiles):
        writer.put_image(name=f"guidance/{result.job.phase}", image=shrink_to_height(torch.cat(tiles, dim=1)),
                         step=step)


def shrink_to_height(image: Float[Tensor, "H W 3"], height: int = OVERLAY_HEIGHT) -> Float[Tensor, "h w 3"]:
    """``image`` area-averaged to ``height`` pixels with its aspect ratio kept (width rounded down, at least 1);
    unchanged when it is no taller."""
    if image.shape[0] <= height:
        return image
    width = max(1, image.shape[1] * height // image.shape[0])
    chw = image.permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(chw, size=(height, width), mode="area")[0].permute(1, 2, 0)


def overlay(
    image: UInt8[Tensor, "H W 3"],
    densify: Optional[Bool[Tensor, "H W"]] = None,
    floaters: Optional[Bool[Tensor, "H W"]] = None,
) -> Float[Tensor, "H W 3"]:
    """The image in [0, 1] with the densify region tinted green and the floater region tinted red (for TensorBoard)."""
    out = to_float_image(image)
    for mask, colour in ((densify, (0.0, 1.0, 0.0)), (floaters, (1.0, 0.0, 0.0))):
        if mask is not None:
            tint = torch.tensor(colour)
            out = torch.where(mask[..., None], 0.6 * out + 0.4 * tint, out)
    return out


__all__ = [
    "OVERLAY_HEIGHT", "append_applied", "applied_record", "log_overlays", "overlay", "record_stem", "short_verdict",
    "shrink_to_height", "verdict", "write_records",
]
