"""LERF-OVS evaluation: label parsing, localization accuracy and mIoU (LangSplat's protocol), feature fidelity.

Protocol source: LangSplat (minghanqin/LangSplat, ``eval/evaluate_iou_loc.py`` and ``eval/utils.py``), run with
``--mask_thresh 0.4`` (``eval/eval.sh``). For one frame and one labelled category with relevancy map ``R`` [H, W]:

- **Localization** (``lerf_localization``): ``S = mean_filter(R, 30)`` (``cv2.filter2D`` with a 30 x 30 box, anchor at
  the centre, reflect-101 borders). The prediction is every pixel where ``S == max S`` (up to 1e-6). The category
  counts as a hit if one of those pixels lies inside (bounds included) one of the category's GT boxes
  ``(x1, y1, x2, y2)``. Accuracy is hits divided by the number of (frame, category) pairs.
- **IoU** (``activate_stream``): ``V = 0.5 * (mean_filter(R, 30) + R)``, ``n = (V - min V) / (max(V - min V) + 1e-9)``,
  ``O = clip(2 n - 1, 0, 1)`` and ``mask = O > 0.4`` (so ``n > 0.7``). The mask is then smoothed by a 7 x 7 majority
  vote (``smooth``, its window clipped to ``[i - 3, min(i + 4, H - 1))``, ties to 0) and compared with the union of the
  category's polygons, filled with ``cv2.fillPoly`` (LangSplat's ``polygon_to_mask``). mIoU is the mean over (frame,
  category) pairs.

``R`` is scored at the label image's resolution, as LangSplat renders its feature maps at the image resolution: the
fmgs model renders the CLIP features for it at the label size (:meth:`fmgs_field.fmgs_model.FMGSModel.relevancy_at`),
not at its half-resolution feature size. LangSplat takes the maximum over its three feature levels; FMGS renders one
CLIP map, so there is one level here.
Frame ``frame_00012.json`` has index 11 (LangSplat: the number in ``info.name`` minus 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from fmgs_field.teachers.base import resize_feature_map

SMOOTH_KERNEL = 30
"""Box-filter size used on relevancy maps (LangSplat ``scale = 30``)."""
MASK_THRESHOLD = 0.4
"""Threshold on the rescaled relevancy (LangSplat ``--mask_thresh 0.4``)."""
MAJORITY_RADIUS = 3
"""Half-size of the majority-vote window of LangSplat's ``smooth``."""


@dataclass
class FrameLabels:
    """Ground truth of one LERF-OVS frame.

    Args:
        name (str): Image name, e.g. ``frame_00012.jpg``.
        index (int): Zero-based frame index.
        height (int): Image height in pixels.
        width (int): Image width in pixels.
        masks (Dict[str, Tensor]): Union mask of each category. Each [H, W] bool.
        boxes (Dict[str, Tensor]): Boxes ``(x1, y1, x2, y2)`` of each category. Each [K, 4]
    """

    name: str
    index: int
    height: int
    width: int
    masks: Dict[str, Tensor] = field(default_factory=dict)
    boxes: Dict[str, Tensor] = field(default_factory=dict)


def polygon_to_mask(points: Sequence[Sequence[float]], height: int, width: int) -> Bool[Tensor, "H W"]:
    """Rasterises a polygon as LangSplat's ``polygon_to_mask`` does: ``cv2.fillPoly`` on the vertices cast to
    ``int32`` (truncated), boundary included.

    Args:
        points: Vertices ``[[x, y], ...]`` in pixels.
        height: Mask height.
        width: Mask width.

    Returns:
        Mask. [H, W]
    """
    canvas = np.zeros((height, width), np.uint8)
    if len(points):
        cv2.fillPoly(canvas, [np.asarray(points, dtype=np.int32).reshape(-1, 2)], 1)
    return torch.from_numpy(canvas.astype(bool))


def load_frame_labels(path: Union[str, Path]) -> FrameLabels:
    """Parses one LERF-OVS label file (``info`` with name/height/width, ``objects`` with category/segmentation/bbox).

    Objects of one category are merged: masks by union, boxes stacked. A missing ``bbox`` is the polygon's extent.

    Args:
        path: ``frame_xxxxx.json``.

    Returns:
        The frame's labels.
    """
    data = json.loads(Path(path).read_text())
    info = data["info"]
    height, width, name = int(info["height"]), int(info["width"]), str(info["name"])
    labels = FrameLabels(name=name, index=int(Path(name).stem.split("_")[-1]) - 1, height=height, width=width)
    for obj in data.get("objects", []):
        category, polygon = obj["category"], obj["segmentation"]
        mask = polygon_to_mask(polygon, height, width)
        if "bbox" in obj:
            box = torch.tensor(obj["bbox"], dtype=torch.float32).reshape(-1, 4)
        else:
            pts = torch.tensor(polygon, dtype=torch.float32).reshape(-1, 2)
            box = torch.cat([pts.min(0).values, pts.max(0).values])[None]
        if category in labels.masks:
            mask = labels.masks[category] | mask
            box = torch.cat([labels.boxes[category], box])
        labels.masks[category], labels.boxes[category] = mask, box
    return labels


