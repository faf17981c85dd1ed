"""Per-Gaussian counts of the masked pixels each Gaussian blends into, by the rasteriser's own rule.

FastGS (arXiv:2511.04283) scores a Gaussian by the high-error pixels it *contributes to* while alpha blending: its
rasteriser adds 1 per pixel where the Gaussian's ``alpha >= 1/255`` and compositing has not stopped. Here the rule is
gsplat's, the one our renders follow (``gsplat.rasterize_to_indices_in_range``, and
:mod:`splat_core.rendering.torch_rasterizer` on CPU): along each pixel, front to back over the Gaussians of its tile,

- ``alpha = min(0.999, opacity * exp(-sigma))``; the Gaussian is skipped where ``sigma < 0`` or ``alpha < 1/255``;
- the pixel stops *before* the Gaussian that would bring its transmittance ``T * (1 - alpha)`` to ``1e-4`` or below
  (that Gaussian and every one behind it do not contribute);
- every other Gaussian contributes.

So a Gaussian hidden behind opaque ones, or too transparent to pass ``1/255`` anywhere, counts zero, unlike the
footprint box of :mod:`splat_core.rendering.footprint`.

On CUDA the pairs come from gsplat's ``rasterize_to_indices_in_range`` (gsplat/cuda/_wrapper.py in the installed
gsplat; as gsplat's ``_torch_impl._rasterize_to_pixels`` calls it) with the render's own tile intersections. Its
``transmittances`` input is the mask itself: a pixel starting at transmittance 0 stops before its first Gaussian, so
only masked pixels yield pairs and memory scales with the masked pixels, not the image. On CPU the same pairs are
recomputed with the pixel-block binning and per-pair terms of :func:`~splat_core.rendering.torch_rasterizer.
rasterize_torch`, so both paths count what each path renders.
"""

import math
from typing import Dict

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from splat_core.rendering.torch_rasterizer import BLOCK, PAIRS_PER_CHUNK, _bin, _gather_ids, _pair_terms


@torch.no_grad()
def count_contributions(
    info: Dict,
    masks: Bool[Tensor, "C H W"],
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
) -> Float[Tensor, "C N"]:
    """Number of masked pixels each Gaussian contributes to (blends into), per view.

    Args:
        info: The ``info`` dict of an unpacked render of C cameras at ``masks``' size: gsplat's ``rasterization``
            (CUDA; needs ``means2d``, ``conics``, ``opacities``, ``isect_offsets``, ``flatten_ids``,
            ``tile_size``) or :func:`~splat_core.rendering.torch_rasterizer.rasterize_torch` (CPU; needs
            ``means2d``, ``conics``, ``opacities``, ``depths``, ``radii``, ``tile_size``). ``means2d`` [C, N, 2]
            in pixels, ``opacities`` [C, N] per view (antialiasing compensation included).
        masks: Pixels to count (e.g. FastGS's high-error pixels), row-major, on the render's device. [C, H, W]
        pairs_per_chunk: CPU only: budget of (pixel, Gaussian) pairs evaluated at once.

    Returns:
        Per-view counts, float32, 0 for culled Gaussians. [C, N]

    Raises:
        ValueError: if ``masks`` does not match the render's cameras or size, or the render is packed.
    """
    means2d = info["means2d"]
    if means2d.dim() != 3:
        raise ValueError(f"count_contributions needs an unpacked render (means2d [C, N, 2]), got {tuple(means2d.shape)}")
    C, N, _ = means2d.shape
    H, W = masks.shape[-2:]
    if masks.shape != (C, H, W) or (info.get("width", W), info.get("height", H)) != (W, H):
        raise ValueError(
            f"masks {tuple(masks.shape)} do not match the render: {C} cameras of "
            f"{info.get('width')}x{info.get('height')} pixels"
        )
    masks = masks.to(torch.bool)
    if means2d.is_cuda and "flatten_ids" in info:
        return _count_gsplat(info, masks)
    return torch.stack([_count_torch(info, masks, c, pairs_per_chunk) for c in range(C)])


