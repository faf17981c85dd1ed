"""The ``boxes`` guidance source: regions per training image and phase, read from a JSON file.

Lets a user steer the phases by hand (or with any detector or segmenter) and lets tests drive the mechanism on known
regions. ``--pipeline.guidance.source boxes --pipeline.guidance.boxes-file F`` with ``F``::

    {"images": {
        "frame_00001.jpg": {
            "background": [[0, 0, 1000, 250], [0, 250, 180, 1000]],
            "detail": {"boxes": [{"bbox_2d": [400, 300, 600, 520], "label": "keyboard"}], "masks": ["m/01.png"]},
            "artifacts": [{"bbox_2d": [700, 100, 900, 300], "label": "floating blobs"}]
        }
    }}

- Keys of ``images`` are training image file names (the name alone, e.g. ``frame_00001.jpg``, as in the
  dataparser's ``image_filenames``).
- Phase keys: ``detail`` (phase 1: densify these regions, or their complement with
  ``--pipeline.guidance.detail-target complement``), ``background`` (phase 2: the background region itself, densified
  and filled with new Gaussians), ``subject`` (phase 2 with a VLM answer's meaning: the subject; its complement is the
  background), ``artifacts`` (phase 3: boxes labelled as floaters (:data:`~vlm_instruct_gs.guidance.mask_rule.
  FLOATER_KEYWORDS`) are searched for floaters, the others are under-reconstructed regions).
- A phase entry is a list of boxes, or ``{"boxes": [...], "masks": [...]}``. Boxes are the VLM answers' format:
  ``[x1, y1, x2, y2]`` or ``{"bbox_2d": [x1, y1, x2, y2], "label": "..."}``, normalised to 0-1000 of the image width
  (x, right) and height (y, down), origin at the top-left corner. Masks are image files (paths relative to the JSON
  file), any size (resized, nearest), non-zero pixels selected; a mask adds to the boxes' region (for ``artifacts``,
  to the under-reconstructed region).

Every error (missing or unreadable file, invalid JSON or entry, unknown phase, missing mask, image names that are not
in the scene) is one :class:`~vlm_instruct_gs.guidance.sources.GuidanceSetupError` line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool
from PIL import Image
from torch import Tensor

from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import FLOATER_KEYWORDS, DetailTarget, PhaseRegions, region_masks
from vlm_instruct_gs.guidance.sources import GuidanceSetupError, GuidanceSource

FILE_PHASES: Dict[str, str] = {"detail": "detail", "background": "subject", "subject": "subject",
                               "artifacts": "artifacts"}
"""Phase keys of a boxes file and the guidance phase each belongs to."""


@dataclass(frozen=True)
class FileRegion:
    """One phase entry of one image: boxes (normalised 0-1000) and mask images (bool, their own size)."""

    key: str
    boxes: Tuple[Box, ...]
    masks: Tuple[Bool[Tensor, "h w"], ...]


def _fail(path: Path, why: str) -> GuidanceSetupError:
    return GuidanceSetupError(f"--pipeline.guidance.boxes-file {path}: {why}")


def _box(path: Path, where: str, value: Any) -> Box:
    label = ""
    if isinstance(value, dict):
        label, value = str(value.get("label", "")), value.get("bbox_2d")
    if not (isinstance(value, (list, tuple)) and len(value) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise _fail(path, f"{where}: a box is [x1, y1, x2, y2] or {{\"bbox_2d\": [...], \"label\": ...}} "
                          f"(0-1000), got {json.dumps(value)[:80]}")
    if not all(0 <= v <= 1000 for v in value) or value[2] <= value[0] or value[3] <= value[1]:
        raise _fail(path, f"{where}: box {list(value)} needs 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 1000")
    return Box(*(float(v) for v in value), label=label)


def _mask(path: Path, where: str, name: Any) -> Bool[Tensor, "h w"]:
    if not isinstance(name, str):
        raise _fail(path, f"{where}: a mask is an image path, got {json.dumps(name)[:80]}")
    file = (path.parent / name).resolve()
    try:
        with Image.open(file) as image:
            return torch.from_numpy(np.asarray(image.convert("L")) > 0)
    except (OSError, ValueError) as err:
        raise _fail(path, f"{where}: mask {file} cannot be read ({type(err).__name__}: {err})") from err


def _region(path: Path, image: str, key: str, entry: Any) -> FileRegion:
    where = f"images[{image!r}][{key!r}]"
    if isinstance(entry, dict):
        unknown = set(entry) - {"boxes", "masks"}
        if unknown:
            raise _fail(path, f"{where}: unknown keys {sorted(unknown)}; expected 'boxes' and/or 'masks'")
        boxes, masks = entry.get("boxes", []), entry.get("masks", [])
    else:
        boxes, masks = entry, []
    if not isinstance(boxes, list) or not isinstance(masks, list):
        raise _fail(path, f"{where}: expected a list of boxes or {{\"boxes\": [...], \"masks\": [...]}}")
    return FileRegion(key, tuple(_box(path, where, b) for b in boxes), tuple(_mask(path, where, m) for m in masks))


def load_boxes_file(path: Path) -> Dict[str, Dict[str, FileRegion]]:
    """``{image file name: {guidance phase: FileRegion}}`` from a boxes file (see the module docstring).

    Raises:
        GuidanceSetupError: missing or unreadable file, invalid JSON, a malformed entry or box, an unknown phase key,
            an unreadable mask, or both ``background`` and ``subject`` for one image.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise _fail(path, f"cannot be read ({err.strerror or err})") from err
    except ValueError as err:
        raise _fail(path, f"is not valid JSON ({err})") from err
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict) or not images:
        raise _fail(path, 'expected {"images": {"<image file name>": {"<phase>": [boxes]}}} with at least one image')
    out: Dict[str, Dict[str, FileRegion]] = {}
    for image, phases in images.items():
        if not isinstance(phases, dict):
            raise _fail(path, f"images[{image!r}]: expected {{\"<phase>\": [boxes]}}")
        unknown = set(phases) - set(FILE_PHASES)
        if unknown:
            raise _fail(path, f"images[{image!r}]: unknown phase keys {sorted(unknown)}; expected {list(FILE_PHASES)}")
        if "background" in phases and "subject" in phases:
            raise _fail(path, f"images[{image!r}]: give 'background' or 'subject' (its complement), not both")
        out[Path(image).name] = {FILE_PHASES[k]: _region(path, image, k, v) for k, v in phases.items()}
    return out


