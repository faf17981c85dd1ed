"""One render of the current Gaussians without gradients, as the strategy's view scores and the guidance use it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor


@dataclass(frozen=True)
class RenderedView:
    """One render of the current Gaussians (no gradients), at the current training resolution.

    Args:
        rgb: colour over the eval background, in [0, 1]. [H, W, 3]
        depth: expected depth (camera z, world units). [H, W]
        alpha: accumulated opacity. [H, W]
        means2d: projected centres in pixels. [1, N, 2]
        radii: gsplat radii in pixels. [1, N] or [1, N, 2]
        depths: camera z of each centre. [1, N]
    """

    rgb: Float[Tensor, "H W 3"]
    depth: Float[Tensor, "H W"]
    alpha: Float[Tensor, "H W"]
    means2d: Float[Tensor, "1 N 2"]
    radii: Tensor
    depths: Float[Tensor, "1 N"]


Renderer = Callable[[Cameras], RenderedView]
"""Renders one camera ([1]) with the current Gaussians (:meth:`splat_core.model.SplatModel.render_view`)."""

__all__ = ["RenderedView", "Renderer"]
