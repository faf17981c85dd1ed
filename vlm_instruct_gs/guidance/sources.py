"""The guidance source interface, its errors, and the factory that builds the configured source.

A source turns images into phase-specific boxes (:class:`GuidanceSource`); the VLM backends
(:mod:`~vlm_instruct_gs.guidance.vlm_backend`), the weights-free image-evidence guide
(:mod:`~vlm_instruct_gs.guidance.image_evidence`) and the boxes file (:mod:`~vlm_instruct_gs.guidance.boxes_file`)
implement it, so training code talks to this interface only. What the boxes mean for densification is
:func:`~vlm_instruct_gs.guidance.mask_rule.region_masks` (:meth:`GuidanceSource.view_regions`; a boxes file adds its
masks), and which training views a query may see is :meth:`GuidanceSource.query_candidates`.

This module imports neither source, so both can import it; :func:`build_guidance_source` reaches them through their
configs' ``setup()`` and reads a failure from the typed :class:`GuidanceSourceError`, never from its text.
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Union

from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import FLOATER_KEYWORDS, DetailTarget, PhaseRegions, region_masks

if TYPE_CHECKING:  # the configs import this module; only their types are needed here
    from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuideConfig
    from vlm_instruct_gs.guidance.vlm_backend import VLMBackendConfig

DOWNLOAD_HINT = (
    "to get weights, run on a machine with internet `hf download Qwen/Qwen3-VL-2B-Instruct "
    "--local-dir Qwen3-VL-2B-Instruct` (pip install huggingface_hub) and copy that folder here"
)
"""How to get the default VLM's weights onto an offline machine (used in every load error)."""


class GuidanceSourceError(RuntimeError):
    """A source cannot be built (bad model path, unreachable server) or a remote query failed.

    Args:
        message (str): the full message, naming the config field at fault.
        reason (str | None): the cause alone, in one line (e.g. ``"no such directory"``), for messages that name
            the field in another way (the ns-train flag). Default is the message.
    """

    def __init__(self, message: str, reason: Optional[str] = None) -> None:
        super().__init__(message)
        self.reason = reason if reason is not None else message


class GuidanceSetupError(SystemExit):
    """The guidance source cannot be built: exits with status 1 and this one line (no traceback) when uncaught."""

    def __init__(self, message: str):
        super().__init__(f"error: {' '.join(message.split())}")


class GuidanceSource(abc.ABC):
    """Anything that turns images into phase-specific boxes: the VLM backends and the image-evidence guide."""

    @abc.abstractmethod
    def boxes(self, phase: str, images: Sequence[Any], **evidence: Any) -> List[List[Box]]:
        """One list of normalised 0-1000 boxes per image for ``phase``.

        Args:
            phase: ``detail``, ``subject`` or ``artifacts``.
            images: ``[H, W, 3]`` uint8 (0-255) or float (0-1) tensors/arrays, or PIL images.
            evidence: optional extra inputs, one entry per image (``reference``, ``error_map``, ``depth``,
                ``valid``); sources ignore what they do not use.
        """

    def query_candidates(self, phase: str, image_names: Sequence[str]) -> Optional[List[int]]:
        """The training views a ``phase`` query may ask about (indices into ``image_names``), or None: any view,
        and novel views for ``artifacts``. A source that knows regions per training image names its own."""
        return None

    def view_regions(
        self,
        phase: str,
        boxes: Sequence[Box],
        image_name: str,
        height: int,
        width: int,
        detail_target: DetailTarget = "boxes",
        floater_keywords: Sequence[str] = FLOATER_KEYWORDS,
    ) -> PhaseRegions:
        """The regions one view's answer (``boxes``; the view's training image ``image_name``) asks for at
        ``height x width``: :func:`~vlm_instruct_gs.guidance.mask_rule.region_masks` of the boxes, unless the source
        knows more than boxes (a boxes file's masks)."""
        return region_masks(phase, boxes, height, width, detail_target, floater_keywords)


def build_guidance_source(
    source: str,
    vlm: "VLMBackendConfig",
    image_evidence: "ImageEvidenceGuideConfig",
    boxes_file: Optional[Union[str, Path]] = None,
    floater_keywords: Optional[Sequence[str]] = None,
) -> Optional[GuidanceSource]:
    """The configured guidance source, loaded now (the VLM's weights included), or None for ``"none"``.

    Args:
        source: ``"vlm"``, ``"image-evidence"``, ``"boxes"`` or ``"none"`` (``GuidanceConfig.source``).
        vlm: the VLM backend config (``--pipeline.vlm.*``).
        image_evidence: the weights-free source's config (``--pipeline.image-evidence.*``).
        boxes_file: the JSON file of the ``boxes`` source (``--pipeline.guidance.boxes-file``).
        floater_keywords: artefact labels naming floaters, for the ``boxes`` source. Default is the mask rule's.

    Raises:
        GuidanceSetupError: the VLM cannot be loaded (one line naming --pipeline.vlm.model-path, how to get the
            weights and how to train without them), the boxes file is missing or invalid, or an unknown source.
    """
    if source == "none":
        return None
    if source == "image-evidence":
        return image_evidence.setup()
    if source == "boxes":
        from vlm_instruct_gs.guidance.boxes_file import BoxesFileSource  # it imports this module

        if boxes_file is None:
            raise GuidanceSetupError("--pipeline.guidance.source boxes needs --pipeline.guidance.boxes-file FILE")
        return BoxesFileSource(Path(boxes_file), *(() if floater_keywords is None else (floater_keywords,)))
    if source != "vlm":
        raise GuidanceSetupError(f"unknown guidance source {source!r}; expected vlm, image-evidence, boxes or none")
    try:
        return vlm.setup()
    except (GuidanceSourceError, ValueError) as err:
        reason = err.reason if isinstance(err, GuidanceSourceError) else str(err)
        raise GuidanceSetupError(
            f"the VLM guidance source could not load --pipeline.vlm.model-path {vlm.model_path!r} ({reason}); "
            f"{DOWNLOAD_HINT}, then pass --pipeline.vlm.model-path <that folder>. Or train without a VLM: "
            "--pipeline.guidance.source image-evidence (weights-free) or --pipeline.guidance.source none"
        ) from err


__all__ = [
    "DOWNLOAD_HINT",
    "GuidanceSetupError",
    "GuidanceSource",
    "GuidanceSourceError",
    "build_guidance_source",
]