def load_lerf_ovs_labels(folder: Union[str, Path]) -> Dict[int, FrameLabels]:
    """All ``frame_*.json`` files of one LERF-OVS scene folder (e.g. ``lerf_ovs/label/teatime``), by frame index."""
    frames = [load_frame_labels(p) for p in sorted(Path(folder).glob("frame_*.json"))]
    return {f.index: f for f in frames}


def mean_filter(values: Float[Tensor, "H W"], kernel: int = SMOOTH_KERNEL) -> Float[Tensor, "H W"]:
    """LangSplat's box mean, ``cv2.filter2D(values, -1, ones((k, k)) / k**2)``: anchor ``k // 2``, reflect-101 borders,
    computed on the CPU in the input's precision (float32 unless it is float64).

    Args:
        values: A map. [H, W]
        kernel: Box size ``k`` (30).

    Returns:
        Filtered map, on ``values``' device and in its dtype. [H, W]
    """
    array = values.detach().cpu().numpy()
    if array.dtype != np.float64:
        array = array.astype(np.float32)
    filtered = cv2.filter2D(array, -1, np.full((kernel, kernel), 1.0 / kernel**2, array.dtype))
    return torch.from_numpy(filtered).to(values.device, values.dtype)


def majority_smooth(mask: Bool[Tensor, "H W"], radius: int = MAJORITY_RADIUS) -> Bool[Tensor, "H W"]:
    """LangSplat's ``smooth``: each pixel takes the majority of ``mask[max(0, i-r):min(i+r+1, H-1), ...]``.

    The window's upper bound is clipped to ``H - 1`` (``W - 1``), so the last row/column never votes; ties give 0
    (``np.argmax(np.bincount(...))``). Computed with two ``cv2.boxFilter`` window sums (votes and voters, zero
    outside the image and on the last row/column) instead of LangSplat's per-pixel loop.

    Args:
        mask: Binary mask. [H, W]
        radius: Half window (3: 7 x 7).

    Returns:
        Smoothed mask, on ``mask``'s device. [H, W]
    """
    voters = np.zeros(tuple(mask.shape), np.float32)
    voters[:-1, :-1] = 1.0
    votes = mask.detach().cpu().numpy().astype(np.float32) * voters
    size = (2 * radius + 1, 2 * radius + 1)

    def window_sum(x: np.ndarray) -> np.ndarray:  # exact: sums of at most 49 ones in float32
        return cv2.boxFilter(x, -1, size, normalize=False, borderType=cv2.BORDER_CONSTANT)

    return torch.from_numpy(2 * window_sum(votes) > window_sum(voters)).to(mask.device)


def localization_hit(
    relevancy: Float[Tensor, "H W"],
    boxes: Float[Tensor, "K 4"],
    kernel: int = SMOOTH_KERNEL,
    tie_tol: float = 1e-6,
) -> bool:
    """Whether a maximum of the box-filtered relevancy falls inside one of the GT boxes (LangSplat protocol).

    Args:
        relevancy: Relevancy map at label resolution. [H, W]
        boxes: GT boxes ``(x1, y1, x2, y2)`` in pixels (corners in any order), bounds included. [K, 4]
        kernel: Box-filter size (30).
        tie_tol: Values within ``tie_tol * max(|max|, 1)`` of the maximum count as maxima. LangSplat tests exact
            equality, which depends on the summation order of the filter; a plateau (a blob smaller than the box)
            should tie whatever the implementation.

    Returns:
        True on a hit.
    """
    smoothed = mean_filter(relevancy, kernel).double()
    top = smoothed.max()
    ys, xs = torch.nonzero(smoothed >= top - tie_tol * max(top.abs().item(), 1.0), as_tuple=True)
    b = boxes.reshape(-1, 4).to(smoothed.device, torch.float64)
    x_min, x_max = torch.minimum(b[:, 0], b[:, 2]), torch.maximum(b[:, 0], b[:, 2])
    y_min, y_max = torch.minimum(b[:, 1], b[:, 3]), torch.maximum(b[:, 1], b[:, 3])
    x, y = xs.double()[:, None], ys.double()[:, None]
    inside = (x >= x_min) & (x <= x_max) & (y >= y_min) & (y <= y_max)  # [n_max, K]
    return bool(inside.any())


def relevancy_to_mask(
    relevancy: Float[Tensor, "H W"],
    threshold: float = MASK_THRESHOLD,
    kernel: int = SMOOTH_KERNEL,
    radius: int = MAJORITY_RADIUS,
) -> Bool[Tensor, "H W"]:
    """LangSplat's predicted mask: blend with the box-filtered map, rescale to [-1, 1], clip, threshold, smooth.

    Args:
        relevancy: Relevancy map. [H, W]
        threshold: Threshold on ``clip(2 n - 1, 0, 1)`` (0.4, i.e. ``n > 0.7``).
        kernel: Box-filter size (30).
        radius: Majority-vote half window (3).

    Returns:
        Predicted mask. [H, W]
    """
    v = 0.5 * (mean_filter(relevancy, kernel) + relevancy)
    v = v - v.min()
    n = v / (v.max() + 1e-9)
    return majority_smooth((2.0 * n - 1.0).clamp(0.0, 1.0) > threshold, radius)


