"""Densification strategies (gsplat ``Strategy`` subclasses) and their pure helpers."""

from splat_core.strategy.fastgs import FastGSStrategy
from splat_core.strategy.view_scores import (
    camera_proximity,
    compute_view_scores,
    high_error_masks,
    view_scores_from_counts,
)

__all__ = [
    "FastGSStrategy",
    "camera_proximity",
    "compute_view_scores",
    "high_error_masks",
    "view_scores_from_counts",
]
