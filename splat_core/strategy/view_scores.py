"""FastGS multi-view scores: from per-view error maps to per-Gaussian densify and prune scores.

The model renders K sampled training views (FastGS: 10), computes a per-pixel error map for each, thresholds it
(:func:`high_error_masks`), counts each Gaussian's high-error pixels and calls :func:`view_scores_from_counts`
(:func:`compute_view_scores` does all of it with footprint-box counts); the resulting dict is passed as ``view_scores`` to
:meth:`splat_core.strategy.fastgs.FastGSStrategy.step_post_backward`.
Reference: FastGS, arXiv:2511.04283, and ``utils/fast_utils.py`` (``compute_gaussian_score_fastgs``) in
github.com/fastgs/FastGS.
"""

from typing import Dict, Optional, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from splat_core.rendering.footprint import count_in_footprints


@torch.no_grad()
def high_error_masks(
    error_maps: Float[Tensor, "V H W"],
    high_error_thresh: float = 0.1,
    eps: float = 1e-12,
) -> Float[Tensor, "V H W"]:
    """Min-max normalise each view's error map to [0, 1] and threshold it (FastGS's loss map ``M_j > tau``).

    Args:
        error_maps: Per-pixel error, any non-negative scale (FastGS: L1 averaged over colour channels). [V, H, W]
        high_error_thresh: Threshold on the normalised error; FastGS ``loss_thresh``, default 0.1.
        eps: Guards views with constant error (they get no high-error pixel).

    Returns:
        Boolean high-error masks. [V, H, W]
    """
    flat = error_maps.detach().float().flatten(1)
    lo = flat.min(dim=1).values[:, None, None]
    hi = flat.max(dim=1).values[:, None, None]
    normed = (error_maps.detach().float() - lo) / (hi - lo + eps)
    return normed > high_error_thresh


@torch.no_grad()
def compute_view_scores(
    error_maps: Float[Tensor, "V H W"],
    means2d: Float[Tensor, "V N 2"],
    radii: Union[Int[Tensor, "V N"], Int[Tensor, "V N 2"]],
    high_error_thresh: float = 0.1,
    view_losses: Optional[Float[Tensor, "V"]] = None,
    radius_scale: float = 1.0,
) -> Dict[str, Tensor]:
    """Per-Gaussian multi-view scores for FastGS densification (VCD) and pruning (VCP), counted in footprint boxes.

    This is the box approximation (``FastGSStrategy(score_footprint="box")``); the model's default counts the pixels
    each Gaussian blends into instead (:func:`view_scores_from_counts` on
    :func:`splat_core.rendering.contributions.count_contributions`). For view ``j`` let ``m_j`` be the high-error mask (:func:`high_error_masks`) and ``n_ij`` the number of high-error
    pixels in Gaussian ``i``'s footprint (:func:`count_in_footprints`). Then, as FastGS's
    ``compute_gaussian_score_fastgs``:

    - ``densify_score[i] = floor(sum_j n_ij / V)``: the mean number of high-error pixels per view (FastGS ``s+``,
      ``importance_score``); the strategy densifies where it exceeds ``densify_min_count`` (FastGS: 5).
    - ``prune_score[i] = minmax_i(sum_j L_j * n_ij)`` in [0, 1], where ``L_j`` is view ``j``'s photometric loss
      (FastGS ``s-``, ``pruning_score``; all zeros when every raw score is equal).

    Args:
        error_maps: Per-pixel error per view, any non-negative scale (FastGS: L1 averaged over channels). [V, H, W]
        means2d: Projected centres in pixels of all N current Gaussians in each view (gsplat ``info["means2d"]``,
            rendered with ``packed=False``). [V, N, 2]
        radii: gsplat radii in pixels, 0 where culled. [V, N] (gsplat 1.4) or [V, N, 2] (gsplat 1.5)
        high_error_thresh: Threshold on the min-max normalised error; FastGS ``loss_thresh``, default 0.1.
        view_losses: Scalar photometric loss per view. FastGS uses ``0.8 * L1 + 0.2 * (1 - SSIM)``; when None the
            mean of each error map is used. [V]
        radius_scale: Multiplier on the footprint radii (see :mod:`splat_core.rendering.footprint`).

    Returns:
        A dict with ``"densify_score"`` [N] float (high-error pixels per view, floored) and ``"prune_score"`` [N]
        float in [0, 1].
    """
    V = error_maps.shape[0]
    if means2d.shape[0] != V:
        raise ValueError(f"error_maps has {V} views but means2d has {means2d.shape[0]}")
    masks = high_error_masks(error_maps, high_error_thresh)
    counts = count_in_footprints(means2d, radii, masks, radius_scale=radius_scale)  # [V, N]
    if view_losses is None:
        view_losses = error_maps.detach().float().flatten(1).mean(dim=1)
    return view_scores_from_counts(counts, view_losses)


