"""Which Gaussians the guidance phases make densify: the part of :class:`~splat_core.strategy.fastgs.FastGSStrategy`'s
densification that is new here (not in FastGS), as small pure functions on per-Gaussian masks.

VCD (FastGS's multi-view consistent densification) picks ``is_dupli`` / ``is_split``. Guidance then changes the
choice in one of two ways (``FastGSStrategy.guidance_grow_mode``):

- ``"add"``: up to a budget of the guided region's Gaussians with the highest gradient densify *beyond* VCD's picks
  (:func:`add_guided_grow`), so guidance adds Gaussians.
- ``"swap"``: the same picks, and the relaxed VCD threshold inside the region, then the whole choice is cut back to
  the number VCD picks without guidance (:func:`cap_to_count`), dropping picks outside the region first (lowest
  rank first). Guidance then moves densification into its regions without adding Gaussians.
"""

from typing import Dict, Literal, Optional, Tuple

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from splat_core.strategy.ops import top_k_mask

GrowMode = Literal["add", "swap"]
GUIDANCE_KEYS = ("densify", "prune", "grow", "spawn")


def guidance_mask(
    guidance: Optional[Dict[str, Tensor]], key: str, n: int, lo: float, hi: float, device: torch.device
) -> Optional[Float[Tensor, "N"]]:
    """``guidance[key]`` as a float [N] tensor on ``device`` clamped to [lo, hi], or None when absent.

    Raises:
        ValueError: on a key other than ``densify``, ``prune``, ``grow``, ``spawn``, or a mask whose length is not N.
    """
    if guidance is None:
        return None
    unknown = set(guidance) - set(GUIDANCE_KEYS)
    if unknown:
        expected = ", ".join(repr(k) for k in GUIDANCE_KEYS)
        raise ValueError(f"Unknown guidance keys {sorted(unknown)}; expected {expected}")
    if guidance.get(key) is None:
        return None
    value = guidance[key].detach().reshape(-1).float().clamp(lo, hi).to(device)
    if value.shape[0] != n:
        raise ValueError(f"guidance['{key}'] has {value.shape[0]} entries but there are {n} Gaussians")
    return value


def grow_rank(
    grads: Float[Tensor, "N"],
    abs_grads: Optional[Float[Tensor, "N"]],
    count: Float[Tensor, "N"],
    grow_grad2d: float,
    grow_grad2d_abs: float,
) -> Float[Tensor, "N"]:
    """Gradient rank of the guided choices: ``max(grad / grow_grad2d, absgrad / grow_grad2d_abs)`` (1 = at the
    densify gradient threshold), 0 for GSs with ``count == 0`` (not seen since the last refinement).

    Args:
        grads: [N] mean image-plane gradient norm (NDC units).
        abs_grads: [N] mean absolute gradient (AbsGS), or None without ``absgrad``.
        count: [N] steps each GS was visible since the last refinement.
        grow_grad2d, grow_grad2d_abs: the strategy's gradient thresholds.
    """
    rank = grads / max(grow_grad2d, 1e-12)
    if abs_grads is not None:
        rank = torch.maximum(rank, abs_grads / max(grow_grad2d_abs, 1e-12))
    return torch.where(count > 0, rank, torch.zeros_like(rank))


def add_guided_grow(
    rank: Float[Tensor, "N"],
    is_small: Bool[Tensor, "N"],
    is_dupli: Bool[Tensor, "N"],
    is_split: Bool[Tensor, "N"],
    inside: Bool[Tensor, "N"],
    budget: int,
) -> Tuple[Bool[Tensor, "N"], Bool[Tensor, "N"]]:
    """VCD's picks plus the (at most) ``budget`` Gaussians ``inside`` the guided region with the highest ``rank``
    that VCD did not pick, whatever their multi-view score: small ones duplicate, large ones split.

    Args:
        rank: [N] gradient rank (:func:`grow_rank`); only ``rank > 0`` (seen since the last refinement, with some
            gradient) can be picked.
        is_small: [N] max 3D scale at or below ``grow_scale3d * scene_scale`` (duplicate; else split).
        is_dupli, is_split: [N] VCD's picks.
        inside: [N] the guided region (``guidance["grow"] > 0.5``).
        budget: most Gaussians added.

    Returns:
        ``(is_dupli, is_split)`` [N] bool, new tensors.
    """
    eligible = inside & ~is_dupli & ~is_split & (rank > 0)
    chosen = top_k_mask(rank, eligible, budget)
    return is_dupli | (chosen & is_small), is_split | (chosen & ~is_small)


def cap_to_count(
    rank: Float[Tensor, "N"],
    is_dupli: Bool[Tensor, "N"],
    is_split: Bool[Tensor, "N"],
    inside: Bool[Tensor, "N"],
    count: int,
) -> Tuple[Bool[Tensor, "N"], Bool[Tensor, "N"]]:
    """At most ``count`` of the picks: those ``inside`` the guided region first, then by ``rank`` (highest kept).

    Args:
        rank: [N] gradient rank (:func:`grow_rank`).
        is_dupli, is_split: [N] picks (disjoint).
        inside: [N] the guided region.
        count: most picks kept (VCD's number without guidance for ``guidance_grow_mode="swap"``).

    Returns:
        ``(is_dupli, is_split)`` [N] bool; unchanged when there are at most ``count`` picks.
    """
    picked = is_dupli | is_split
    if int(picked.sum().item()) <= count:
        return is_dupli, is_split
    # inside the region outranks every rank outside it
    key = torch.where(inside, rank.float() + rank.float().max().clamp_min(0) + 1.0, rank.float())
    keep = top_k_mask(key, picked, max(count, 0))
    return is_dupli & keep, is_split & keep


__all__ = ["GUIDANCE_KEYS", "GrowMode", "add_guided_grow", "cap_to_count", "grow_rank", "guidance_mask"]
