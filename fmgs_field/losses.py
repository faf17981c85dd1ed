"""FMGS feature-distillation losses as pure functions.

Each follows the official code (googlestaging/foundation-model-embedded-3dgs, ``myutils/loss_utils.py``, ``train.py``):

- ``clip_huber_loss``: Huber (delta 1.25) per channel, summed over channels, averaged over pixels (``clip_loss``).
- ``dino_mse_loss``: squared error summed over channels, averaged over pixels (``dino_loss``).
- ``pixel_alignment_loss``: L1 between the 8-neighbour cosine maps of two feature maps, the reference detached
  (``dotp_sim``; reflect padding, norm products clamped at 1e-6).
- ``total_feature_loss``: ``(1 - l) * dino + l * clip + w * align`` with ``l = 0.2`` and ``w = 0.01``
  (README stage-2/3 commands: ``--lambda_clip 0.2``, ``--dotp_simloss_w 0.01``).

Pixel means use ``nanmean``, so pixels whose target is NaN (e.g. masked out) are ignored, as upstream.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

CLIP_HUBER_DELTA = 1.25
"""Huber threshold of the CLIP loss (``clip_loss`` in FMGS's ``loss_utils.py``)."""
CLIP_LOSS_WEIGHT = 0.2
"""``l`` in ``(1 - l) * DINO + l * CLIP`` (FMGS README, ``--lambda_clip 0.2``)."""
PIXEL_ALIGNMENT_WEIGHT = 0.01
"""Weight of the pixel-alignment loss (FMGS README, ``--dotp_simloss_w 0.01``)."""


def _nanmean_or_zero(per_pixel: Tensor) -> Tensor:  # [...] -> []
    loss = per_pixel.nanmean()
    return torch.nan_to_num(loss, nan=0.0)


def clip_huber_loss(
    pred: Float[Tensor, "*bs D"],
    target: Float[Tensor, "*bs D"],
    delta: float = CLIP_HUBER_DELTA,
) -> Float[Tensor, ""]:
    """Huber loss on CLIP features: per-channel Huber, summed over channels, mean over pixels.

    Per channel, with ``e = pred - target``: ``0.5 e^2`` if ``|e| <= delta`` else ``delta (|e| - 0.5 delta)``.

    Args:
        pred: Rendered CLIP features. [..., D]
        target: Teacher CLIP features (hybrid map) at the same pixels. [..., D]
        delta: Huber threshold.

    Returns:
        Scalar loss; 0 when every pixel is NaN. []
    """
    per_channel = F.huber_loss(pred, target, delta=delta, reduction="none")
    return _nanmean_or_zero(per_channel.sum(dim=-1))


def dino_mse_loss(
    pred: Float[Tensor, "*bs D"],
    target: Float[Tensor, "*bs D"],
) -> Float[Tensor, ""]:
    """Squared error on DINO features, summed over channels, mean over pixels.

    Args:
        pred: Rendered DINO features. [..., D]
        target: Teacher DINO features at the same pixels. [..., D]

    Returns:
        Scalar loss; 0 when every pixel is NaN. []
    """
    per_channel = F.mse_loss(pred, target, reduction="none")
    return _nanmean_or_zero(per_channel.sum(dim=-1))


def neighbour_cosine_maps(
    features: Float[Tensor, "H W D"],
    window: int = 3,
    eps: float = 1e-6,
) -> Float[Tensor, "H W K"]:
    """Cosine similarity of every pixel with each of its ``K = window**2 - 1`` neighbours.

    Borders use reflect padding (``F.pad(mode="reflect")``). Neighbours are ordered row-major over offsets
    ``(di, dj)`` in ``[-r, r]^2`` without ``(0, 0)``, ``r = window // 2``. The denominator is
    ``max(|f(p)| |f(q)|, eps)``.

    Args:
        features: A feature map. [H, W, D]
        window: Odd window size (3 in FMGS).
        eps: Lower bound of the norm product.

    Returns:
        Cosine maps. [H, W, window**2 - 1]
    """
    r = window // 2
    height, width = features.shape[:2]
    fmap = features.permute(2, 0, 1)  # [D, H, W]
    padded = F.pad(fmap[None], (r, r, r, r), mode="reflect")[0]  # [D, H+2r, W+2r]
    norm = fmap.norm(dim=0)  # [H, W]
    maps = []
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            if di == 0 and dj == 0:
                continue
            nb = padded[:, r + di : r + di + height, r + dj : r + dj + width]  # [D, H, W]
            denom = (norm * nb.norm(dim=0)).clamp_min(eps)
            maps.append((fmap * nb).sum(dim=0) / denom)
    return torch.stack(maps, dim=-1)


def pixel_alignment_loss(
    rendered_clip: Float[Tensor, "H W Dc"],
    dino: Float[Tensor, "H W Dd"],
    window: int = 3,
) -> Float[Tensor, ""]:
    """FMGS pixel-alignment loss: mean L1 between the neighbour-cosine maps of CLIP and (detached) DINO features.

    The DINO map is detached, so the gradient only sharpens the CLIP features' boundaries towards DINO's. FMGS's
    ``train.py`` passes its *rendered* DINO map here (``dotp_sim(rendered_clip, rendered_dino)``); a teacher DINO map
    resized to the same resolution works too.

    Args:
        rendered_clip: Rendered CLIP feature map. [H, W, Dc]
        dino: DINO feature map at the same resolution (rendered or teacher). [H, W, Dd]
        window: Neighbourhood size (3: 8 neighbours).

    Returns:
        Scalar loss, ``mean |cos_clip - cos_dino|`` over pixels and neighbours. []
    """
    if rendered_clip.shape[:2] != dino.shape[:2]:
        raise ValueError(f"spatial sizes differ: {tuple(rendered_clip.shape[:2])} vs {tuple(dino.shape[:2])}")
    ref = neighbour_cosine_maps(dino.detach(), window).detach()
    return (neighbour_cosine_maps(rendered_clip, window) - ref).abs().mean()


def total_feature_loss(
    clip_loss: Float[Tensor, ""],
    dino_loss: Float[Tensor, ""],
    alignment_loss: Optional[Float[Tensor, ""]] = None,
    clip_weight: float = CLIP_LOSS_WEIGHT,
    alignment_weight: float = PIXEL_ALIGNMENT_WEIGHT,
) -> Float[Tensor, ""]:
    """``(1 - clip_weight) * dino_loss + clip_weight * clip_loss + alignment_weight * alignment_loss``.

    Args:
        clip_loss: From :func:`clip_huber_loss`. []
        dino_loss: From :func:`dino_mse_loss`. []
        alignment_loss: From :func:`pixel_alignment_loss`, or None to leave the term out. []
        clip_weight: ``l`` (0.2).
        alignment_weight: Weight of the alignment term (0.01); 0 disables it.

    Returns:
        Scalar loss. []
    """
    loss = (1.0 - clip_weight) * dino_loss + clip_weight * clip_loss
    if alignment_loss is not None and alignment_weight > 0:
        loss = loss + alignment_weight * alignment_loss
    return loss


def feature_loss_dict(
    rendered_clip: Float[Tensor, "H W Dc"],
    rendered_dino: Float[Tensor, "H W Dd"],
    target_clip: Float[Tensor, "H W Dc"],
    target_dino: Float[Tensor, "H W Dd"],
    clip_weight: float = CLIP_LOSS_WEIGHT,
    alignment_weight: float = PIXEL_ALIGNMENT_WEIGHT,
) -> Dict[str, Tensor]:
    """The weighted FMGS feature terms for one view, ready for a nerfstudio ``get_loss_dict``.

    nerfstudio's trainer sums the values of the loss dict, so the terms come already weighted and add up to
    :func:`total_feature_loss`. The alignment reference is the rendered DINO map, as in FMGS's ``train.py``.

    Args:
        rendered_clip: Rendered CLIP features. [H, W, Dc]
        rendered_dino: Rendered DINO features. [H, W, Dd]
        target_clip: Teacher hybrid CLIP map resized to [H, W]. [H, W, Dc]
        target_dino: Teacher DINO map resized to [H, W]. [H, W, Dd]
        clip_weight: ``l`` (0.2).
        alignment_weight: Weight of the alignment term (0.01); 0 leaves the term out.

    Returns:
        ``{"clip_loss": l * clip, "dino_loss": (1 - l) * dino, "pixel_alignment_loss": w * align}`` (the last only
        when ``alignment_weight > 0``), scalars.
    """
    out = {
        "clip_loss": clip_weight * clip_huber_loss(rendered_clip, target_clip),
        "dino_loss": (1.0 - clip_weight) * dino_mse_loss(rendered_dino, target_dino),
    }
    if alignment_weight > 0:
        out["pixel_alignment_loss"] = alignment_weight * pixel_alignment_loss(rendered_clip, rendered_dino)
    return out
