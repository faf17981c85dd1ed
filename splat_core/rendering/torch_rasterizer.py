"""Pure-PyTorch 3D Gaussian rasterization with gsplat's math and conventions.

Projection and spherical harmonics are gsplat's own PyTorch references (``gsplat.cuda._torch_impl``); alpha
compositing re-implements gsplat's CUDA ``rasterize_to_pixels`` (forward and backward) in batched tensor ops, with no
loop over Gaussians. It runs on any device; it exists for CPU tests and demos, since gsplat's kernels are CUDA-only.

``_torch_impl`` is private to gsplat, so what this module relies on is named here: ``_quat_scale_to_covar_preci(quats,
scales, compute_covar=, compute_preci=, triu=)``, ``_fully_fused_projection(means, covars, viewmats, Ks, width, height,
eps2d=, near_plane=, far_plane=, calc_compensations=)`` returning ``(radii, means2d, depths, conics, compensations)``,
and ``_spherical_harmonics(degree, dirs, coeffs)`` (positional: its first parameter is ``degree`` in 1.4-1.5.2 and
``degrees_to_use`` in 1.5.3). These are alike in every gsplat of the project's range (``gsplat>=1.4.0,<1.6``) but for
the radii, ``[C, N]`` before 1.5 and ``[C, N, 2]`` from 1.5 on, which the code handles;
``tests/test_torch_rasterizer.py`` checks the installed gsplat's signatures and passes on gsplat 1.4.0 and 1.5.3.
"""

import math
from typing import Dict, List, Optional, Tuple

import torch
from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci, _spherical_harmonics
from jaxtyping import Float
from torch import Tensor
from typing_extensions import Literal

from splat_core.rendering.sh_colors import view_colors