def _count_gsplat(info: Dict, masks: Tensor) -> Tensor:  # [C, H, W] bool -> [C, N] float
    """gsplat's pair enumeration; the mask is passed as the starting transmittance (see the module docstring)."""
    from gsplat import rasterize_to_indices_in_range

    means2d = info["means2d"].detach()
    C, N, _ = means2d.shape
    H, W = masks.shape[-2:]
    tile_size = int(info["tile_size"])
    flatten_ids = info["flatten_ids"]
    # Upper bound on the batches of tile_size**2 Gaussians of any tile, known without a device sync; the kernel stops
    # at each tile's own count.
    range_end = flatten_ids.shape[0] // (tile_size * tile_size) + 1
    gs_ids, pixel_ids, camera_ids = rasterize_to_indices_in_range(
        0,
        range_end,
        masks.to(means2d.dtype),
        means2d,
        info["conics"].detach(),
        info["opacities"].detach().expand(C, N),
        W,
        H,
        tile_size,
        info["isect_offsets"],
        flatten_ids,
    )
    counts = torch.zeros(C * N, dtype=torch.float32, device=means2d.device)
    counts.index_add_(0, camera_ids * N + gs_ids, torch.ones_like(gs_ids, dtype=torch.float32))
    return counts.reshape(C, N)


def _count_torch(info: Dict, masks: Tensor, cam: int, pairs_per_chunk: int) -> Tensor:  # -> [N] float
    """One camera on the torch rasteriser's blocks: the pairs it composites, restricted to masked pixels."""
    means2d, conics = info["means2d"][cam].detach(), info["conics"][cam].detach()  # [N, 2], [N, 3]
    opacities, depths = info["opacities"][cam].detach(), info["depths"][cam].detach()  # [N], [N]
    radii = info["radii"][cam]
    radii = radii.unsqueeze(-1).expand(-1, 2) if radii.dim() == 1 else radii  # [N, 2]: gsplat 1.4 or 1.5 format
    H, W = masks.shape[-2:]
    tile_size = int(info.get("tile_size", 16))
    block = BLOCK if tile_size % BLOCK == 0 else tile_size
    blocks_x, blocks_y = math.ceil(W / block), math.ceil(H / block)
    n_pix = block * block
    counts = torch.zeros(means2d.shape[0], dtype=torch.float32, device=means2d.device)

    hit, ids, _ = _bin(means2d, conics, opacities, radii, depths, tile_size, block, W, H)
    # The mask in the rasteriser's block layout ([n_blocks, block * block], row-major inside each block); pixels of
    # partial border blocks lie outside the image and are never counted.
    padded = torch.zeros(blocks_y * block, blocks_x * block, dtype=torch.bool, device=masks.device)
    padded[:H, :W] = masks[cam]
    block_masks = padded.reshape(blocks_y, block, blocks_x, block).permute(0, 2, 1, 3).reshape(-1, n_pix)
    n_hit = hit.sum(dim=1)
    wanted = torch.nonzero(block_masks.any(dim=1) & (n_hit > 0)).squeeze(1)
    if wanted.numel() == 0:
        return counts
    order = wanted[torch.argsort(n_hit[wanted], descending=True)]  # similar counts share a chunk: little padding
    sorted_counts = n_hit[order].tolist()

    local = torch.arange(n_pix, device=means2d.device)
    start = 0
    while start < order.numel():
        k = sorted_counts[start]
        stop = min(start + max(1, pairs_per_chunk // (k * n_pix)), order.numel())
        block_ids = order[start:stop]
        gids, valid = _gather_ids(hit[block_ids], n_hit[block_ids], k, ids)  # [B, k], front to back
        pix_x = (block_ids[:, None] % blocks_x) * block + local % block
        pix_y = (block_ids[:, None] // blocks_x) * block + local // block
        pix = torch.stack([pix_x, pix_y], dim=-1).to(means2d.dtype) + 0.5  # [B, n_pix, 2] pixel centres
        _, _, _, alpha, _ = _pair_terms(means2d[gids], conics[gids], opacities[gids] * valid, pix)  # [B, P, k]
        # alpha is 0 exactly where the rasteriser skips the pair or the pixel has stopped (padding has opacity 0)
        contributes = (alpha > 0) & block_masks[block_ids][:, :, None]
        counts.index_add_(0, gids.reshape(-1), contributes.sum(dim=1).reshape(-1).float())
        start = stop
    return counts


__all__ = ["count_contributions"]
