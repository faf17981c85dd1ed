"""One figure of what a guidance source saw and answered: per query, the image with its densify region (green) and
floater region (red), read from a run's ``<run>/guidance`` records (:mod:`vlm_instruct_gs.guidance.records`).

    python benchmarks/plot_guidance.py outputs/scene/vlm-fastgs/<timestamp>/guidance guidance.png \\
        --queries 4000:detail 8000:subject 12000:artifacts
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from PIL import Image, ImageDraw

from vlm_instruct_gs.guidance.records import overlay, record_stem


def _mask(path: Optional[Path]) -> Optional[torch.Tensor]:
    return None if path is None or not path.exists() else torch.from_numpy(np.array(Image.open(path)) > 127)


def tile(records: Path, step: int, phase: str, view: int, width: int) -> Image.Image:
    """The view's image with its regions tinted, scaled to ``width`` pixels, captioned with the boxes' labels.

    Raises:
        FileNotFoundError: the query's image or JSON record is missing.
    """
    stem = record_stem(step, phase, view)
    meta = json.loads((records / f"{stem}.json").read_text())
    image = torch.from_numpy(np.array(Image.open(records / meta["image"]).convert("RGB")))
    densify = _mask(records / meta["mask"]) if meta.get("mask") else None
    floaters = _mask(records / meta["floater_region"]) if meta.get("floater_region") else None
    tinted = (overlay(image, densify, floaters).numpy() * 255).astype(np.uint8)
    out = Image.fromarray(tinted)
    out = out.resize((width, round(out.height * width / out.width)))
    labels = sorted({b.get("label", "") for b in meta["boxes"]})
    caption = f"step {step} {phase}: {len(meta['boxes'])} box(es) {', '.join(labels)[:60]}"
    ImageDraw.Draw(out).text((4, 4), caption, fill=(255, 255, 0))
    return out


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=Path, help="a run's guidance folder")
    parser.add_argument("out", type=Path, help="output PNG")
    parser.add_argument("--queries", nargs="+", default=["4000:detail", "8000:subject", "12000:artifacts"],
                        help="STEP:PHASE of each row")
    parser.add_argument("--views", type=int, default=2, help="views per row")
    parser.add_argument("--width", type=int, default=480, help="tile width, pixels")
    args = parser.parse_args(argv)
    rows = []
    for query in args.queries:
        step, phase = query.split(":")
        tiles = [tile(args.records, int(step), phase, v, args.width) for v in range(args.views)]
        row = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)))
        for i, t in enumerate(tiles):
            row.paste(t, (i * args.width, 0))
        rows.append(row)
    figure = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)))
    y = 0
    for row in rows:
        figure.paste(row, (0, y))
        y += row.height
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"wrote {args.out} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    main()
