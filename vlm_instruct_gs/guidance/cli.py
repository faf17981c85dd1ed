"""``vlm-gs-guide``: ask one guidance question about one image from the command line (a tyro CLI).

Examples::

    vlm-gs-guide --phase subject --image render.png --model /models/Qwen3-VL-2B-Instruct --out-mask mask.png
    vlm-gs-guide --phase artifacts --image novel.png --source image-evidence --reference warped_train.png
    python -m vlm_instruct_gs.guidance.cli --phase detail --image render.png --source image-evidence --reference gt.png

Prints one JSON object on stdout: ``phase``, ``source``, ``image``, ``height``, ``width``, ``boxes`` (list of
``{"bbox_2d": [x1, y1, x2, y2], "label": ...}`` in normalised 0-1000 coordinates), ``answer`` (raw VLM text, VLM
source only) and ``mask`` (path written or null). The mask PNG (``L`` mode, 255 = selected, image size) is the
region training densifies for these boxes (:func:`~vlm_instruct_gs.guidance.mask_rule.region_masks` with the
default ``--pipeline.guidance`` settings: the boxes for ``detail``, the background for ``subject``, the boxes not
labelled as floaters for ``artifacts``; empty when there are no boxes); ``--mask-boxes`` writes the plain union of
the boxes instead. Errors (bad arguments, missing or unreadable image, model, evidence or mask folder) are one
``vlm-gs-guide: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence

import numpy as np
import torch
import tyro
from PIL import Image
from typing_extensions import Annotated

from vlm_instruct_gs.guidance.boxes import Box, boxes_to_mask
from vlm_instruct_gs.guidance.mask_rule import region_masks
from vlm_instruct_gs.guidance.parsing import parse_boxes
from vlm_instruct_gs.guidance.phases import Phase
from vlm_instruct_gs.guidance.prompts import load_prompt, read_prompt_file

PROG = "vlm-gs-guide"


class CLIError(Exception):
    """A user-facing error, printed as one line."""


@dataclass
class GuideCommand:
    """Boxes (0-1000 normalised) and a mask for one guidance phase."""

    phase: Phase
    """detail (1), subject (2) or artifacts (3)."""
    image: Path
    """Render to ask about (PNG/JPEG)."""
    source: Literal["vlm", "image-evidence"] = "vlm"
    """Guidance source."""
    model: Optional[str] = None
    """VLM checkpoint directory or hub id (default Qwen/Qwen3-VL-2B-Instruct)."""
    prompt_file: Optional[Path] = None
    """Prompt text file (default configs/prompts/PHASE.txt)."""
    out_mask: Optional[Path] = None
    """Write the mask PNG here."""
    mask_boxes: bool = False
    """Mask = union of the boxes, never inverted."""
    device: str = "auto"
    """Torch device for the VLM."""
    max_new_tokens: int = 256
    """VLM answer budget in tokens."""
    max_pixels: int = 1048576
    """VLM image area cap in pixels."""
    min_pixels: int = 65536
    """VLM image area floor in pixels."""
    reference: Optional[Path] = None
    """image-evidence: GT (detail) or warped view (artifacts)."""
    error_map: Optional[Path] = None
    """image-evidence, artifacts: grayscale error PNG."""
    depth: Optional[Path] = None
    """image-evidence, subject: depth as .npy [H, W]."""
    verbose: Annotated[bool, tyro.conf.arg(aliases=["-v"])] = False
    """Log at INFO level."""

    def run(self) -> dict:
        """Compute the boxes (and write the mask); returns the JSON-ready result. Raises CLIError on bad input."""
        image = _read_image(self.image, "image")
        height, width = int(image.shape[0]), int(image.shape[1])
        answer = None
        if self.source == "vlm":
            answer = self._vlm_answer(image)
            boxes = parse_boxes(answer)
        else:
            boxes = self._evidence_boxes(image)
        mask_path = None
        if self.out_mask is not None:
            if self.mask_boxes:
                mask = boxes_to_mask(boxes, height, width)
            else:
                mask = region_masks(self.phase, boxes, height, width).densify_or_empty(height, width)
            _write_mask(mask, self.out_mask)
            mask_path = str(self.out_mask)
        result = {"phase": self.phase, "source": self.source, "image": str(self.image), "height": height,
                  "width": width, "boxes": [b.to_json() for b in boxes], "mask": mask_path}
        if answer is not None:
            result["answer"] = answer
        return result

    def _evidence_boxes(self, image: torch.Tensor) -> List[Box]:
        from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuide

        reference = None if self.reference is None else [_read_image(self.reference, "reference image")]
        error_map = None
        if self.error_map is not None:
            error_map = [_read_image(self.error_map, "error map").float().mean(-1) / 255.0]
        depth = None if self.depth is None else [_read_depth(self.depth)]
        if self.phase == "artifacts" and reference is None and error_map is None:
            raise CLIError("--phase artifacts with --source image-evidence needs --reference or --error-map")
        try:
            guide = ImageEvidenceGuide()
            return guide.boxes(self.phase, [image], reference=reference, error_map=error_map, depth=depth)[0]
        except ValueError as e:
            raise CLIError(str(e)) from e

    def _vlm_answer(self, image: torch.Tensor) -> str:
        from vlm_instruct_gs.guidance.vlm_backend import TransformersVLMBackend, VLMBackendConfig, VLMBackendError

        try:
            prompt = read_prompt_file(self.prompt_file) if self.prompt_file is not None else load_prompt(self.phase)
        except (OSError, ValueError) as e:
            raise CLIError(f"{e} (use --prompt-file)") from e
        config = VLMBackendConfig(device=self.device, max_new_tokens=self.max_new_tokens, min_pixels=self.min_pixels,
                                  max_pixels=self.max_pixels, batch_size=1)
        if self.model is not None:
            config.model_path = self.model
        try:
            backend = TransformersVLMBackend(config)
        except (VLMBackendError, ValueError) as e:
            raise CLIError(str(e)) from e
        return backend.ask([image], prompt)[0]


def _read_image(path: Path, what: str) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` tensor of an image file; CLIError when missing or unreadable."""
    if not path.is_file():
        raise CLIError(f"{what} not found: {path}")
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB")))
    except OSError as e:
        raise CLIError(f"cannot read {what} {path}: {e}") from e


