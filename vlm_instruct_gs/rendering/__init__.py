"""Rendering helpers around gsplat's rasterization, with a pure-PyTorch path for CPU tests and demos."""

from vlm_instruct_gs.rendering.rasterize import rasterize
from vlm_instruct_gs.rendering.torch_rasterizer import rasterize_torch

__all__ = ["rasterize", "rasterize_torch"]
