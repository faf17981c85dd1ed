"""Where a training step's time goes: torch.profiler over a window of steps of a real ns-train run.

Usage (GPU)::

    python benchmarks/profile_step.py --data .scenes/desk_vr --downscale 2 --method vlm-fastgs \\
        --start 4000 --steps 200 --out docs/benchmarks/profile

The run trains ``--start`` steps unprofiled (so the Gaussian count and resolution are those of mid-training), then
profiles ``--steps`` steps and writes the top operators by CUDA and by CPU time, plus the mean wall time per step,
as JSON and Markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_methods import trainer_config  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--method", default="vlm-fastgs")
    parser.add_argument("--start", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from splat_core.compat import offline_safe_lpips

    ns = argparse.Namespace(data=args.data, downscale=args.downscale, iterations=args.start + args.steps,
                            num_random=100, seed=42, init="random", runs_dir="/tmp/profile_runs", out=args.out)
    config = trainer_config(args.method, ns)
    config.steps_per_save = 10**9
    config.set_timestamp()
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_safe_lpips():
        trainer.setup()
    config.max_num_iterations = args.start
    trainer.train()  # the unprofiled warm-up part of the run
    trainer._start_step = args.start  # continue the same run for the profiled window
    config.max_num_iterations = args.steps  # Trainer.train runs max_num_iterations steps from _start_step
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    averages = prof.key_averages()
    rows = []
    for evt in averages:
        rows.append({"name": evt.key, "calls": evt.count, "cpu_total_ms": evt.cpu_time_total / 1e3,
                     "self_cpu_ms": evt.self_cpu_time_total / 1e3,
                     "device_total_ms": getattr(evt, "device_time_total", getattr(evt, "cuda_time_total", 0)) / 1e3})
    by_device = sorted(rows, key=lambda r: -r["device_total_ms"])[:25]
    by_cpu = sorted(rows, key=lambda r: -r["self_cpu_ms"])[:25]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "date": str(date.today()),
            "command": " ".join(sys.argv), "method": args.method, "num_gaussians": int(trainer.pipeline.model.num_points),
            "profiled_steps": args.steps, "wall_s_profiled": wall, "ms_per_step_profiled": 1000 * wall / args.steps}
    (out / f"{args.method}.json").write_text(json.dumps({"meta": meta, "by_device": by_device, "by_cpu": by_cpu},
                                                        indent=1))
    print(json.dumps(meta))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