class BoxesFileSource(GuidanceSource):
    """Regions per training image and phase from a boxes file (module docstring); the images are not looked at.

    Args:
        path (Path): the boxes file.
        floater_keywords (Sequence[str]): artefact labels naming floaters. Default is :data:`FLOATER_KEYWORDS`.

    Raises:
        GuidanceSetupError: see :func:`load_boxes_file`.
    """

    def __init__(self, path: Path, floater_keywords: Sequence[str] = FLOATER_KEYWORDS) -> None:
        self.path = Path(path)
        self.floater_keywords = tuple(floater_keywords)
        self.entries = load_boxes_file(self.path)

    def check_image_names(self, train_names: Iterable[str], other_names: Iterable[str] = ()) -> None:
        """Raise :class:`GuidanceSetupError` when the file names images that are not in the scene (one line listing
        the first few and some training names); names of held-out images are allowed (never queried)."""
        train = {Path(n).name for n in train_names}
        unknown = sorted(set(self.entries) - train - {Path(n).name for n in other_names})
        if unknown:
            raise _fail(self.path, f"{len(unknown)} image name(s) not in the scene: {', '.join(unknown[:3])}"
                                   + (" ..." if len(unknown) > 3 else "")
                                   + f"; training images are e.g. {', '.join(sorted(train)[:3])}")

    def names_for(self, phase: str) -> List[str]:
        """Image names with an entry for ``phase`` (sorted)."""
        return sorted(n for n, phases in self.entries.items() if phase in phases)

    def boxes(self, phase: str, images: Sequence[Any], image_names: Optional[Sequence[str]] = None,
              **unused: Any) -> List[List[Box]]:
        """The file's boxes of ``phase`` for each image (by ``image_names``; none for an unnamed image)."""
        names = list(image_names) if image_names is not None else [""] * len(images)
        return [list(self._entry(phase, n).boxes) if self._entry(phase, n) else [] for n in names]

    def has_region(self, phase: str, image_name: str) -> bool:
        """Whether the file gives ``image_name`` a region (boxes or masks) for ``phase``."""
        entry = self._entry(phase, image_name)
        return entry is not None and bool(entry.boxes or entry.masks)

    def query_candidates(self, phase: str, image_names: Sequence[str]) -> Optional[List[int]]:
        """The training views the file gives a region for ``phase`` (only those are queried; never novel views)."""
        return [i for i, n in enumerate(image_names) if self.has_region(phase, n)]

    def view_regions(self, phase: str, boxes: Sequence[Box], image_name: str, height: int, width: int,
                     detail_target: DetailTarget = "boxes", floater_keywords: Sequence[str] = ()) -> PhaseRegions:
        """:meth:`regions` of ``image_name`` (the file's masks and ``background`` entries are not boxes alone); the
        answer's ``boxes`` are the file's and ``floater_keywords`` were given at construction."""
        return self.regions(phase, image_name, height, width, detail_target)

    def regions(self, phase: str, image_name: str, height: int, width: int,
                detail_target: DetailTarget = "boxes") -> PhaseRegions:
        """The region of ``image_name`` for ``phase`` at ``height x width`` (CPU bool masks; None where none).

        :func:`~vlm_instruct_gs.guidance.mask_rule.region_masks` of the entry's boxes and masks: ``detail``, boxes and
        masks (or their complement); ``subject``, the ``background`` entry as given, or the complement of a
        ``subject`` entry; ``artifacts``, non-floater boxes and masks are densified, all of them searched for
        floaters.
        """
        entry = self._entry(phase, image_name)
        if entry is None or not (entry.boxes or entry.masks):
            return PhaseRegions(None, None)
        masks = torch.zeros(height, width, dtype=torch.bool)
        for mask in entry.masks:
            masks |= F.interpolate(mask[None, None].float(), size=(height, width), mode="nearest")[0, 0] > 0.5
        return region_masks(phase, entry.boxes, height, width, detail_target, self.floater_keywords, masks=masks,
                            subject_is_background=entry.key == "background")

    def _entry(self, phase: str, image_name: str) -> Optional[FileRegion]:
        return self.entries.get(Path(image_name).name, {}).get(phase)


__all__ = ["FILE_PHASES", "BoxesFileSource", "FileRegion", "load_boxes_file"]
