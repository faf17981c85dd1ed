"""Map image-space masks onto Gaussians through their projected footprints.

A Gaussian's *footprint* in a view is the axis-aligned box of half-size ``radii`` (pixels) centred on its projected mean
``means2d``, clipped to the image. This is the box gsplat's projection returns (``info["means2d"]``, ``info["radii"]``):
``radii`` is ``[C, N]`` int in gsplat 1.4 (one radius, ~3 sigma of the larger eigenvalue) and ``[C, N, 2]`` int in
gsplat 1.5 (per axis, opacity-aware). Both formats are accepted everywhere here.

Pixel convention: pixel ``(u, v)`` (column, row) has its centre at ``(u + 0.5, v + 0.5)``, as in gsplat's rasterizer.
A pixel is inside the footprint when its centre lies in ``[mx - rx, mx + rx] x [my - ry, my + ry]``.

Sums over footprints use a summed-area table (integral image), so :func:`count_in_footprints` costs O(C*H*W + C*N)
whatever the footprint sizes. Everything is pure torch, vectorised, device-agnostic and gradient-free.

.. note::
    FastGS (arXiv:2511.04283) counts high-error pixels a Gaussian *contributes to* while alpha blending (its CUDA
    rasterizer adds 1 per pixel where alpha >= 1/255 and transmittance has not saturated). The box used here ignores
    the elliptical falloff and occlusion, so it over-counts for occluded or very anisotropic Gaussians; scale
    ``radius_scale`` below 1 to tighten it.
"""

from typing import Tuple, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

RadiiT = Union[Int[Tensor, "C N"], Int[Tensor, "C N 2"], Float[Tensor, "C N"], Float[Tensor, "C N 2"]]


def _radii_xy(means2d: Tensor, radii: Tensor) -> Tensor:
    """Per-axis radii ``[C, N, 2]`` float from gsplat's ``[C, N]`` (1.4) or ``[C, N, 2]`` (1.5) radii."""
    if radii.shape == means2d.shape:
        r = radii.float()
    elif radii.shape == means2d.shape[:-1]:
        r = radii.float().unsqueeze(-1).expand(*radii.shape, 2)
    else:
        raise ValueError(
            f"radii must be [C, N] or [C, N, 2] for means2d {tuple(means2d.shape)}, got {tuple(radii.shape)}"
        )
    # gsplat marks culled Gaussians with radius 0 (on either axis in 1.5): the footprint is empty.
    visible = (r > 0).all(dim=-1, keepdim=True)
    return torch.where(visible, r, torch.zeros_like(r))


def footprint_bounds(
    means2d: Float[Tensor, "C N 2"],
    radii: RadiiT,
    width: int,
    height: int,
    radius_scale: float = 1.0,
) -> Tuple[Int[Tensor, "C N"], Int[Tensor, "C N"], Int[Tensor, "C N"], Int[Tensor, "C N"]]:
    """Inclusive pixel bounds of each Gaussian's footprint, clipped to the image.

    Args:
        means2d: Projected centres in pixels. [C, N, 2]
        radii: gsplat radii in pixels, 0 for culled Gaussians. [C, N] or [C, N, 2]
        width: Image width in pixels.
        height: Image height in pixels.
        radius_scale: Multiplier on the radii (1.0 is gsplat's box).

    Returns:
        A tuple ``(x0, x1, y0, y1)`` of inclusive column/row bounds, each [C, N] int64. An empty footprint (culled,
        off-image or thinner than a pixel centre) has ``x0 > x1`` or ``y0 > y1``.
    """
    r = _radii_xy(means2d, radii) * radius_scale  # [C, N, 2]
    lo = torch.ceil(means2d.float() - r - 0.5).long()  # first pixel whose centre is >= m - r
    hi = torch.floor(means2d.float() + r - 0.5).long()  # last pixel whose centre is <= m + r
    x0, y0 = lo[..., 0].clamp_min(0), lo[..., 1].clamp_min(0)
    x1, y1 = hi[..., 0].clamp_max(width - 1), hi[..., 1].clamp_max(height - 1)
    culled = (r <= 0).any(dim=-1)
    x1 = torch.where(culled, x0 - 1, x1)
    return x0, x1, y0, y1


