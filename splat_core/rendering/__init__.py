"""Rendering helpers around gsplat's rasterization, with a pure-PyTorch path for CPU tests and demos."""

from splat_core.rendering.rasterize import rasterize
from splat_core.rendering.torch_rasterizer import rasterize_torch

__all__ = ["rasterize", "rasterize_torch"]
