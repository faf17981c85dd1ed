"""``vlm-gs-guide``: ask one guidance question about one image from the command line.

Examples::

    vlm-gs-guide --phase subject --image render.png --model /models/Qwen3-VL-2B-Instruct --out-mask mask.png
    vlm-gs-guide --phase artifacts --image novel.png --source image-evidence --reference warped_train.png
    python -m vlm_instruct_gs.guidance.cli --phase detail --image render.png --source image-evidence --reference gt.png

Prints one JSON object on stdout: ``phase``, ``source``, ``image``, ``height``, ``width``, ``boxes`` (list of
``{"bbox_2d": [x1, y1, x2, y2], "label": ...}`` in normalised 0-1000 coordinates), ``answer`` (raw VLM text, VLM
source only) and ``mask`` (path written or null). The mask PNG (``L`` mode, 255 = selected, image size) is the
densification mask: the boxes for ``detail``/``artifacts``, the background (complement of the subject box) for
``subject``; ``--mask-boxes`` writes the plain union of the boxes instead. Errors (missing image, model or evidence)
are one ``vlm-gs-guide: error: ...`` line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image

from vlm_instruct_gs.guidance.parsing import PHASES, boxes_to_mask, densify_mask, parse_boxes
from vlm_instruct_gs.guidance.prompts import load_prompt, read_prompt_file

PROG = "vlm-gs-guide"


class CLIError(Exception):
    """A user-facing error, printed as one line."""


def build_parser() -> argparse.ArgumentParser:
    """Argument parser of ``vlm-gs-guide``."""
    p = argparse.ArgumentParser(prog=PROG, description="Boxes (0-1000 normalised) and a mask for one guidance phase.")
    p.add_argument("--phase", required=True, choices=PHASES, help="detail (1), subject (2) or artifacts (3)")
    p.add_argument("--image", required=True, type=Path, help="render to ask about (PNG/JPEG)")
    p.add_argument("--source", choices=("vlm", "image-evidence"), default="vlm", help="guidance source (default vlm)")
    p.add_argument(
        "--model", default=None, help="VLM checkpoint directory or hub id (default Qwen/Qwen3-VL-2B-Instruct)"
    )
    p.add_argument(
        "--prompt-file", type=Path, default=None, help="prompt text file (default configs/prompts/PHASE.txt)"
    )
    p.add_argument("--out-mask", type=Path, default=None, help="write the mask PNG here")
    p.add_argument("--mask-boxes", action="store_true", help="mask = union of boxes, never inverted")
    p.add_argument("--device", default="auto", help="torch device for the VLM (default auto)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="VLM answer budget in tokens")
    p.add_argument("--max-pixels", type=int, default=1048576, help="VLM image area cap in pixels")
    p.add_argument("--min-pixels", type=int, default=65536, help="VLM image area floor in pixels")
    p.add_argument(
        "--reference", type=Path, default=None, help="image-evidence: GT (detail) or warped view (artifacts)"
    )
    p.add_argument("--error-map", type=Path, default=None, help="image-evidence, artifacts: grayscale error PNG")
    p.add_argument("--depth", type=Path, default=None, help="image-evidence, subject: depth as .npy [H, W]")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return p


def _read_image(path: Path, what: str) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` tensor of an image file; CLIError when missing or unreadable."""
    if not path.is_file():
        raise CLIError(f"{what} not found: {path}")
    try:
        with Image.open(path) as im:
            return torch.from_numpy(np.array(im.convert("RGB")))
    except OSError as e:
        raise CLIError(f"cannot read {what} {path}: {e}") from e


def _evidence_boxes(args: argparse.Namespace, image: torch.Tensor):
    from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuide

    reference = None if args.reference is None else [_read_image(args.reference, "reference image")]
    error_map = None
    if args.error_map is not None:
        error_map = [_read_image(args.error_map, "error map").float().mean(-1) / 255.0]
    depth = None
    if args.depth is not None:
        if not args.depth.is_file():
            raise CLIError(f"depth file not found: {args.depth}")
        depth = [torch.from_numpy(np.load(args.depth)).float()]
    if args.phase == "artifacts" and reference is None and error_map is None:
        raise CLIError("--phase artifacts with --source image-evidence needs --reference or --error-map")
    try:
        return ImageEvidenceGuide().boxes(args.phase, [image], reference=reference, error_map=error_map, depth=depth)[0]
    except ValueError as e:
        raise CLIError(str(e)) from e


def _vlm_answer(args: argparse.Namespace, image: torch.Tensor) -> str:
    from vlm_instruct_gs.guidance.vlm_backend import TransformersVLMBackend, VLMBackendConfig, VLMBackendError

    try:
        prompt = read_prompt_file(args.prompt_file) if args.prompt_file is not None else load_prompt(args.phase)
    except (OSError, ValueError) as e:
        raise CLIError(f"{e} (use --prompt-file)") from e
    config = VLMBackendConfig(
        device=args.device,
        max_new_tokens=args.max_new_tokens,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        batch_size=1,
    )
    if args.model is not None:
        config.model_path = args.model
    try:
        backend = TransformersVLMBackend(config)
    except (VLMBackendError, ValueError) as e:
        raise CLIError(str(e)) from e
    return backend.ask([image], prompt)[0]


def run(args: argparse.Namespace) -> dict:
    """Compute boxes (and write the mask) for parsed arguments; returns the JSON-ready result."""
    image = _read_image(args.image, "image")
    height, width = int(image.shape[0]), int(image.shape[1])
    answer = None
    if args.source == "vlm":
        answer = _vlm_answer(args, image)
        boxes = parse_boxes(answer)
    else:
        boxes = _evidence_boxes(args, image)
    mask_path = None
    if args.out_mask is not None:
        if args.mask_boxes:
            mask = boxes_to_mask(boxes, height, width)
        else:
            mask = densify_mask(args.phase, boxes, height, width)
        args.out_mask.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.numpy().astype(np.uint8) * 255).save(args.out_mask)
        mask_path = str(args.out_mask)
    result = {"phase": args.phase, "source": args.source, "image": str(args.image), "height": height, "width": width}
    result.update(boxes=[b.to_json() for b in boxes], mask=mask_path)
    if answer is not None:
        result["answer"] = answer
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        result = run(args)
    except CLIError as e:
        print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