ALPHA_THRESHOLD = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there (gsplat's CUDA kernel)."""
MAX_ALPHA = 0.999
"""Alpha is clamped to this value (gsplat's CUDA kernel)."""
TRANSMITTANCE_EPS = 1e-4
"""A pixel stops before the Gaussian that would bring its transmittance to this value or below."""
BLOCK = 8
"""Side in pixels of the pixel blocks composited together; each gsplat tile is split into such blocks."""
PAIRS_PER_CHUNK = 2**19
"""Default budget of (pixel, Gaussian) pairs evaluated at once, padding included (about 2 MB per float tensor)."""
_GSPLAT_DEFAULTS = {"camera_model": "pinhole", "covars": None, "radius_clip": 0.0, "distributed": False}
"""gsplat arguments that would change the result unless left at these values."""


def rasterize_torch(
    means: Float[Tensor, "N 3"],  # [N, 3]
    quats: Float[Tensor, "N 4"],  # [N, 4]
    scales: Float[Tensor, "N 3"],  # [N, 3]
    opacities: Float[Tensor, " N"],  # [N]
    colors: Float[Tensor, "..."],  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Float[Tensor, "C 4 4"],  # [C, 4, 4]
    Ks: Float[Tensor, "C 3 3"],  # [C, 3, 3]
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    sh_degree: Optional[int] = None,
    backgrounds: Optional[Float[Tensor, "C D"]] = None,  # [C, D]
    render_mode: Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"] = "RGB",
    rasterize_mode: Literal["classic", "antialiased"] = "classic",
    absgrad: bool = False,
    tile_size: int = 16,
    pairs_per_chunk: int = PAIRS_PER_CHUNK,
    **ignored_kwargs,
) -> Tuple[Float[Tensor, "C H W X"], Float[Tensor, "C H W 1"], Dict]:
    """Rasterize 3D Gaussians (N) to a batch of images (C) in pure PyTorch, as ``gsplat.rasterization`` does.

    Same arguments, outputs and conventions as ``gsplat.rendering.rasterization`` with ``packed=False``: cameras
    follow OpenCV (x right, y down, z forward), ``viewmats`` map world to camera, ``Ks`` are in pixels and pixel
    ``(x, y)`` has its centre at ``(x + 0.5, y + 0.5)``.

    .. note::
        Projection, covariance and SH evaluation are gsplat's PyTorch references (``gsplat.cuda._torch_impl``);
        SH colours get ``+ 0.5`` and ``clamp_min(0)`` as in ``gsplat.rendering.rasterization``. Compositing follows
        gsplat's CUDA ``rasterize_to_pixels``: Gaussians are binned to 16x16 tiles by their radius bounding box,
        sorted front to back by depth, ``alpha = min(0.999, opacity * exp(-sigma))``, skipped where ``sigma < 0`` or
        ``alpha < 1/255``, and a pixel stops before the Gaussian whose ``T * (1 - alpha)`` would be ``<= 1e-4``.

    .. note::
        ``info["radii"]`` has the format of the installed gsplat's ``_fully_fused_projection``: ``[C, N]`` (square
        3-sigma radius) in gsplat 1.4, ``[C, N, 2]`` (per axis) in gsplat 1.5, so the installed
        ``DefaultStrategy`` can read it. gsplat 1.5's CUDA projection also tightens radii by opacity; the
        PyTorch reference does not, which changes ``radii`` but not the rendered pixels.

    .. note::
        Speed and memory: each 8x8 pixel block is evaluated against its tile's Gaussians whose ``alpha >= 1/255``
        ellipse reaches the block (the others are skipped there by the rule above), padded to the largest count in
        its chunk of at most ``pairs_per_chunk`` pairs. The backward pass is analytic, as gsplat's
        ``rasterize_to_pixels_bwd``, and recomputes the pairs chunk by chunk, so no per-pair tensor outlives its
        chunk. Double backward is not supported.

    Args:
        means: Gaussian centres in world space. [N, 3]
        quats: Rotations as wxyz quaternions, normalised internally. [N, 4]
        scales: Activated scales, in world units. [N, 3]
        opacities: Activated opacities in [0, 1]. [N]
        colors: Post-activation features [N, D] or [C, N, D]; or SH coefficients [N, K, 3] or [C, N, K, 3] when
            ``sh_degree`` is set, with ``(sh_degree + 1) ** 2 <= K``.
        viewmats: World-to-camera transforms (OpenCV). [C, 4, 4]
        Ks: Pinhole intrinsics in pixels. [C, 3, 3]
        width: Image width in pixels.
        height: Image height in pixels.
        near_plane: Gaussians with camera depth at or below this are culled. Default is 0.01.
        far_plane: Gaussians with camera depth at or above this are culled. Default is 1e10.
        eps2d: Added to the diagonal of each projected 2D covariance, in squared pixels. Default is 0.3.
        sh_degree: SH degree to evaluate, or None for post-activation ``colors``. Default is None.
        backgrounds: Background features, added as ``T * background``. [C, D]. Default is None.
        render_mode: "RGB", "D" (accumulated depth), "ED" (expected depth, "D" / alpha), "RGB+D" or "RGB+ED"
            (depth as the last channel). Default is "RGB".
        rasterize_mode: "classic", or "antialiased" to multiply opacities by the compensation factor
            ``sqrt(det(cov2d) / det(cov2d + eps2d I))`` (Mip-Splatting). Default is "classic".
        absgrad: After backward, ``info["means2d"].absgrad`` holds the sum over pixels of the absolute per-pixel
            gradients w.r.t. ``means2d`` (AbsGS), [C, N, 2]. Default is False.
        tile_size: Tile size in pixels. Default is 16.
        pairs_per_chunk: Budget of (pixel, Gaussian) pairs evaluated at once. Default is 2**19.
        ignored_kwargs: gsplat arguments that do not change the result (``packed``, ``sparse_grad``,
            ``channel_chunk``). ``camera_model`` other than "pinhole", ``covars``, ``radius_clip > 0`` and
            ``distributed`` raise NotImplementedError.

    Returns:
        A tuple:

        **render_colors**: Rendered features, with the depth as the last channel in the depth modes.
        [C, height, width, X], X = D for "RGB", 1 for "D"/"ED", D + 1 for "RGB+D"/"RGB+ED".

        **render_alphas**: Accumulated opacity ``1 - T``. [C, height, width, 1]

        **info**: Intermediate results keyed as in gsplat: "radii", "means2d" [C, N, 2] (in the autograd graph),
        "depths" [C, N], "conics" [C, N, 3], "opacities" [C, N], "camera_ids"/"gaussian_ids" (None, unpacked),
        "tiles_per_gauss" [C, N], "tile_width", "tile_height", "width", "height", "tile_size", "n_cameras".
    """
    N, C = means.shape[0], viewmats.shape[0]
    assert means.shape == (N, 3) and quats.shape == (N, 4) and scales.shape == (N, 3), (means.shape, quats.shape)
    assert opacities.shape == (N,), opacities.shape
    assert viewmats.shape == (C, 4, 4) and Ks.shape == (C, 3, 3), (viewmats.shape, Ks.shape)
    assert render_mode in ("RGB", "D", "ED", "RGB+D", "RGB+ED"), render_mode
    assert rasterize_mode in ("classic", "antialiased"), rasterize_mode
    for key, default in _GSPLAT_DEFAULTS.items():
        value = ignored_kwargs.get(key, default)
        if value is not default and (default is None or value != default):
            raise NotImplementedError(f"rasterize_torch does not support {key}={value!r}")

    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_covar=True, compute_preci=False, triu=False)
    radii, means2d, depths, conics, compensations = _fully_fused_projection(
        means,
        covars,
        viewmats,
        Ks,
        width,
        height,
        eps2d=eps2d,
        near_plane=near_plane,
        far_plane=far_plane,
        calc_compensations=(rasterize_mode == "antialiased"),
    )  # radii [C, N] or [C, N, 2]; means2d [C, N, 2]; depths [C, N]; conics [C, N, 3]
    opacities = opacities[None, :].expand(C, N)  # [C, N]
    if compensations is not None:
        opacities = opacities * compensations

    colors = _features(means, colors, viewmats, sh_degree, N, C)  # [C, N, D]
    if render_mode in ("RGB+D", "RGB+ED"):
        colors = torch.cat([colors, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(C, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(C, 1)

    # Per-axis radii for the tile test: gsplat 1.4 gives one radius [C, N], gsplat 1.5 one per axis [C, N, 2].
    radii_xy = radii.unsqueeze(-1).expand(C, N, 2) if radii.dim() == 2 else radii  # [C, N, 2]
    absgrad_buffer = torch.zeros_like(means2d) if absgrad and means2d.requires_grad else None  # [C, N, 2]

    per_camera = (means2d, conics, opacities, colors, depths, radii_xy, backgrounds, absgrad_buffer)
    cameras = [[None if t is None else t[cam] for t in per_camera] for cam in range(C)]
    images, alphas, tiles_per_gauss = zip(
        *(_rasterize_camera(*args, width, height, tile_size, pairs_per_chunk) for args in cameras)
    )
    render_colors, render_alphas = torch.stack(images), torch.stack(alphas)  # [C, H, W, X], [C, H, W, 1]

    if render_mode in ("ED", "RGB+ED"):
        # Normalise the accumulated depth into the expected depth, as gsplat does.
        expected = render_colors[..., -1:] / render_alphas.clamp(min=1e-10)
        render_colors = torch.cat([render_colors[..., :-1], expected], dim=-1)
    if absgrad_buffer is not None:
        # Filled in place during backward (see _CompositeTiles.backward), like gsplat's absgrad.
        means2d.absgrad = absgrad_buffer

    info = {
        "camera_ids": None,
        "gaussian_ids": None,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities,
        "tiles_per_gauss": torch.stack(tiles_per_gauss),
        "tile_width": math.ceil(width / tile_size),
        "tile_height": math.ceil(height / tile_size),
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_cameras": C,
    }
    return render_colors, render_alphas, info


def _features(
    means: Tensor,  # [N, 3]
    colors: Tensor,  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    sh_degree: Optional[int],
    N: int,
    C: int,
) -> Tensor:  # [C, N, D]
    """Per-camera features: colours as given, or SH evaluated along the view directions (gsplat's rule)."""
    if sh_degree is None:
        assert (colors.dim() == 2 and colors.shape[0] == N) or colors.shape[:2] == (C, N), colors.shape
        return colors.expand(C, -1, -1) if colors.dim() == 2 else colors
    return view_colors(means, colors, viewmats, sh_degree, _spherical_harmonics)


def _rasterize_camera(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, D]
    depths: Tensor,  # [N]
    radii: Tensor,  # [N, 2]
    background: Optional[Tensor],  # [D]
    absgrad_buffer: Optional[Tensor],  # [N, 2]
    width: int,
    height: int,
    tile_size: int,
    pairs_per_chunk: int,
) -> Tuple[Tensor, Tensor, Tensor]:  # [H, W, D], [H, W, 1], [N]
    """Composite one camera's projected Gaussians block by block, front to back."""
    block = BLOCK if tile_size % BLOCK == 0 else tile_size
    blocks_x, blocks_y = math.ceil(width / block), math.ceil(height / block)
    n_blocks, n_pix, D = blocks_x * blocks_y, block * block, colors.shape[-1]
    with torch.no_grad():
        hit, ids, tiles_per_gauss = _bin(means2d, conics, opacities, radii, depths, tile_size, block, width, height)
        counts = hit.sum(dim=1)  # [n_blocks]
        order = torch.argsort(counts, descending=True)  # blocks of similar counts share a chunk: little padding
        sorted_counts = counts[order].tolist()
        # Pixel centres (x + 0.5, y + 0.5) of every block, row-major inside the block: [n_blocks, n_pix, 2].
        local = torch.arange(n_pix, device=means2d.device)
        corner = torch.arange(n_blocks, device=means2d.device)[:, None]
        pix_x = (corner % blocks_x) * block + local % block
        pix_y = (corner // blocks_x) * block + local // block
        pix = torch.stack([pix_x, pix_y], dim=-1).to(means2d.dtype) + 0.5

    chunks: List[Tuple[Tensor, Tensor, Tensor]] = []
    start = 0
    while start < n_blocks and sorted_counts[start] > 0:
        k = sorted_counts[start]  # the largest count in this chunk (counts are sorted)
        stop = min(start + max(1, pairs_per_chunk // (k * n_pix)), n_blocks)
        block_ids = order[start:stop]
        gids, valid = _gather_ids(hit[block_ids], counts[block_ids], k, ids)  # [B, k], front to back
        gathered = (means2d[gids], conics[gids], opacities[gids] * valid, colors[gids])  # padding: opacity 0
        out, trans = _CompositeTiles.apply(*gathered, pix[block_ids], gids, absgrad_buffer)
        chunks.append((block_ids, out, trans))
        start = stop

    image, trans = colors.new_zeros(n_blocks, n_pix, D), colors.new_ones(n_blocks, n_pix)
    if chunks:
        block_ids = torch.cat([chunk[0] for chunk in chunks])
        image = image.index_copy(0, block_ids, torch.cat([chunk[1] for chunk in chunks]))
        trans = trans.index_copy(0, block_ids, torch.cat([chunk[2] for chunk in chunks]))
    if background is not None:
        image = image + trans[..., None] * background
    image, alpha = (_unblock(x, blocks_y, blocks_x, block, height, width) for x in (image, (1.0 - trans)[..., None]))
    return image, alpha, tiles_per_gauss


@torch.no_grad()
def _bin(
    means2d: Tensor,  # [N, 2]
    conics: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    radii: Tensor,  # [N, 2]
    depths: Tensor,  # [N]
    tile_size: int,
    block: int,
    width: int,
    height: int,
) -> Tuple[Tensor, Tensor, Tensor]:  # [n_blocks, M] bool, [M], [N] int32
    """Which visible Gaussians (sorted front to back) each pixel block composites, and gsplat's tiles_per_gauss.

    As gsplat's ``isect_tiles``, a Gaussian with radii (rx, ry) belongs to the tiles
    ``[floor((x - rx) / tile_size), ceil((x + rx) / tile_size))`` (likewise in y), clamped to the image, and ties
    in depth keep the input order (gsplat's radix sort is stable). Blocks subdivide tiles: a block takes its tile's
    Gaussians minus those whose ``alpha >= 1/255`` ellipse misses it, which gsplat skips at each of its pixels.
    """
    ids = torch.nonzero((radii > 0).all(dim=-1)).squeeze(1)
    ids = ids[torch.sort(depths[ids], stable=True).indices]  # [M], front to back
    centre, dtype = means2d[ids], means2d.dtype  # [M, 2]
    n_tiles = torch.tensor([math.ceil(width / tile_size), math.ceil(height / tile_size)], device=means2d.device)
    extent = radii[ids].to(dtype)
    tile_lo = torch.minimum(torch.floor(centre / tile_size - extent / tile_size).clamp_min(0).long(), n_tiles)
    tile_hi = torch.minimum(torch.ceil(centre / tile_size + extent / tile_size).clamp_min(0).long(), n_tiles)
    tiles_per_gauss = torch.zeros(means2d.shape[0], dtype=torch.int32, device=means2d.device)
    tiles_per_gauss[ids] = (tile_hi - tile_lo).prod(dim=-1).int()

    # Half-axes of the box around {d : 0.5 d^T conic d <= log(255 opacity)}, plus a 0.01 px margin.
    a, b, c = conics[ids].unbind(-1)
    det = a * c - b * b
    level = 2.0 * torch.log(255.0 * opacities[ids]).clamp_min(0.0)
    half = torch.sqrt(level[:, None] * torch.stack([c, a], dim=-1) / det[:, None]) + 0.01
    half = torch.where((det > 0)[:, None], half, math.inf)  # not positive definite: no culling
    n_blocks = torch.tensor([math.ceil(width / block), math.ceil(height / block)], device=means2d.device)
    ratio = tile_size // block
    lo = torch.maximum(tile_lo * ratio, torch.floor((centre - half) / block).clamp(0, n_blocks.max()).long())
    hi = torch.minimum(tile_hi * ratio, torch.floor((centre + half) / block).clamp(-1, n_blocks.max()).long() + 1)
    hi = torch.minimum(hi, n_blocks)
    bx = torch.arange(int(n_blocks[0]), device=means2d.device)[:, None]
    by = torch.arange(int(n_blocks[1]), device=means2d.device)[:, None]
    hit_x = (bx >= lo[:, 0]) & (bx < hi[:, 0])  # [blocks_x, M]
    hit_y = (by >= lo[:, 1]) & (by < hi[:, 1])  # [blocks_y, M]
    return (hit_y[:, None, :] & hit_x[None, :, :]).reshape(bx.shape[0] * by.shape[0], -1), ids, tiles_per_gauss


@torch.no_grad()
def _gather_ids(
    hit: Tensor,  # [B, M] bool
    counts: Tensor,  # [B]
    k: int,
    ids: Tensor,  # [M]
) -> Tuple[Tensor, Tensor]:  # [B, k] long, [B, k] bool
    """Each block's Gaussian indices in depth order, padded to ``k`` with index ``ids[0]`` (and ``valid`` False)."""
    rows, cols = torch.nonzero(hit, as_tuple=True)  # row-major: by block, then front to back
    slots = torch.arange(rows.shape[0], device=hit.device) - (torch.cumsum(counts, dim=0) - counts)[rows]
    gather = torch.zeros(hit.shape[0], k, dtype=torch.long, device=hit.device)
    valid = torch.zeros(hit.shape[0], k, dtype=torch.bool, device=hit.device)
    gather[rows, slots] = cols
    valid[rows, slots] = True
    return ids[gather], valid


def _pair_terms(
    means2d: Tensor,  # [B, K, 2]
    conics: Tensor,  # [B, K, 3]
    opacities: Tensor,  # [B, K]
    pix: Tensor,  # [B, P, 2]
) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # [B, P, K] each
    """Per (pixel, Gaussian) terms of gsplat's kernel: ``dx``, ``dy`` (mean minus pixel centre), ``exp(-sigma)``,
    ``alpha`` (0 where gsplat skips the pair: ``sigma < 0``, ``alpha < 1/255``, or at and past the pixel's
    transmittance cutoff) and the transmittance after each Gaussian."""
    dx = means2d[:, None, :, 0] - pix[:, :, None, 0]  # [B, P, K]
    dy = means2d[:, None, :, 1] - pix[:, :, None, 1]
    a, b, c = conics[:, None, :, :].unbind(-1)  # [B, 1, K] each
    sigma = (0.5 * a * dx + b * dy) * dx + 0.5 * c * dy * dy
    falloff = torch.exp(-torch.where(sigma >= 0, sigma, math.inf))  # sigma < 0 gives alpha 0: skipped
    raw = opacities[:, None, :] * falloff
    alpha = torch.where(raw >= ALPHA_THRESHOLD, raw.clamp_max(MAX_ALPHA), 0.0)
    trans = torch.cumprod(1.0 - alpha, dim=-1)
    keep = trans > TRANSMITTANCE_EPS  # T never grows: False from the first Gaussian that would cross the cutoff
    if not bool(keep.all()):
        alpha = alpha * keep
        trans = torch.cumprod(1.0 - alpha, dim=-1)
    return dx, dy, falloff, alpha, trans


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back alpha compositing of blocks of depth-sorted Gaussians, with gsplat's analytic backward.

    Nothing per (pixel, Gaussian) pair is saved: backward recomputes the pairs, as gsplat's
    ``rasterize_to_pixels_bwd`` does, so memory stays bounded by one chunk.
    """

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, pix, gids, absgrad_buffer):
        _, _, _, alpha, trans = _pair_terms(means2d, conics, opacities, pix)
        weights = alpha * trans / (1.0 - alpha)  # alpha_i * T before i
        ctx.save_for_backward(means2d, conics, opacities, colors, pix, gids)
        ctx.absgrad_buffer = absgrad_buffer
        return torch.bmm(weights, colors), trans[..., -1]  # [B, P, D], [B, P]

    @staticmethod
    def backward(ctx, v_out, v_trans_final):  # [B, P, D], [B, P]
        means2d, conics, opacities, colors, pix, gids = ctx.saved_tensors
        dx, dy, falloff, alpha, trans = _pair_terms(means2d, conics, opacities, pix)
        trans_before = trans / (1.0 - alpha)
        weights = alpha * trans_before
        v_colors = torch.bmm(weights.transpose(1, 2), v_out)  # [B, K, D]
        v_weights = torch.bmm(v_out, colors.transpose(1, 2))  # [B, P, K]
        # d/d alpha_i: T_i (c_i . v) - (sum_{j > i} w_j (c_j . v) + T_final v_T) / (1 - alpha_i).
        ahead = torch.cumsum(v_weights * weights, dim=-1)
        behind = ahead[..., -1:] - ahead + (trans[..., -1] * v_trans_final)[..., None]
        live = (alpha > 0) & (opacities[:, None, :] * falloff <= MAX_ALPHA)  # clamped alphas pass no gradient
        v_alpha = torch.where(live, v_weights * trans_before - behind / (1.0 - alpha), 0.0)
        v_opacities = (v_alpha * falloff).sum(dim=1)  # [B, K]
        v_sigma = -v_alpha * alpha
        a, b, c = conics[:, None, :, :].unbind(-1)
        v_dx = (a * dx + b * dy) * v_sigma  # [B, P, K], per-pixel gradient w.r.t. the mean's x
        v_dy = (b * dx + c * dy) * v_sigma
        v_conics = torch.stack(
            [0.5 * (dx * dx * v_sigma).sum(1), (dx * dy * v_sigma).sum(1), 0.5 * (dy * dy * v_sigma).sum(1)], dim=-1
        )  # [B, K, 3]
        v_means2d = torch.stack([v_dx.sum(dim=1), v_dy.sum(dim=1)], dim=-1)  # [B, K, 2]
        if ctx.absgrad_buffer is not None:  # AbsGS: sum over pixels of |per-pixel gradient|, as gsplat
            v_abs = torch.stack([v_dx.abs().sum(dim=1), v_dy.abs().sum(dim=1)], dim=-1)
            ctx.absgrad_buffer.index_put_((gids.reshape(-1),), v_abs.reshape(-1, 2), accumulate=True)
        return v_means2d, v_conics, v_opacities, v_colors, None, None, None


def _unblock(x: Tensor, blocks_y: int, blocks_x: int, block: int, height: int, width: int) -> Tensor:
    """[blocks_y * blocks_x, block**2, D] blocks to a [height, width, D] image (partial border blocks cropped)."""
    x = x.reshape(blocks_y, blocks_x, block, block, -1).permute(0, 2, 1, 3, 4)
    return x.reshape(blocks_y * block, blocks_x * block, -1)[:height, :width]