def footprint_area(
    means2d: Float[Tensor, "C N 2"],
    radii: RadiiT,
    width: int,
    height: int,
    radius_scale: float = 1.0,
) -> Float[Tensor, "C N"]:
    """Number of pixels in each Gaussian's clipped footprint box.

    Args:
        means2d: Projected centres in pixels. [C, N, 2]
        radii: gsplat radii in pixels, 0 for culled Gaussians. [C, N] or [C, N, 2]
        width: Image width in pixels.
        height: Image height in pixels.
        radius_scale: Multiplier on the radii (1.0 is gsplat's box).

    Returns:
        Pixel count per view and Gaussian, 0 for culled or off-image Gaussians. [C, N]
    """
    x0, x1, y0, y1 = footprint_bounds(means2d, radii, width, height, radius_scale)
    return ((x1 - x0 + 1).clamp_min(0) * (y1 - y0 + 1).clamp_min(0)).float()


@torch.no_grad()
def count_in_footprints(
    means2d: Float[Tensor, "C N 2"],
    radii: RadiiT,
    masks: Union[Bool[Tensor, "C H W"], Float[Tensor, "C H W"]],
    radius_scale: float = 1.0,
) -> Float[Tensor, "C N"]:
    """Sum of mask values inside each Gaussian's footprint box, per view.

    With a boolean mask this is the number of masked pixels (e.g. FastGS's high-error pixels) a Gaussian covers;
    with float weights it is the weighted sum (e.g. a soft VLM region mask). Uses one summed-area table per view:
    O(H*W + N) per view, no loop over Gaussians.

    Args:
        means2d: Projected centres in pixels, as in gsplat's ``info["means2d"]``. [C, N, 2]
        radii: gsplat radii in pixels, 0 for culled Gaussians. [C, N] or [C, N, 2]
        masks: Per-view pixel masks (bool) or weights (float), on the same device. [C, H, W]
        radius_scale: Multiplier on the radii (1.0 is gsplat's box).

    Returns:
        Per-view footprint sums, float32; 0 for culled or off-image Gaussians. [C, N]
    """
    C, H, W = masks.shape
    if means2d.shape[0] != C:
        raise ValueError(f"means2d has {means2d.shape[0]} views but masks has {C}")
    # Integral image padded with a zero row/column: sat[c, y, x] = sum(masks[c, :y, :x]). Integer counts stay exact;
    # float weights are summed in float64 so differences of large prefix sums keep their precision.
    acc_dtype = torch.int64 if masks.dtype == torch.bool or not masks.dtype.is_floating_point else torch.float64
    sat = torch.zeros((C, H + 1, W + 1), dtype=acc_dtype, device=masks.device)
    sat[:, 1:, 1:] = masks.to(acc_dtype).cumsum(dim=1).cumsum(dim=2)
    sat = sat.reshape(C, -1)  # [C, (H+1)*(W+1)]

    x0, x1, y0, y1 = footprint_bounds(means2d, radii, W, H, radius_scale)
    empty = (x1 < x0) | (y1 < y0)
    # Clamp indices of empty boxes into range; their sums are zeroed below.
    x0, y0 = x0.clamp(0, W), y0.clamp(0, H)
    x1, y1 = (x1 + 1).clamp(0, W), (y1 + 1).clamp(0, H)

    def at(y: Tensor, x: Tensor) -> Tensor:  # [C, N] gather of sat[c, y, x]
        return torch.gather(sat, 1, y * (W + 1) + x)

    total = at(y1, x1) - at(y0, x1) - at(y1, x0) + at(y0, x0)
    total = torch.where(empty, torch.zeros_like(total), total)
    return total.float()