def mask_iou(pred: Bool[Tensor, "H W"], gt: Bool[Tensor, "H W"]) -> float:
    """Intersection over union of two masks (0 when both are empty)."""
    union = (pred | gt).sum().item()
    return (pred & gt).sum().item() / union if union else 0.0


def evaluate_frame(
    relevancies: Dict[str, Float[Tensor, "H W"]],
    labels: FrameLabels,
    threshold: float = MASK_THRESHOLD,
) -> Dict[str, Tuple[float, bool]]:
    """IoU and localization hit of every labelled category of one frame.

    Args:
        relevancies: Relevancy map of each category at label resolution. Each [H, W]
        labels: The frame's ground truth.
        threshold: mIoU threshold (0.4).

    Returns:
        ``{category: (iou, hit)}``.
    """
    out = {}
    for category, gt in labels.masks.items():
        rel = relevancies[category].float()
        if tuple(rel.shape) != (labels.height, labels.width):
            shape = (labels.height, labels.width)
            raise ValueError(f"relevancy of {category!r} is {tuple(rel.shape)}, labels are {shape}")
        iou = mask_iou(relevancy_to_mask(rel, threshold), gt.to(rel.device))
        out[category] = (iou, localization_hit(rel, labels.boxes[category]))
    return out


def summarize(results: Sequence[Dict[str, Tuple[float, bool]]]) -> Dict[str, float]:
    """Scene metrics from :func:`evaluate_frame` results: mean over all (frame, category) pairs.

    Returns:
        ``{"miou", "localization_accuracy", "num_queries"}``.
    """
    pairs: List[Tuple[float, bool]] = [v for frame in results for v in frame.values()]
    if not pairs:
        return {"miou": 0.0, "localization_accuracy": 0.0, "num_queries": 0}
    return {
        "miou": sum(p[0] for p in pairs) / len(pairs),
        "localization_accuracy": sum(p[1] for p in pairs) / len(pairs),
        "num_queries": len(pairs),
    }


def feature_fidelity(
    rendered: Float[Tensor, "H W D"],
    teacher: Float[Tensor, "h w D"],
) -> Float[Tensor, ""]:
    """Mean cosine similarity between rendered features and the teacher's map.

    The rendered map is resized (bilinear) to the teacher's resolution first, so the score does not reward
    upsampled teacher detail.

    Args:
        rendered: Rendered feature map. [H, W, D]
        teacher: Teacher feature map. [h, w, D]

    Returns:
        Mean cosine over teacher pixels, in [-1, 1]. []
    """
    resized = resize_feature_map(rendered.float(), tuple(teacher.shape[:2]))
    return F.cosine_similarity(resized, teacher.float().to(resized.device), dim=-1).mean()


LABEL_SUM_KEYS = ("lerf_ovs_iou_sum", "lerf_ovs_hits", "lerf_ovs_queries")
"""Per-frame sums that the model reports and :func:`label_metrics_from_means` turns into scene metrics."""


def frame_label_sums(results: Dict[str, Tuple[float, bool]]) -> Dict[str, float]:
    """One frame's :func:`evaluate_frame` results as sums (IoU sum, hits, queries; all 0 for an unlabelled frame).

    nerfstudio averages each per-frame metric over the eval frames; the ratio of the averaged sums is the mean over
    (frame, category) pairs, LangSplat's weighting, whatever the number of categories per frame.
    """
    return {
        "lerf_ovs_iou_sum": float(sum(iou for iou, _ in results.values())),
        "lerf_ovs_hits": float(sum(hit for _, hit in results.values())),
        "lerf_ovs_queries": float(len(results)),
    }


def label_metrics_from_means(metrics: Dict[str, float], num_frames: int) -> Dict[str, float]:
    """Replaces the averaged :data:`LABEL_SUM_KEYS` (and their ``_std``) by ``miou``, ``localization_accuracy`` and
    ``num_label_queries``; returns ``metrics`` unchanged when they are absent.

    Args:
        metrics: Frame-averaged metrics (nerfstudio's ``get_average_image_metrics``).
        num_frames: Number of frames averaged.

    Returns:
        The updated dict (also modified in place).
    """
    if "lerf_ovs_queries" not in metrics:
        return metrics
    iou_sum, hits, queries = (metrics.pop(k) for k in LABEL_SUM_KEYS)
    for key in LABEL_SUM_KEYS:
        metrics.pop(f"{key}_std", None)
    metrics["num_label_queries"] = float(round(queries * num_frames))
    metrics["miou"] = iou_sum / queries if queries > 0 else 0.0
    metrics["localization_accuracy"] = hits / queries if queries > 0 else 0.0
    return metrics