def _read_depth(path: Path) -> torch.Tensor:
    """float ``[H, W]`` depth from a ``.npy`` file; CLIError when missing or not a numeric numpy array."""
    if not path.is_file():
        raise CLIError(f"depth file not found: {path}")
    try:
        return torch.from_numpy(np.asarray(np.load(path, allow_pickle=False), dtype=np.float32))
    except (OSError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as e:
        raise CLIError(f"cannot read depth {path} (expected a .npy array [H, W]): {e}") from e


def _write_mask(mask: torch.Tensor, path: Path) -> None:  # [H, W] bool -> L-mode PNG, 255 = selected
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(path)
    except (OSError, ValueError) as e:  # a file where a folder should be, no permission, unknown extension
        raise CLIError(f"cannot write mask {path}: {e}") from e


def _parse(argv: Optional[Sequence[str]]) -> GuideCommand:
    """tyro's parse of ``argv``; its error panel becomes one CLIError line (``--help`` prints as usual)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "-h" in args or "--help" in args:
        return tyro.cli(GuideCommand, args=args, prog=PROG)
    panel = io.StringIO()
    try:
        with contextlib.redirect_stderr(panel):
            return tyro.cli(GuideCommand, args=args, prog=PROG)
    except SystemExit as e:
        raise CLIError(f"{_panel_text(panel.getvalue())} (see {PROG} --help)") from e


def _panel_text(text: str) -> str:
    """The message lines of tyro's boxed error (up to its first rule), joined into one line."""
    lines = []
    for line in text.splitlines():
        inner = line.strip().strip("│").strip()
        if line.lstrip().startswith("│") and inner and set(inner) == {"─"}:
            break
        if line.lstrip().startswith("│") and inner:
            lines.append(inner)
    return " ".join(lines) if lines else " ".join(text.split()) or "invalid arguments"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 usage or input error)."""
    try:
        command = _parse(argv)
        logging.basicConfig(level=logging.INFO if command.verbose else logging.WARNING,
                            format="%(levelname)s: %(message)s")
        result = command.run()
    except CLIError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
