"""Time the mask -> per-Gaussian guidance mapping that training runs for one answered query
(:func:`vlm_instruct_gs.guidance.gaussian_masks.regions_to_guidance`, view by view as the controller calls it).

Random projected Gaussians (centres spread over and around the image, radii up to ``--radius-max`` pixels, gsplat
1.4 ``[V, N]`` or 1.5 ``[V, N, 2]`` layout) and random box masks as each view's densify region (plus the same boxes
as the floater region with ``--prune``); reports the median wall time per call over ``--repeats`` calls after a
warm-up, synchronising CUDA around each call.

    python benchmarks/bench_masks.py                       # 1M Gaussians, 4 views of 1080p, CUDA if available
    python benchmarks/bench_masks.py --gaussians 100000 --device cpu
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import List, Optional

import torch

from splat_core.rendering.views import RenderedView
from vlm_instruct_gs.guidance.boxes import Box, boxes_to_mask
from vlm_instruct_gs.guidance.gaussian_masks import regions_to_guidance
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions


def _inputs(args: argparse.Namespace, device: torch.device):
    g = torch.Generator().manual_seed(0)
    V, N, H, W = args.views, args.gaussians, args.height, args.width
    means2d = torch.rand(V, N, 2, generator=g) * torch.tensor([W * 1.2, H * 1.2]) - torch.tensor([W * 0.1, H * 0.1])
    shape = (V, N, 2) if args.per_axis else (V, N)
    radii = torch.randint(0, args.radius_max + 1, shape, generator=g, dtype=torch.int32)
    depths = 1.0 + torch.rand(V, N, generator=g)
    views = []
    for v in range(V):
        corners = (torch.rand(args.boxes, 4, generator=g) * 1000).tolist()
        mask = boxes_to_mask([Box.make(*c) for c in corners], H, W, device=device)
        out = RenderedView(
            rgb=torch.zeros(H, W, 3, device=device), depth=torch.full((H, W), 2.0, device=device),
            alpha=torch.ones(H, W, device=device), means2d=means2d[v : v + 1].to(device),
            radii=radii[v : v + 1].to(device), depths=depths[v : v + 1].to(device),
        )
        views.append((out, PhaseRegions(mask, mask if args.prune else None)))
    return views


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaussians", type=int, default=1_000_000, help="N")
    parser.add_argument("--views", type=int, default=4, help="V, views per guidance call")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--boxes", type=int, default=4, help="boxes per view mask")
    parser.add_argument("--radius-max", type=int, default=64, help="largest footprint radius, pixels")
    parser.add_argument("--per-axis", action="store_true", help="gsplat 1.5 radii layout [V, N, 2]")
    parser.add_argument("--reduce", choices=("max", "mean"), default="mean")
    parser.add_argument("--prune", action="store_true", help="also map a floater region (prune guidance)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    views = _inputs(args, device)
    out, _ = regions_to_guidance(views, combine=args.reduce)  # warm-up
    _sync(device)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out, _ = regions_to_guidance(views, combine=args.reduce)
        _sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    print(json.dumps({
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "gaussians": args.gaussians, "views": args.views, "height": args.height, "width": args.width,
        "radii_layout": "[V, N, 2]" if args.per_axis else "[V, N]", "reduce": args.reduce, "prune": args.prune,
        "median_ms": round(1000 * statistics.median(times), 3), "min_ms": round(1000 * min(times), 3),
        "peak_cuda_mib": None if peak is None else round(peak, 1),
        "guided_fraction": round(float((out > 0).float().mean()), 4),
    }))


if __name__ == "__main__":
    main()