@torch.no_grad()
def view_scores_from_counts(
    counts: Float[Tensor, "V N"],
    view_losses: Float[Tensor, "V"],
    pixel_scale: float = 1.0,
) -> Dict[str, Tensor]:
    """FastGS's scores from per-view high-error pixel counts (``compute_gaussian_score_fastgs``).

    - ``densify_score[i] = floor(pixel_scale * sum_j n_ij / V)``: mean high-error pixels per view;
    - ``prune_score[i] = minmax_i(sum_j L_j * n_ij)`` in [0, 1] (all zeros when every raw score is equal).

    Args:
        counts: High-error pixels of each Gaussian in each view, e.g. blended into
            (:func:`splat_core.rendering.contributions.count_contributions`, as FastGS counts) or in its footprint
            box (:func:`~splat_core.rendering.footprint.count_in_footprints`). [V, N]
        view_losses: Scalar photometric loss per view (FastGS: ``0.8 * L1 + 0.2 * (1 - SSIM)``). [V]
        pixel_scale: Full-resolution pixels per rendered pixel (``d**2`` for a render downscaled by ``d``), so that
            ``densify_score`` is in the full-resolution pixels FastGS's threshold is given in. Default is 1.0.

    Returns:
        A dict with ``"densify_score"`` [N] float (floored) and ``"prune_score"`` [N] float in [0, 1].

    Raises:
        ValueError: if ``view_losses`` does not have one value per view.
    """
    V = counts.shape[0]
    if view_losses.numel() != V:
        raise ValueError(f"counts has {V} views but view_losses has {view_losses.numel()} values")
    counts = counts.float()
    view_losses = view_losses.detach().float().reshape(V, 1).to(counts.device)
    densify_score = torch.div(counts.sum(dim=0) * pixel_scale, V, rounding_mode="floor")
    raw = (view_losses * counts).sum(dim=0)
    if raw.numel() == 0:
        return {"densify_score": densify_score, "prune_score": raw}
    lo = raw.min()
    prune_score = (raw - lo) / (raw.max() - lo).clamp_min(torch.finfo(raw.dtype).tiny)  # 0 when all raw are equal
    return {"densify_score": densify_score, "prune_score": prune_score}


@torch.no_grad()
def camera_proximity(
    means: Float[Tensor, "N 3"],
    centers: Float[Tensor, "C 3"],
    focus_distances: Float[Tensor, "C"],
) -> Float[Tensor, "N"]:
    """How close each Gaussian sits to the nearest camera, relative to how far that camera is from what it looks at:
    ``min_c |means[i] - centers[c]| / focus_distances[c]`` (0 at a camera centre, 1 at its focus distance).

    This is our own measure, not FastGS's: with no geometry from SfM, training views of an orbit can be fitted by
    Gaussians right in front of another camera, outside every training frustum (seen on beer_can, where they fog
    the test views between training views); nothing real lies that close to where the photographer stood.

    Args:
        means: Gaussian centres, world units. [N, 3]
        centers: camera centres (training cameras), world units. [C, 3]
        focus_distances: each camera's distance to the point the cameras look at
            (:func:`splat_core.data.init_points.focus_point`), world units, > 0. [C]

    Returns:
        The ratio, float32, on ``means``' device. [N]
    """
    centers = centers.to(means.device).float()
    dist = torch.cdist(means.float(), centers)  # [N, C]
    return (dist / focus_distances.to(means.device).float().clamp_min(1e-6)[None]).amin(dim=1)
