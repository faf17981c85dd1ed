"""FMGS "hybrid" CLIP feature maps: CLIP embeddings of multi-scale image tiles, splatted to pixels and averaged.

Follows FMGS's ``PyramidEmbeddingDataloader.img_call`` and ``PatchEmbeddingDataloader`` (googlestaging/
foundation-model-embedded-3dgs, ``lerf/data/utils/``, themselves LERF's code) and FMGS's ``LERFFeatManager`` settings:
``tile_size_range = [0.05, 0.5]``, ``tile_size_res = 7``, ``stride_scaler = 0.5``.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

TileEncoder = Callable[[Tensor], Tensor]
"""Maps tiles ``[B, 3, k, k]`` with values in [0, 1] to embeddings ``[B, D]``."""

STRIDE_RAMP: Tuple[float, float] = (0.05, 0.15)
"""Tile ratios between which the stride ratio ramps from 1 to ``stride`` (LERF's ``_stride_scaler``)."""


def tile_ratios(scales: int = 7, min_tile: float = 0.05, max_tile: float = 0.5) -> List[float]:
    """Tile sizes as fractions of the image height: ``linspace(min_tile, max_tile, scales)``.

    Args:
        scales: Number of scales.
        min_tile: Smallest tile, fraction of the image height.
        max_tile: Largest tile, fraction of the image height.

    Returns:
        ``scales`` ratios.
    """
    return torch.linspace(min_tile, max_tile, scales, dtype=torch.float64).tolist()


def stride_ratio(tile_ratio: float, stride: float = 0.5) -> float:
    """Stride as a fraction of the tile: 1 (no overlap) for tiles <= 0.05 of the image, ``stride`` from 0.15 on.

    Linear in between (``np.interp(tile_ratio, [0.05, 0.15], [1.0, stride])``, LERF/FMGS ``_stride_scaler``).
    """
    return float(np.interp(tile_ratio, STRIDE_RAMP, [1.0, stride]))


def tile_layout(size: int, kernel: int, stride: int) -> Float[Tensor, "n"]:
    """Pixel coordinates of tile centres along one axis for ``nn.Unfold(kernel, stride, padding=kernel // 2)``.

    Args:
        size: Image size along the axis, in pixels.
        kernel: Tile size in pixels.
        stride: Tile stride in pixels.

    Returns:
        Centres ``(kernel - 1) / 2 - kernel // 2 + stride * i``. [n]
    """
    pad = kernel // 2
    n = (size + 2 * pad - kernel) // stride + 1
    return (kernel - 1) / 2 - pad + stride * torch.arange(n, dtype=torch.float32)


def _interp_weights(coords: Tensor, centres: Tensor) -> Tuple[Tensor, Tensor, Tensor]:  # [S], [n] -> 3 x [S]
    n = centres.shape[0]
    step = float(centres[1] - centres[0]) if n > 1 else 1.0
    u = ((coords - centres[0]) / step).clamp(0, n - 1)
    i0 = u.floor().long().clamp(max=n - 1)
    i1 = (i0 + 1).clamp(max=n - 1)
    return i0, i1, u - i0


def encode_tile_grid(
    image: Float[Tensor, "3 H W"],
    encoder: TileEncoder,
    kernel: int,
    stride: int,
    batch_size: int = 64,
) -> Float[Tensor, "nr nc D"]:
    """Unit-norm embeddings of all ``kernel x kernel`` tiles (zero padding ``kernel // 2``), row-major grid.

    Tiles are cut one row of tiles at a time, so memory stays at about ``batch_size + nc`` tiles.

    Args:
        image: Image in [0, 1]. [3, H, W]
        encoder: Tile encoder. [B, 3, k, k] -> [B, D]
        kernel: Tile size in pixels.
        stride: Stride in pixels.
        batch_size: Tiles per encoder call.

    Returns:
        Embeddings at the tile centres of :func:`tile_layout`. [nr, nc, D]
    """
    pad = kernel // 2
    padded = F.pad(image[None], (pad, pad, pad, pad))  # [1, 3, H+2p, W+2p]
    n_rows = (image.shape[1] + 2 * pad - kernel) // stride + 1
    n_cols = (image.shape[2] + 2 * pad - kernel) // stride + 1
    embeds, pending = [], []

    def flush() -> None:
        if pending:
            tiles = torch.cat(pending)
            pending.clear()
            for chunk in torch.split(tiles, batch_size):
                embeds.append(F.normalize(encoder(chunk).float(), dim=-1).to(image.device))

    for r in range(n_rows):
        strip = padded[:, :, r * stride : r * stride + kernel]  # [1, 3, k, W+2p]
        cols = F.unfold(strip, kernel_size=kernel, stride=stride)  # [1, 3*k*k, nc]
        pending.append(cols[0].T.reshape(n_cols, 3, kernel, kernel))
        if sum(t.shape[0] for t in pending) >= batch_size:
            flush()
    flush()
    return torch.cat(embeds).reshape(n_rows, n_cols, -1)


def default_out_stride(height: int, min_tile: float = 0.05) -> int:
    """FMGS's output spacing: the finest tile's stride minus 3 pixels (``interval = stride - 3`` in ``img_call``).

    The finest tile has stride ratio 1, so this is ``int(height * min_tile) - 3``, at least 1.
    """
    return max(int(height * min_tile) - 3, 1)


def hybrid_clip_map(
    image: Float[Tensor, "H W 3"],
    encoder: TileEncoder,
    scales: int = 7,
    min_tile: float = 0.05,
    max_tile: float = 0.5,
    stride: float = 0.5,
    out_stride: Optional[int] = None,
    batch_size: int = 64,
) -> Float[Tensor, "h w D"]:
    """FMGS hybrid CLIP map: tile embeddings at several scales, interpolated to a pixel grid, averaged, normalised.

    For each of the ``scales`` tile ratios ``t`` of :func:`tile_ratios`, tiles of ``k = int(H * t)`` pixels (square,
    sized by the image *height* as in LERF) are cut with stride ``int(k * stride_ratio(t, stride))`` and zero padding
    ``k // 2``, and each tile's unit CLIP embedding sits at the tile centre (:func:`tile_layout`).

    .. note::
        Output resolution and splatting: output cell ``(i, j)`` is image pixel ``(row, col) = (i * s, j * s)`` with
        ``s = out_stride`` (default :func:`default_out_stride`, e.g. 33 px for a 738-px-high image), so the map is
        ``h = ceil(H / s)`` by ``w = ceil(W / s)``. At each output pixel every scale's embedding is the bilinear
        interpolation of the four surrounding tile centres (clamped at the borders, where LERF repeats the last row
        and column). The ``scales`` interpolated embeddings are averaged with equal weight and the mean is
        L2-normalised. Resize the map to the rendered resolution before the loss (:func:`resize_feature_map`).

    Args:
        image: RGB image in [0, 1]. [H, W, 3]
        encoder: Tile encoder, e.g. ``CLIPTeacher.encode_image``. [B, 3, k, k] -> [B, D]
        scales: Number of tile scales (7).
        min_tile: Smallest tile, fraction of the image height (0.05).
        max_tile: Largest tile, fraction of the image height (0.5).
        stride: Stride as a fraction of the tile for tiles of 0.15 of the image and larger (0.5); see
            :func:`stride_ratio` for smaller ones.
        out_stride: Output spacing in pixels, or None for :func:`default_out_stride`.
        batch_size: Tiles per encoder call.

    Returns:
        Unit-norm hybrid CLIP map. [h, w, D]
    """
    height, width = image.shape[:2]
    chw = image.permute(2, 0, 1).float()
    s = out_stride if out_stride is not None else default_out_stride(height, min_tile)
    rows = torch.arange(0, height, s, dtype=torch.float32, device=image.device)
    cols = torch.arange(0, width, s, dtype=torch.float32, device=image.device)
    total = None
    for ratio in tile_ratios(scales, min_tile, max_tile):
        kernel = max(int(height * ratio), 1)
        step = max(int(kernel * stride_ratio(ratio, stride)), 1)
        grid = encode_tile_grid(chw, encoder, kernel, step, batch_size)  # [nr, nc, D]
        r0, r1, wr = _interp_weights(rows, tile_layout(height, kernel, step).to(image.device))
        c0, c1, wc = _interp_weights(cols, tile_layout(width, kernel, step).to(image.device))
        by_row = grid[r0] * (1 - wr)[:, None, None] + grid[r1] * wr[:, None, None]  # [h, nc, D]
        emb = by_row[:, c0] * (1 - wc)[None, :, None] + by_row[:, c1] * wc[None, :, None]  # [h, w, D]
        total = emb if total is None else total + emb
    return F.normalize(total / scales, dim=-1)
