"""Densification strategies (gsplat ``Strategy`` subclasses) and their pure helpers."""

from vlm_instruct_gs.strategy.fastgs import FastGSStrategy
from vlm_instruct_gs.strategy.view_scores import compute_view_scores, high_error_masks

__all__ = ["FastGSStrategy", "compute_view_scores", "high_error_masks"]
