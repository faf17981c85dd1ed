"""FastGS's multi-view scores for the model's current Gaussians: render sampled training views, compare them with the
ground truth and turn each Gaussian's high-error pixels into the ``view_scores`` that
:meth:`splat_core.strategy.fastgs.FastGSStrategy.step_post_backward` takes.

Reference: FastGS, arXiv:2511.04283, ``train.py`` and ``utils/fast_utils.py`` (``compute_gaussian_score_fastgs``) in
github.com/fastgs/FastGS. The pure per-view arithmetic lives in :mod:`splat_core.strategy.view_scores`; this module
does the rendering side, with the model's own rasterisation (:meth:`splat_core.model.SplatModel._rasterize_projected`)
so the scores see the Gaussians exactly as training does. :meth:`splat_core.model.SplatModel.score_views` is the entry
the strategy hook uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict, List, Tuple

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.models.splatfacto import get_viewmat, resize_image
from torch import Tensor

from splat_core.data.init_points import camera_focus
from splat_core.rendering.contributions import count_contributions
from splat_core.rendering.footprint import count_in_footprints
from splat_core.ssim import FastSSIM
from splat_core.strategy import high_error_masks, view_scores_from_counts

if TYPE_CHECKING:  # the model imports this module
    from splat_core.model import SplatModel, TrainViews

SCORE_PIXELS_PER_RENDER = 1 << 24
"""At most this many pixels (all cameras together) per rasterization of FastGS's score views (10 views of 1080p
render in two calls), which bounds the memory of one batched render."""


@torch.no_grad()
def score_views(model: SplatModel, views: TrainViews, num_views: int) -> Dict[str, Float[Tensor, " N"]]:
    """FastGS multi-view scores from ``num_views`` random training views (drawn with torch's global generator).

    The views are rendered at the strategy's ``score_resolution`` (full training resolution by default, the
    resolution FastGS's ``densify_min_count`` is given in), views of one size in one multi-camera rasterization
    (at most :data:`SCORE_PIXELS_PER_RENDER` pixels each), over splatfacto's eval background. Per view: the L1
    error map (mean over RGB) against the ground truth, thresholded by
    :func:`~splat_core.strategy.view_scores.high_error_masks`; its loss 0.8 L1 + 0.2 (1 - SSIM), SSIM per view by
    :class:`~splat_core.ssim.FastSSIM` (pytorch_msssim's values; views under 11 pixels a side, SSIM's window, use L1
    alone); each Gaussian's high-error pixels counted by the strategy's ``score_footprint`` (blended into,
    :func:`~splat_core.rendering.contributions.count_contributions`, or in its box,
    :func:`~splat_core.rendering.footprint.count_in_footprints`); then
    :func:`~splat_core.strategy.view_scores.view_scores_from_counts`.

    Args:
        model: The model, its ``strategy`` a :class:`~splat_core.strategy.fastgs.FastGSStrategy`.
        views: The training cameras and cached images (:class:`splat_core.model.TrainViews`).
        num_views: Number of views sampled (at most all of them).

    Returns:
        ``{"densify_score": [N], "prune_score": [N]}`` float32 for the current Gaussians, on the model's device, and,
        when the strategy's ``prune_near_camera`` is on, every training camera's ``"camera_centers"`` [C, 3] and
        ``"camera_focus_distances"`` [C] (:func:`splat_core.data.init_points.camera_focus`).
    """
    strategy = model.strategy
    scale = 1 if strategy.score_resolution == "full" else int(model._get_downscale_factor())
    background = model.background_color.to(model.device)
    ssim = FastSSIM(data_range=1.0, size_average=False)  # one value per view [V]
    by_size: Dict[Tuple[int, int], List[int]] = {}
    for i in torch.randperm(len(views.images))[:num_views].tolist():
        size = (int(views.cameras.width[i]), int(views.cameras.height[i]))
        by_size.setdefault(size, []).append(i)
    counts, losses = [], []
    for (width, height), indices in by_size.items():
        per_render = max(1, SCORE_PIXELS_PER_RENDER // (width * height))
        for first in range(0, len(indices), per_render):
            batch = indices[first : first + per_render]
            rgb, info = render_score_views(model, views.cameras[torch.tensor(batch)], scale)  # [V, h, w, 3]
            gt = torch.stack([score_gt(model, views.images[i]["image"], scale, background) for i in batch])
            error = (rgb - gt).abs().mean(dim=-1)  # [V, h, w]
            loss = error.flatten(1).mean(dim=1)  # [V]
            if min(error.shape[1:]) >= 11:
                loss = 0.8 * loss + 0.2 * (1 - ssim(gt.permute(0, 3, 1, 2), rgb.permute(0, 3, 1, 2)))
            masks = high_error_masks(error, strategy.high_error_thresh)
            if strategy.score_footprint == "blended":
                counts.append(count_contributions(info, masks))
            else:
                counts.append(count_in_footprints(info["means2d"], info["radii"], masks))
            losses.append(loss)
    pixel_scale = float(scale * scale) if strategy.score_resolution == "training" else 1.0
    scores = view_scores_from_counts(torch.cat(counts), torch.cat(losses), pixel_scale=pixel_scale)
    if strategy.prune_near_camera > 0:  # the cameras, for the strategy's near-camera prune after its growth
        _, centers, distances = camera_focus(views.cameras.camera_to_worlds.cpu())
        scores["camera_centers"] = centers.to(model.device)
        scores["camera_focus_distances"] = distances.to(model.device)
    return scores


def render_score_views(model: SplatModel, cameras: Cameras, scale: int) -> Tuple[Float[Tensor, "C H W 3"], Dict]:
    """Render C training cameras of one size, downscaled by ``scale``, in one rasterization (no camera optimiser,
    gsplat's default ``absgrad=False``: this render feeds no gradient to the strategy).

    Args:
        model: The model whose Gaussians are rendered (SH colours at its current degree).
        cameras: C cameras of one size; copied to the model's device, the caller's object is left unchanged. [C]
        scale: Integer downscale factor of the camera size (1: full size), as ``Cameras.rescale_output_resolution``.

    Returns:
        ``rgb`` [C, H, W, 3] in [0, 1] over the model's eval background, and gsplat's ``info`` (``means2d``,
        ``radii``, ... indexed [C, N]).
    """
    cameras = cameras.to(model.device)
    if scale > 1:
        cameras.rescale_output_resolution(1 / scale)
    params = {k: model.gauss_params[k] for k in model.gauss_params.keys()}
    render, alpha, info = model._rasterize_projected(
        params,
        get_viewmat(cameras.camera_to_worlds).to(model.device),
        cameras.get_intrinsics_matrices().to(model.device),
        int(cameras.width[0, 0]),
        int(cameras.height[0, 0]),
        "RGB",
    )
    rgb = (render[..., :3] + (1 - alpha) * model.background_color.to(model.device)).clamp(0, 1)
    return rgb, info


def score_gt(model: SplatModel, image: Tensor, scale: int, background: Float[Tensor, " 3"]) -> Float[Tensor, "h w 3"]:
    """A cached training image as the score renders see it.

    Args:
        model: Gives the device and splatfacto's ``composite_with_background``.
        image: The datamanager's cached image, uint8 (0-255) or float (0-1), RGB or RGBA. [H, W, 3|4]
        scale: Integer downscale factor, applied as splatfacto's ``get_gt_img`` does (``resize_image``).
        background: RGB in [0, 1] that an alpha channel is composited over. [3]

    Returns:
        float32 RGB in [0, 1] on the model's device. [H / scale, W / scale, 3]
    """
    image = image.to(model.device)
    image = image.float() / 255.0 if image.dtype == torch.uint8 else image.float()
    if scale > 1:
        image = resize_image(image, scale)
    return model.composite_with_background(image, background)


__all__ = ["SCORE_PIXELS_PER_RENDER", "render_score_views", "score_gt", "score_views"]
