"""PSNR inside and outside given image regions: how much better a guided run reconstructs the part of the scene its
guidance targeted (the steering issue's masked test PSNR), for :mod:`compare_methods` and :mod:`bench_report`.

Regions come from a boxes file in ``--pipeline.guidance.boxes-file`` format
(:mod:`vlm_instruct_gs.guidance.boxes_file`), keyed by the eval images' file names: for each phase, the pixels that
phase would densify (``detail`` boxes, the background for ``subject``, under-reconstructed ``artifacts`` boxes).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

if TYPE_CHECKING:
    import torch

from bench_report import fmt_ms

REGION_PHASES = ("detail", "subject", "artifacts")
"""Guidance phases a region can belong to (``GuidanceSchedule``'s phase names)."""


def region_psnr(sq_err_inside: float, n_inside: int, sq_err_outside: float, n_outside: int) -> Dict[str, float]:
    """PSNR (dB, data range 1) of the pixels inside and outside a region, from squared errors summed over pixels and
    RGB channels and the pixel counts, pooled over the eval images; ``inside_frac`` is the region's share of the
    pixels. A side with no pixels gets NaN."""
    def psnr(sq: float, n: int) -> float:
        return float("nan") if n == 0 else -10.0 * math.log10(max(sq / (3 * n), 1e-12))

    total = n_inside + n_outside
    return {"inside": psnr(sq_err_inside, n_inside), "outside": psnr(sq_err_outside, n_outside),
            "inside_frac": n_inside / total if total else float("nan")}


class RegionErrors:
    """Squared errors inside and outside each phase's region, summed over the eval images one by one.

    Args:
        regions: ``region(phase, image_name, height, width) -> [H, W] bool mask or None`` (:func:`load_regions`).
    """

    def __init__(self, regions: Callable) -> None:
        self.regions = regions
        self.sums = {phase: [0.0, 0, 0.0, 0] for phase in REGION_PHASES}  # squared error, pixels; inside, outside
        self.inside: Dict[str, "torch.Tensor"] = {}  # phase -> [N] bool, Gaussians mostly inside in some view

    def add_gaussians(self, image_name: str, view) -> None:
        """Mark the Gaussians whose footprint in ``view`` (a :class:`splat_core.rendering.views.RenderedView` of the
        eval image, at its own resolution) lies at least half inside each phase's region
        (:func:`vlm_instruct_gs.guidance.gaussian_masks.footprint_fractions`)."""
        from vlm_instruct_gs.guidance.gaussian_masks import footprint_fractions

        height, width = view.rgb.shape[:2]
        for phase in REGION_PHASES:
            mask = self.regions(phase, image_name, height, width)
            if mask is None:
                continue
            fractions, visible = footprint_fractions(view.means2d, view.radii, mask[None])
            hit = (visible & (fractions >= 0.5))[0]
            self.inside[phase] = hit | self.inside[phase] if phase in self.inside else hit

    def add(self, image_name: str, pred, gt) -> None:
        """One eval image: ``pred`` and ``gt`` are [H, W, 3] float RGB in [0, 1] on one device; images without a
        region for a phase add nothing to it."""
        height, width = gt.shape[:2]
        sq = None
        for phase, acc in self.sums.items():
            mask = self.regions(phase, image_name, height, width)
            if mask is None:
                continue
            mask = mask.to(gt.device)
            sq = ((pred - gt) ** 2).sum(-1) if sq is None else sq
            inside = int(mask.sum())
            acc[0] += float(sq[mask].sum())
            acc[1] += inside
            acc[2] += float(sq[~mask].sum())
            acc[3] += height * width - inside

    def psnr(self) -> Dict[str, Dict[str, float]]:
        """:func:`region_psnr` of each phase that some image had a region for, with ``gaussians_inside`` (the
        Gaussians :meth:`add_gaussians` marked in any eval view) where views were added."""
        out = {phase: region_psnr(*acc) for phase, acc in self.sums.items() if acc[1] + acc[3] > 0}
        for phase, hit in self.inside.items():
            out[phase]["gaussians_inside"] = int(hit.sum())
        return out


def load_regions(path: Optional[str]) -> Optional[Callable]:
    """``region(phase, image_name, height, width) -> [H, W] bool mask or None`` from a boxes file
    (``--pipeline.guidance.boxes-file`` format, :mod:`vlm_instruct_gs.guidance.boxes_file`): the pixels each phase
    would densify, read for the eval images by file name. None without a path."""
    if not path:
        return None
    from vlm_instruct_gs.guidance.boxes_file import BoxesFileSource

    source = BoxesFileSource(Path(path))
    return lambda phase, name, height, width: source.regions(phase, name, height, width).densify


def region_table(results: List[Dict]) -> List[str]:
    """Markdown rows: per method and phase with a region, test PSNR inside and outside the region at the phase's
    end (the last eval point at or before ``phase_ends[phase]``; the final eval for ``artifacts`` when no eval point
    falls in it), mean ± std over seeds. Empty when no run has ``region_psnr`` points."""
    rows = [r for r in results if any("region_psnr" in p for p in r.get("eval_curve", []))]
    if not rows:
        return []
    out = ["| method | phase | eval step | PSNR inside (dB) | PSNR outside (dB) | region share | Gaussians inside |",
           "|---|---|---|---|---|---|---|"]
    methods: Dict[str, List[Dict]] = {}
    for r in rows:
        methods.setdefault(r["method"], []).append(r)
    for method, runs in methods.items():
        for phase in REGION_PHASES:
            picked = []
            for r in runs:
                points = [p for p in r["eval_curve"] if phase in p.get("region_psnr", {})
                          and p["step"] <= r["phase_ends"].get(phase, math.inf)]
                if points:
                    picked.append(points[-1])
            if not picked:
                continue
            cells = [fmt_ms([p["region_psnr"][phase][k] for p in picked], fmt) for k, fmt in
                     (("inside", ".2f"), ("outside", ".2f"), ("inside_frac", ".2f"))]
            cells.append(fmt_ms([p["region_psnr"][phase].get("gaussians_inside") for p in picked], ",.0f"))
            steps = sorted({p["step"] for p in picked})
            out.append(f"| {method} | {phase} | {', '.join(f'{s:,}' for s in steps)} | " + " | ".join(cells) + " |")
    return out
