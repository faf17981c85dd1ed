"""The one rule of which pixels a phase's boxes ask to densify, and where floaters are searched for pruning.

Training computes each answer's regions once with :func:`region_masks` (:mod:`~vlm_instruct_gs.guidance.answering`,
through the source's ``view_regions``; the boxes-file source adds its mask images,
:mod:`~vlm_instruct_gs.guidance.boxes_file`), the per-query records and TensorBoard overlays
(:mod:`~vlm_instruct_gs.guidance.records`) show those regions, and ``vlm-gs-guide --out-mask``
(:mod:`~vlm_instruct_gs.guidance.cli`) calls it too, so the mask a user tunes a prompt with is the mask training
applies.

- ``detail``: densify the union of the boxes (``detail_target="boxes"``) or its complement (``"complement"``, the
  public reference implementation's choice).
- ``subject``: densify the complement of the subject box(es): the background.
- ``artifacts``: densify the union of the boxes whose label does not name a floater (:func:`is_floater`); the union of
  all boxes is the floater search region, where Gaussians in front of the rendered surface are pruned.

No boxes means no guidance, never "everything": an empty answer does not densify the whole complement.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, Optional, Sequence, Tuple

import torch
from jaxtyping import Bool
from torch import Tensor

from vlm_instruct_gs.guidance.boxes import Box, boxes_to_mask
from vlm_instruct_gs.guidance.phases import check_phase

DetailTarget = Literal["boxes", "complement"]

FLOATER_KEYWORDS: Tuple[str, ...] = ("float", "blob", "needle", "spik", "ghost", "doubl", "haze", "fog", "speck")
"""Label substrings that make an artefact box a floater region (pruned, not densified)."""


class PhaseRegions(NamedTuple):
    """What one view's boxes ask for, at one pixel size (CPU bool masks, None where the phase gives nothing).

    Args:
        densify: pixels whose Gaussians get densify guidance. [H, W] bool or None
        floaters: pixels searched for floaters to prune (``artifacts`` only). [H, W] bool or None
    """

    densify: Optional[Bool[Tensor, "H W"]]
    floaters: Optional[Bool[Tensor, "H W"]]

    @property
    def size(self) -> Optional[Tuple[int, int]]:
        """``(H, W)`` of the masks, or None when there is none."""
        mask = self.densify if self.densify is not None else self.floaters
        return None if mask is None else (int(mask.shape[0]), int(mask.shape[1]))

    def densify_or_empty(self, height: int, width: int) -> Bool[Tensor, "H W"]:
        """The densify region, or an all-False ``[height, width]`` mask when there is none (for writing a PNG)."""
        return self.densify if self.densify is not None else torch.zeros(height, width, dtype=torch.bool)


def is_floater(box: Box, keywords: Sequence[str]) -> bool:
    """Whether a box's label names a floater-type defect (case-insensitive substring match with any keyword)."""
    label = box.label.lower()
    return any(k.lower() in label for k in keywords if k)


def region_masks(
    phase: str,
    boxes: Sequence[Box],
    height: int,
    width: int,
    detail_target: DetailTarget = "boxes",
    floater_keywords: Sequence[str] = FLOATER_KEYWORDS,
    masks: Optional[Bool[Tensor, "H W"]] = None,
    subject_is_background: bool = False,
) -> PhaseRegions:
    """Pixel regions a phase's boxes ask to densify and to search for floaters, at ``height x width`` (CPU).

    Args:
        phase: ``detail``, ``subject`` or ``artifacts``.
        boxes: normalised 0-1000 boxes (:class:`~vlm_instruct_gs.guidance.boxes.Box`); pixel ranges follow
            :meth:`Box.to_pixels`.
        height: mask height H in pixels.
        width: mask width W in pixels.
        detail_target: ``"boxes"`` or ``"complement"`` for ``detail``. Default is "boxes".
        floater_keywords: labels of ``artifacts`` boxes containing any of these are floaters. Default is
            :data:`FLOATER_KEYWORDS` (``GuidanceConfig.floater_keywords``' default).
        masks: pixels selected beside the boxes (a boxes file's mask images), joined to their union; for
            ``artifacts`` they are under-reconstructed, not floaters. [H, W] bool or None. Default is None.
        subject_is_background: ``subject`` boxes and masks already are the background (a boxes file's
            ``background`` entry), not its complement. Default is False.

    Returns:
        :class:`PhaseRegions` ``(densify [H, W] bool or None, floaters [H, W] bool or None)``.

    Raises:
        ValueError: unknown phase or ``detail_target``, or a non-positive size.
    """
    check_phase(phase)
    if detail_target not in ("boxes", "complement"):
        raise ValueError(f"detail_target must be 'boxes' or 'complement', got {detail_target!r}")
    if not boxes and masks is None:
        return PhaseRegions(None, None)
    union = boxes_to_mask(boxes, height, width)
    if masks is not None:
        union = union | masks
    if phase == "detail":
        return PhaseRegions(union if detail_target == "boxes" else ~union, None)
    if phase == "subject":
        return PhaseRegions(union if subject_is_background else ~union, None)
    under = [b for b in boxes if not is_floater(b, floater_keywords)]
    densify = boxes_to_mask(under, height, width) if under else None
    if masks is not None:
        densify = masks if densify is None else densify | masks
        densify = densify if bool(densify.any()) else None
    return PhaseRegions(densify, union)


__all__ = ["FLOATER_KEYWORDS", "DetailTarget", "PhaseRegions", "is_floater", "region_masks"]
