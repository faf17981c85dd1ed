"""Weights-free guidance: the three phase box kinds computed from image evidence (torch and scikit-image).

:class:`ImageEvidenceGuide` implements the same :class:`~vlm_instruct_gs.guidance.sources.GuidanceSource` interface
as the VLM backends, so training code can swap one for the other. Each phase reduces a per-pixel score
(:mod:`~vlm_instruct_gs.guidance.evidence_maps`) to a grid of ``grid x grid`` cells (area means), thresholds it,
groups cells into 8-connected regions and returns region boxes, snapped to cell edges, in normalised 0-1000
coordinates:

- ``detail`` (phase 1): RMS of the Laplacian (local high-frequency energy) of the render, compared with that of the
  ground truth: boxes where the GT is textured and the render has recovered part of that energy but not all
  (``detail_min_ratio <= render/gt <= detail_max_ratio``). Without a GT: cells with strong render energy.
- ``subject`` (phase 2): one box around the most salient region: colour distance of each cell from the median
  border colour (a background prior), or nearness when ``depth`` is given, times a soft centre prior, split by
  Otsu's threshold (``skimage.filters.threshold_otsu``, 64 bins). Its complement is the background to densify
  (:func:`~vlm_instruct_gs.guidance.mask_rule.region_masks`).
- ``artifacts`` (phase 3): photometric inconsistency between a novel-view render and a training image warped to
  (or nearest to) that view, or a given error map: cells whose mean absolute error exceeds
  ``max(artifact_min_error, median + artifact_mad_k * 1.4826 * MAD)``.

Images are ``[H, W, 3]`` (or ``[H, W]``) tensors/arrays, uint8 0-255 or float 0-1, or PIL images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Type

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.configs.base_config import InstantiateConfig
from skimage import measure
from skimage.filters import threshold_otsu
from torch import Tensor

from splat_core.images import to_float_image
from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.evidence_maps import EPS, cell_means, laplacian_energy, resize_image, to_float_map
from vlm_instruct_gs.guidance.phases import check_phase
from vlm_instruct_gs.guidance.sources import GuidanceSource


@dataclass
class ImageEvidenceGuideConfig(InstantiateConfig):
    """Config of :class:`ImageEvidenceGuide`."""

    _target: Type = field(default_factory=lambda: ImageEvidenceGuide)
    grid: int = 32
    """Cells per image side; boxes snap to cell edges (1000 / grid normalised units)."""
    max_boxes: int = 4
    """Most boxes returned per image (largest score mass first) for detail and artifacts."""
    min_cells: int = 2
    """Smallest region kept, in cells."""
    detail_texture_frac: float = 0.1
    """A cell is textured when its GT energy is at least this fraction of the 95th-percentile GT cell energy."""
    detail_min_ratio: float = 0.15
    """Render/GT energy ratio from which a textured cell counts as showing emerging detail."""
    detail_max_ratio: float = 0.85
    """Render/GT energy ratio above which the detail counts as already resolved (not boxed)."""
    detail_render_frac: float = 0.25
    """Without GT: cells with render energy above this fraction of the 95th-percentile cell energy."""
    subject_centre_weight: float = 0.5
    """Weight in [0, 1] of the centre prior: saliency *= (1 - w) + w * prior."""
    subject_centre_sigma: float = 0.35
    """Standard deviation of the Gaussian centre prior, as a fraction of the image size."""
    artifact_min_error: float = 0.08
    """Floor of the error threshold, mean absolute error on a 0-1 intensity scale."""
    artifact_mad_k: float = 3.0
    """Robust threshold: median + k * 1.4826 * MAD of the cell errors."""


def region_boxes(
    mask: Bool[Tensor, "G G"], score: Float[Tensor, "G G"], min_cells: int, max_boxes: int, label: str
) -> List[Box]:
    """Boxes of the 8-connected regions of a cell mask (``skimage.measure.label``), largest score mass first.

    Args:
        mask: ``[G, G]`` selected cells.
        score: ``[G, G]`` per-cell score; a region's rank is the sum over its cells (ties keep scikit-image's label
            order, the raster order of each region's first cell).
        min_cells (int): smaller regions are dropped.
        max_boxes (int): at most this many boxes.
        label (str): label of every box.

    Returns:
        list[Box]: normalised 0-1000 boxes snapped to cell edges.
    """
    gh, gw = mask.shape
    regions = measure.regionprops(measure.label(mask.cpu().numpy(), connectivity=2))
    score_np = score.detach().cpu().double().numpy()
    mass = np.array([score_np[r.coords[:, 0], r.coords[:, 1]].sum() for r in regions])  # a few regions, not Gaussians
    order = [i for i in np.argsort(-mass, kind="stable") if regions[i].area >= min_cells][:max_boxes]
    out = []
    for i in order:
        r0, c0, r1, c1 = regions[i].bbox  # half-open cell ranges
        out.append(Box.make(1000.0 * c0 / gw, 1000.0 * r0 / gh, 1000.0 * c1 / gw, 1000.0 * r1 / gh, label))
    return out


def detail_boxes(render: Any, reference: Any = None, config: Optional[ImageEvidenceGuideConfig] = None) -> List[Box]:
    """Phase 1: regions where the render's texture detail is emerging.

    Args:
        render: ``[H, W, 3]`` render.
        reference: ``[H, W, 3]`` ground-truth image of the same view, or None (render-only mode). Resized to the
            render if sizes differ.
        config: thresholds; Default is ``ImageEvidenceGuideConfig()``.

    Returns:
        list[Box]: up to ``max_boxes`` boxes labelled ``"emerging detail"``; empty for a flat image.
    """
    cfg = config or ImageEvidenceGuideConfig()
    img = to_float_image(render)
    e_r, _ = cell_means(laplacian_energy(img), cfg.grid)
    e_r = e_r.sqrt()  # RMS Laplacian: linear in contrast
    if reference is None:
        level = float(torch.quantile(e_r.flatten(), 0.95))
        if level < 1e-4:
            return []
        mask = e_r >= cfg.detail_render_frac * level
    else:
        ref = to_float_image(reference)
        if ref.shape != img.shape:
            ref = resize_image(ref, *img.shape[:2])
        e_g = cell_means(laplacian_energy(ref), cfg.grid)[0].sqrt()
        level = float(torch.quantile(e_g.flatten(), 0.95))
        if level < 1e-4:
            return []
        ratio = e_r / e_g.clamp_min(EPS)
        textured = e_g >= cfg.detail_texture_frac * level
        mask = textured & (ratio >= cfg.detail_min_ratio) & (ratio <= cfg.detail_max_ratio)
    return region_boxes(mask, e_r, cfg.min_cells, cfg.max_boxes, "emerging detail")


def subject_box(image: Any, depth: Any = None, config: Optional[ImageEvidenceGuideConfig] = None) -> List[Box]:
    """Phase 2: one box around the main subject (or none for a featureless image).

    Args:
        image: ``[H, W, 3]`` image or render.
        depth: optional ``[H, W]`` depth (larger = farther; non-finite = missing). When given, saliency is the
            normalised nearness instead of colour contrast.
        config: Default is ``ImageEvidenceGuideConfig()``.

    Returns:
        list[Box]: zero or one box labelled ``"subject"``.
    """
    cfg = config or ImageEvidenceGuideConfig()
    img = to_float_image(image)
    g = cfg.grid
    colour = F.adaptive_avg_pool2d(img.permute(2, 0, 1)[None], g)[0].permute(1, 2, 0)  # [G, G, 3]
    if depth is None:
        border = torch.cat([colour[0], colour[-1], colour[1:-1, 0], colour[1:-1, -1]])  # [4G - 4, 3]
        saliency = (colour - border.median(0).values).norm(dim=-1)
    else:
        d_map = to_float_map(depth, *img.shape[:2])  # non-finite -> 0 -> missing
        d_cell, cov = cell_means(d_map, g, d_map > 0)
        known = cov > 0
        if not bool(known.any()):
            return []
        far, near = float(d_cell[known].max()), float(d_cell[known].min())
        saliency = ((far - d_cell) / max(far - near, EPS)) * known
    centres = (torch.arange(g) + 0.5) / g
    dist2 = (centres[:, None] - 0.5).square() + (centres[None, :] - 0.5).square()
    prior = torch.exp(-dist2 / (2 * cfg.subject_centre_sigma**2))
    score = saliency * ((1 - cfg.subject_centre_weight) + cfg.subject_centre_weight * prior)
    if float(score.max() - score.min()) < 1e-3:
        return []
    mask = score > float(threshold_otsu(score.flatten().numpy(), nbins=64))
    return region_boxes(mask, score, 1, 1, "subject")


def artifact_boxes(
    render: Any,
    reference: Any = None,
    error_map: Any = None,
    valid: Any = None,
    config: Optional[ImageEvidenceGuideConfig] = None,
) -> List[Box]:
    """Phase 3: regions of a novel-view render that disagree photometrically with nearby training evidence.

    Args:
        render: ``[H, W, 3]`` render from the unseen viewpoint.
        reference: ``[H, W, 3]`` training image warped into that view (or the nearest training view); resized to
            the render if sizes differ.
        error_map: ``[H, W]`` (or ``[H, W, C]``, averaged) error on a 0-1 scale; used instead of ``reference``.
        valid: ``[H, W]`` bool, False where the warped reference has no data (holes, out of frame).
        config: Default is ``ImageEvidenceGuideConfig()``.

    Returns:
        list[Box]: up to ``max_boxes`` boxes labelled ``"photometric inconsistency"``, worst first.

    Raises:
        ValueError: neither ``reference`` nor ``error_map`` is given.
    """
    cfg = config or ImageEvidenceGuideConfig()
    img = to_float_image(render)
    h, w = img.shape[:2]
    if error_map is not None:
        err = to_float_map(error_map, h, w)
    elif reference is not None:
        ref = to_float_image(reference)
        if ref.shape != img.shape:
            ref = resize_image(ref, h, w)
        err = (img - ref).abs().mean(-1)
    else:
        raise ValueError("phase 'artifacts' needs reference= (a training view warped to the render) or error_map=")
    valid_t = None if valid is None else to_float_map(torch.as_tensor(valid).float(), h, w) > 0.5
    cells, coverage = cell_means(err, cfg.grid, valid_t)
    known = coverage > 0.5
    if not bool(known.any()):
        return []
    vals = cells[known]
    med = vals.median()
    mad = (vals - med).abs().median()
    threshold = max(cfg.artifact_min_error, float(med + cfg.artifact_mad_k * 1.4826 * mad))
    return region_boxes((cells >= threshold) & known, cells, cfg.min_cells, cfg.max_boxes, "photometric inconsistency")


def _nth(values: Optional[Sequence[Any]], i: int) -> Any:
    return None if values is None else values[i]


class ImageEvidenceGuide(GuidanceSource):
    """Guidance source computing phase boxes from image statistics (no weights, CPU friendly).

    Args:
        config (ImageEvidenceGuideConfig | None): thresholds; None uses the defaults.
        **overrides: config fields replaced on a copy, e.g. ``ImageEvidenceGuide(grid=16)``.
    """

    def __init__(self, config: Optional[ImageEvidenceGuideConfig] = None, **overrides: Any) -> None:
        config = config if config is not None else ImageEvidenceGuideConfig()
        self.config = dataclasses.replace(config, **overrides) if overrides else config

    def boxes(
        self,
        phase: str,
        images: Sequence[Any],
        reference: Optional[Sequence[Any]] = None,
        error_map: Optional[Sequence[Any]] = None,
        depth: Optional[Sequence[Any]] = None,
        valid: Optional[Sequence[Any]] = None,
        **unused: Any,
    ) -> List[List[Box]]:
        """One list of normalised 0-1000 boxes per image.

        Args:
            phase (str): ``detail`` (uses ``reference`` = GT if given), ``subject`` (uses ``depth`` if given) or
                ``artifacts`` (needs ``reference`` = warped/nearest training view, or ``error_map``; ``valid``).
            images: renders, ``[H, W, 3]`` each.
            reference, error_map, depth, valid: None or one entry (possibly None) per image, shapes as in
                :func:`detail_boxes`, :func:`subject_box`, :func:`artifact_boxes`.

        Raises:
            ValueError: unknown phase, or ``artifacts`` without reference/error map for an image.
        """
        check_phase(phase)
        out = []
        for i, image in enumerate(images):
            if phase == "detail":
                out.append(detail_boxes(image, _nth(reference, i), self.config))
            elif phase == "subject":
                out.append(subject_box(image, _nth(depth, i), self.config))
            else:
                out.append(artifact_boxes(image, _nth(reference, i), _nth(error_map, i), _nth(valid, i), self.config))
        return out


__all__ = [
    "ImageEvidenceGuide",
    "ImageEvidenceGuideConfig",
    "artifact_boxes",
    "detail_boxes",
    "region_boxes",
    "subject_box",
]
