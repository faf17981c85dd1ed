"""Weights-free guidance: the three phase box kinds computed from image evidence, in pure torch.

:class:`ImageEvidenceGuide` implements the same :class:`GuidanceSource` interface as the VLM backends (``boxes`` /
``masks``), so training code can swap one for the other. Each phase reduces a per-pixel score to a grid of
``grid x grid`` cells (area means), thresholds it, groups cells into 8-connected regions and returns region boxes,
snapped to cell edges, in normalised 0-1000 coordinates:

- ``detail`` (phase 1): RMS of the Laplacian (local high-frequency energy) of the render, compared with that of the
  ground truth: boxes where the GT is textured and the render has recovered part of that energy but not all
  (``detail_min_ratio <= render/gt <= detail_max_ratio``). Without a GT: cells with strong render energy.
- ``subject`` (phase 2): one box around the most salient region: colour distance of each cell from the median
  border colour (a background prior), or nearness when ``depth`` is given, times a soft centre prior, split by
  Otsu's threshold. Its complement is the background to densify (:func:`densify_mask`).
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
from torch import Tensor

from vlm_instruct_gs.guidance.parsing import Box, GuidanceSource, check_phase

_EPS = 1e-6


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


def to_float_image(image: Any) -> Float[Tensor, "H W 3"]:
    """``[H, W, 3]`` float32 CPU tensor in [0, 1] from integer (0-255) or float (0-1) tensors, arrays or PIL images.

    ``[H, W]`` and ``[H, W, 1]`` are repeated to 3 channels; a 4th (alpha) channel is dropped. Raises ValueError for
    other shapes.
    """
    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    t = t.detach().cpu()
    t = t.float() if t.is_floating_point() else t.float() / 255.0  # integer images are 0-255
    if t.ndim == 2:
        t = t[..., None]
    if t.ndim != 3 or t.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an image of shape [H, W, 3], got {tuple(t.shape)}")
    t = t[..., :3] if t.shape[-1] >= 3 else t.expand(*t.shape[:2], 3)
    return torch.nan_to_num(t).clamp(0.0, 1.0)


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


def _resize(image: Tensor, height: int, width: int) -> Tensor:  # [h, w, 3] -> [height, width, 3], bilinear
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
    return sums / coverage.clamp_min(_EPS), coverage


def otsu_threshold(values: Float[Tensor, "M"], bins: int = 64) -> float:
    """Otsu's threshold of a set of values (maximises the between-class variance of a ``bins`` histogram)."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < _EPS:
        return hi
    hist = torch.histc(values, bins=bins, min=lo, max=hi)
    centres = lo + (torch.arange(bins) + 0.5) * (hi - lo) / bins
    w0 = hist.cumsum(0)
    m0 = (hist * centres).cumsum(0)
    w1, m1 = w0[-1] - w0, m0[-1] - m0
    between = w0 * w1 * (m0 / w0.clamp_min(_EPS) - m1 / w1.clamp_min(_EPS)).square()
    k = int(between[:-1].argmax())
    return float(lo + (k + 1) * (hi - lo) / bins)  # upper edge of the last bin of the low class


def region_boxes(
    mask: Bool[Tensor, "G G"], score: Float[Tensor, "G G"], min_cells: int, max_boxes: int, label: str
) -> List[Box]:
    """Boxes of the 8-connected regions of a cell mask, largest score mass first.

    Args:
        mask: ``[G, G]`` selected cells.
        score: ``[G, G]`` per-cell score; a region's rank is the sum over its cells.
        min_cells (int): smaller regions are dropped.
        max_boxes (int): at most this many boxes.
        label (str): label of every box.

    Returns:
        list[Box]: normalised 0-1000 boxes snapped to cell edges.
    """
    gh, gw = mask.shape
    maskf = mask.float()
    labels = torch.arange(1, gh * gw + 1, dtype=torch.float32).view(gh, gw) * maskf
    for _ in range(gh * gw):  # propagate the max label inside each region until stable
        grown = F.max_pool2d(labels[None, None], 3, stride=1, padding=1)[0, 0] * maskf
        if torch.equal(grown, labels):
            break
        labels = grown
    flat = labels.flatten().long()
    fg = flat > 0
    if not bool(fg.any()):
        return []
    _, inv = torch.unique(flat[fg], return_inverse=True)
    n = int(inv.max()) + 1
    rows = torch.arange(gh).repeat_interleave(gw)[fg]
    cols = torch.arange(gw).repeat(gh)[fg]
    r0 = torch.full((n,), gh).scatter_reduce(0, inv, rows, "amin")
    r1 = torch.full((n,), -1).scatter_reduce(0, inv, rows, "amax")
    c0 = torch.full((n,), gw).scatter_reduce(0, inv, cols, "amin")
    c1 = torch.full((n,), -1).scatter_reduce(0, inv, cols, "amax")
    count = torch.bincount(inv, minlength=n)
    mass = torch.zeros(n).index_add_(0, inv, score.flatten()[fg].float())
    order = [i for i in torch.argsort(mass, descending=True).tolist() if int(count[i]) >= min_cells][:max_boxes]
    return [
        Box.make(
            1000.0 * int(c0[i]) / gw,
            1000.0 * int(r0[i]) / gh,
            1000.0 * (int(c1[i]) + 1) / gw,
            1000.0 * (int(r1[i]) + 1) / gh,
            label,
        )
        for i in order
    ]


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
            ref = _resize(ref, *img.shape[:2])
        e_g = cell_means(laplacian_energy(ref), cfg.grid)[0].sqrt()
        level = float(torch.quantile(e_g.flatten(), 0.95))
        if level < 1e-4:
            return []
        ratio = e_r / e_g.clamp_min(_EPS)
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
        saliency = ((far - d_cell) / max(far - near, _EPS)) * known
    centres = (torch.arange(g) + 0.5) / g
    dist2 = (centres[:, None] - 0.5).square() + (centres[None, :] - 0.5).square()
    prior = torch.exp(-dist2 / (2 * cfg.subject_centre_sigma**2))
    score = saliency * ((1 - cfg.subject_centre_weight) + cfg.subject_centre_weight * prior)
    if float(score.max() - score.min()) < 1e-3:
        return []
    mask = score > otsu_threshold(score.flatten())
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
            ref = _resize(ref, h, w)
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
    "cell_means",
    "detail_boxes",
    "laplacian_energy",
    "otsu_threshold",
    "region_boxes",
    "subject_box",
    "to_float_image",
    "to_float_map",
]
