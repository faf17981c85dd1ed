"""Where a training step's time goes: timed and torch.profiler windows of a real ns-train run.

Usage (GPU)::

    python benchmarks/profile_step.py --data .scenes/desk_vr --downscale 2 --method vlm-fastgs \\
        --start 4000 --steps 300 --profile-steps 100 --out docs/benchmarks/profile

The run trains ``--start`` steps unprofiled (so the Gaussian count and resolution are those of mid-training), then
times ``--steps`` steps through nerfstudio's loop (``Trainer.train``: wall time per step, and the host time spent
inside ``train_iteration``; the rest is the loop's own per-step work), then profiles ``--profile-steps`` more with
torch.profiler (CPU + CUDA). It writes ``<out>/<label>.json`` and prints a summary:

- ``ms_per_step``: wall time per step of the timed window (GPU synchronised at both ends).
- ``iteration_host_ms`` / ``loop_host_ms``: host time per step inside ``train_iteration`` and around it.
- ``kernels_per_step``, ``gpu_kernel_ms_per_step``: CUDA kernels launched per step and their summed device time;
  ``syncs_per_step``: ``cudaStreamSynchronize`` / ``cudaDeviceSynchronize`` / ``cudaEventSynchronize`` calls (each
  one makes the host wait for the GPU), ``memcpy_per_step``: ``cudaMemcpyAsync`` calls (a blocking copy is one of
  them followed by a stream sync).
- ``by_device`` / ``by_cpu``: the top operators by device time and by self CPU time.

``--baseline`` ablates the lean step for a before/after profile in one checkout: nerfstudio's
``Trainer.train_iteration`` instead of :meth:`splat_core.trainer.SplatTrainer.train_iteration` (``step``),
pytorch_msssim's SSIM instead of :class:`splat_core.ssim.FastSSIM` (``ssim``), torch's default Adam instead of
the fused one (``adam``) and the eager photometric loss instead of its CUDA graphs (``graph``,
:mod:`splat_core.losses`). ``--label`` names the output file (default: the method, plus ``-baseline`` when ablated).
``--sync-steps N`` traces N more steps with :class:`sync_sites.SyncTrace`: the ops that make the host wait for the
GPU, per call site (``sync_sites``, ``sync_totals_per_step``; on CPU: the sites that would wait on CUDA).
On a machine without CUDA the script runs on CPU (a smoke test: no kernel counts).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_methods import seed_like_ns_train, trainer_config  # noqa: E402

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def _ablate(config, trainer, baseline: List[str]) -> None:
    """Undo the parts of the lean step named in ``baseline`` (config before setup, trainer after setup)."""
    if trainer is None:
        if "adam" in baseline:
            for group in config.optimizers.values():
                group["optimizer"].fused = False
        return
    if "step" in baseline:
        from nerfstudio.engine.trainer import Trainer

        trainer.train_iteration = functools.partial(Trainer.train_iteration, trainer)
        if hasattr(trainer.pipeline.model, "train_metrics_due"):
            trainer.pipeline.model.train_metrics_due = True
    if "ssim" in baseline:
        from pytorch_msssim import SSIM

        model = trainer.pipeline.model
        model.ssim = model.photometric_loss.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
    if "graph" in baseline:
        trainer.pipeline.model.photometric_loss.cuda_graphs = False


def summarize(prof, steps: int) -> Dict[str, object]:
    """Per-step kernel, sync and copy counts, GPU kernel time and the top operators of a torch.profiler run."""
    from torch.autograd import DeviceType

    kernels, kernel_us, calls = 0, 0.0, {}
    for evt in prof.events():
        if evt.device_type == DeviceType.CUDA:
            kernels += 1
            kernel_us += evt.device_time_total if hasattr(evt, "device_time_total") else evt.cuda_time_total
        else:
            calls[evt.name] = calls.get(evt.name, 0) + 1
    rows = []
    for evt in prof.key_averages():
        rows.append({"name": evt.key, "calls": evt.count, "cpu_total_ms": evt.cpu_time_total / 1e3,
                     "self_cpu_ms": evt.self_cpu_time_total / 1e3,
                     "device_total_ms": getattr(evt, "device_time_total", getattr(evt, "cuda_time_total", 0)) / 1e3})
    return {
        "kernels_per_step": kernels / steps,
        "gpu_kernel_ms_per_step": kernel_us / 1e3 / steps,
        "launch_calls_per_step": sum(n for k, n in calls.items() if "LaunchKernel" in k) / steps,
        "syncs_per_step": sum(calls.get(k, 0) for k in SYNC_CALLS) / steps,
        "memcpy_per_step": calls.get("cudaMemcpyAsync", 0) / steps,
        "by_device": sorted(rows, key=lambda r: -r["device_total_ms"])[:25],
        "by_cpu": sorted(rows, key=lambda r: -r["self_cpu_ms"])[:25],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--method", default="vlm-fastgs")
    parser.add_argument("--start", type=int, default=4000, help="unprofiled warm-up steps")
    parser.add_argument("--steps", type=int, default=300, help="timed steps (no profiler)")
    parser.add_argument("--profile-steps", type=int, default=100, help="profiled steps, after the timed ones")
    parser.add_argument("--baseline", nargs="*", default=[], choices=["step", "ssim", "adam", "graph"],
                        help="undo these parts of the lean step (for a before/after profile)")
    parser.add_argument("--sync-steps", type=int, default=0,
                        help="steps traced for host-blocking ops per call site, after the profiled ones")
    parser.add_argument("--label", default=None, help="output file name (default: method[-baseline])")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from splat_core.compat import offline_safe_lpips

    cuda = torch.cuda.is_available()
    total = args.start + args.steps + args.profile_steps + args.sync_steps
    ns = argparse.Namespace(data=args.data, downscale=args.downscale, iterations=total, num_random=100, seed=42,
                            init="random", runs_dir="/tmp/profile_runs", out=args.out, vlm_model_path=None)
    config = trainer_config(args.method, ns)
    config.steps_per_save = 10**9
    config.set_timestamp()
    _ablate(config, None, args.baseline)
    seed_like_ns_train(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_safe_lpips():
        trainer.setup()
    _ablate(config, trainer, args.baseline)

    host = {"s": 0.0}
    iteration = trainer.train_iteration

    def timed_iteration(step):
        t = time.perf_counter()
        out = iteration(step)
        host["s"] += time.perf_counter() - t
        return out

    trainer.train_iteration = timed_iteration

    def window(start: int, steps: int) -> float:
        """Train ``steps`` more steps of the same run from ``start``; wall seconds, GPU synchronised."""
        trainer._start_step = start  # Trainer.train runs max_num_iterations steps from _start_step
        config.max_num_iterations = steps
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        trainer.train()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    window(0, args.start)  # the unprofiled warm-up part of the run
    host["s"] = 0.0
    wall = window(args.start, args.steps)
    iteration_host = host["s"]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        window(args.start + args.steps, args.profile_steps)

    sync = {}
    if args.sync_steps > 0:
        from sync_sites import SyncTrace

        with SyncTrace() as trace:
            window(args.start + args.steps + args.profile_steps, args.sync_steps)
        sync = {"sync_totals_per_step": trace.totals(args.sync_steps), "sync_sites": trace.per_step(args.sync_steps)[:40]}

    import gsplat

    meta = {
        "gpu": torch.cuda.get_device_name(0) if cuda else "cpu", "date": str(date.today()),
        "torch": torch.__version__, "gsplat": gsplat.__version__, "command": " ".join(sys.argv),
        "method": args.method, "baseline": args.baseline, "num_gaussians": int(trainer.pipeline.model.num_points),
        "timed_steps": args.steps, "ms_per_step": 1000 * wall / args.steps,
        "iteration_host_ms": 1000 * iteration_host / args.steps,
        "loop_host_ms": 1000 * (wall - iteration_host) / args.steps,
        "profiled_steps": args.profile_steps,
        "loss_graph_sizes": getattr(getattr(trainer.pipeline.model, "photometric_loss", None), "captured_sizes", None),
    }
    summary = {**summarize(prof, args.profile_steps), **sync}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = args.label or args.method + ("-baseline" if args.baseline else "")
    (out / f"{label}.json").write_text(json.dumps({"meta": meta, **summary}, indent=1))
    print(json.dumps({**meta, **{k: v for k, v in summary.items() if not k.startswith(("by_", "sync_sites"))}}))
    print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
