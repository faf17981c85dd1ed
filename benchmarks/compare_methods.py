"""Side-by-side benchmark: splatfacto vs vlm-fastgs from the same random points, seed, budget and scene.

Each method trains in its own process (``--run-one``) so peak GPU memory is its own. Both use the project's scene
dataparser with ``init=random``: the same ``--num-random`` points, drawn where the training cameras look from the
same seed, reach each model as its initial point cloud. After training, the eval split is scored in the same process
(as ``ns-eval`` does: PSNR, SSIM, LPIPS when available, and coverage, the share of pixels with mean absolute error
below ``--coverage-threshold``), loss / Gaussian-count curves are read from the run's tensorboard events, and guided
runs report per-phase Gaussian counts and what the guidance cost and did (:func:`guidance_summary`).

Usage (GPU)::

    python benchmarks/compare_methods.py --data .scenes/desk_vr --downscale 2 --iterations 20000 \\
        --out docs/benchmarks/desk_vr_2x --methods splatfacto vlm-fastgs

``--run-one METHOD`` trains one method and writes ``<out>/<method>.json``; without it, each method in ``--methods``
runs in turn (skipping finished ones) and the report (``results.json``, ``results.md``, ``curves.png``) is written.
``--report-only`` writes the report from existing JSON files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional

METRIC_COLUMNS = ("psnr", "ssim", "lpips")


def trainer_config(method: str, args: argparse.Namespace):
    """The nerfstudio TrainerConfig of ``method`` with the shared scene, init, seed and budget.

    ``method`` is a registered method name, optionally with a vlm-fastgs strategy variant after a colon
    (``vlm-fastgs:default`` trains with gsplat's DefaultStrategy) and a guidance source after a plus
    (``vlm-fastgs+image-evidence``, ``vlm-fastgs+vlm``). Without a plus, vlm-fastgs trains unguided
    (``guidance.source none``), as the recorded FastGS-strategy runs did.
    """
    from nerfstudio.configs.method_configs import all_methods

    from splat_core.data.scene_dataparser import SceneDataParserConfig

    method, _, source = method.partition("+")
    name, _, variant = method.partition(":")
    config = all_methods[name]
    if variant:
        config.pipeline.model.strategy = variant
    if hasattr(config.pipeline, "guidance"):
        config.pipeline.guidance.source = source or "none"
        if args.vlm_model_path:
            config.pipeline.vlm.model_path = args.vlm_model_path
    elif source:
        raise SystemExit(f"error: {name} has no guidance phases; drop '+{source}'")
    config.pipeline.datamanager.dataparser = SceneDataParserConfig(
        data=Path(args.data), downscale_factor=args.downscale, init=args.init,
        num_random_points=args.num_random, init_seed=args.seed, eval_mode="interval", eval_interval=8,
    )
    config.pipeline.model.random_init = False  # use the dataparser's points for both methods
    config.max_num_iterations = args.iterations
    config.machine.seed = args.seed
    import torch

    config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
    config.vis = "tensorboard"
    config.experiment_name = Path(args.data).name
    config.output_dir = Path(args.runs_dir or Path(args.out) / "runs")
    config.steps_per_save = args.iterations
    config.steps_per_eval_image = args.iterations
    config.steps_per_eval_all_images = 10 * args.iterations
    config.steps_per_eval_batch = 0
    for group in config.optimizers.values():  # stretch the lr decays over the budget, as each method's 30k/20k does
        sched = group.get("scheduler")
        if sched is not None and hasattr(sched, "max_steps"):
            sched.max_steps = args.iterations
    return config


def read_curves(run_dir: Path) -> Dict[str, List[List[float]]]:
    """``{"loss": [[step, value], ...], "gaussians": [...]}`` from the run's tensorboard events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    wanted = {"loss": "Train Loss", "gaussians": "Train Metrics Dict/gaussian_count"}
    return {k: [[e.step, e.value] for e in acc.Scalars(t)] for k, t in wanted.items() if t in tags}


def phase_boundaries(config) -> Dict[str, int]:
    """End step of each guidance phase (``detail``, ``subject``, ``artifacts``) of a vlm-fastgs config; the default
    schedule's for methods without guidance, so every run is read at the same steps."""
    from vlm_instruct_gs.guidance.phases import GuidanceSchedule

    guidance = getattr(config.pipeline, "guidance", None)
    schedule = guidance.schedule if guidance is not None else GuidanceSchedule()
    return {phase: getattr(schedule, f"{phase}_stop") for phase in ("detail", "subject", "artifacts")}


def counts_at(curve: List[List[float]], steps: Dict[str, int]) -> Dict[str, int]:
    """Gaussian count of the last logged step before each ``steps`` value (``curve`` is ``[[step, count], ...]``)."""
    out = {}
    for name, stop in steps.items():
        before = [c for s, c in curve if s < stop]
        if before:
            out[name] = int(before[-1])
    return out


def guidance_summary(pipeline) -> Optional[Dict]:
    """Guidance cost and effect of a trained vlm-fastgs pipeline, or None when it trained unguided.

    Per phase: queries applied, boxes returned, source seconds (worker-thread time of the VLM / image-evidence call),
    Gaussians given densify / prune guidance; overall: the worker's busy time, the training thread's time spent
    snapshotting views and mapping answers onto Gaussians, and queries dropped because the source fell behind.
    """
    controller = getattr(pipeline, "guidance", None)
    if controller is None:
        return None
    phases: Dict[str, Dict[str, float]] = {}
    for record in controller.applied:
        row = phases.setdefault(record["phase"], {"queries": 0, "boxes": 0, "source_s": 0.0, "densify_gaussians": 0,
                                                  "prune_gaussians": 0, "errors": 0})
        row["queries"] += 1
        row["boxes"] += sum(len(b) for b in record["boxes"])
        row["source_s"] += record["seconds"]
        row["densify_gaussians"] += record["densify_gaussians"]
        row["prune_gaussians"] += record["prune_gaussians"]
        row["errors"] += record["error"] is not None
    return {
        "source": controller.config.source,
        "phases": phases,
        "worker_busy_s": controller.worker.busy_seconds,
        "main_thread_snapshot_s": controller.snapshot_seconds,
        "main_thread_apply_s": controller.apply_seconds,
        "dropped_queries": controller.worker.dropped,
    }


def evaluate(pipeline, coverage_threshold: float = 0.1) -> Dict[str, float]:
    """Mean PSNR / SSIM / LPIPS over the eval split, with splatfacto's metric definitions for every method, and
    coverage: the fraction of test pixels whose mean absolute RGB error is below ``coverage_threshold``.

    nerfstudio's ``get_average_eval_image_metrics`` calls the model's own metric code, whose LPIPS needs weights that
    cannot be downloaded offline; this loop computes the same metrics with one offline-safe LPIPS for all methods.
    """
    import torch
    from torchmetrics.image import PeakSignalNoiseRatio

    from splat_core.compat import OptionalLPIPS
    from splat_core.metrics import pixel_coverage

    model = pipeline.model
    psnr = PeakSignalNoiseRatio(data_range=1.0).to(model.device)
    lpips = OptionalLPIPS(normalize=True)
    rows: List[Dict[str, float]] = []
    with torch.no_grad():
        for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
            outputs = model.get_outputs_for_camera(camera=camera)
            gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])
            gt_b = gt.permute(2, 0, 1)[None].to(model.device)
            pred_b = outputs["rgb"].permute(2, 0, 1)[None]
            row = {"psnr": float(psnr(pred_b, gt_b)), "ssim": float(model.ssim(gt_b, pred_b)),
                   "coverage": pixel_coverage(outputs["rgb"], gt.to(model.device), coverage_threshold)}
            value = lpips(pred_b, gt_b)
            if value is not None:
                row["lpips"] = float(value)
            rows.append(row)
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} | {"num_eval_images": float(len(rows))}


def run_one(method: str, args: argparse.Namespace) -> Dict:
    import torch

    from splat_core.compat import offline_safe_lpips

    config = trainer_config(method, args)
    config.set_timestamp()
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_safe_lpips():  # splatfacto builds LPIPS in populate_modules, which needs a download otherwise
        trainer.setup()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    pipeline = trainer.pipeline
    pipeline.eval()
    import gsplat

    curves = read_curves(config.get_base_dir())
    phase_ends = phase_boundaries(config)
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    return {
        "method": method,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": str(date.today()),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "versions": {"torch": torch.__version__, "gsplat": gsplat.__version__},
        "metrics": evaluate(pipeline, args.coverage_threshold),
        "coverage_threshold": args.coverage_threshold,
        "num_gaussians": int(pipeline.model.num_points),
        "phase_ends": phase_ends,
        "gaussians_at_phase_end": counts_at(curves.get("gaussians", []), phase_ends),
        "guidance": guidance_summary(pipeline),
        "vlm_model_path": args.vlm_model_path if "+vlm" in method else None,
        "train_wall_s": wall,
        "peak_gpu_mem_gib": peak,
        "config": str(config.get_base_dir() / "config.yml"),
        "checkpoint": str(checkpoints[-1]) if checkpoints else None,
        "curves": curves,
    }


def _fmt(value: Optional[float], spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def metrics_table(results: List[Dict], iterations: int) -> List[str]:
    """Markdown rows: quality, size, time and memory of each method."""
    rows = ["| method | PSNR | SSIM | LPIPS | coverage | Gaussians | train wall (s) | s / 1k iter | peak GPU mem (GiB) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r["metrics"]
        rows.append(
            f"| {r['method']} | {m['psnr']:.2f} | {m['ssim']:.3f} | {_fmt(m.get('lpips'), '.3f')} | "
            f"{_fmt(m.get('coverage'), '.3f')} | {r['num_gaussians']:,} | {r['train_wall_s']:.0f} | "
            f"{1000 * r['train_wall_s'] / iterations:.1f} | {r['peak_gpu_mem_gib']:.2f} |"
        )
    return rows


def phase_table(results: List[Dict]) -> List[str]:
    """Markdown rows: Gaussian counts at the end of each guidance phase (runs recorded before the counts were
    kept are left out)."""
    rows = [r for r in results if r.get("gaussians_at_phase_end")]
    if not rows:
        return []
    ends = rows[0]["phase_ends"]
    out = ["| method | " + " | ".join(f"{p} (< {s:,})" for p, s in ends.items()) + " | final |",
           "|---|" + "---|" * (len(ends) + 1)]
    for r in rows:
        counts = r["gaussians_at_phase_end"]
        out.append(f"| {r['method']} | " + " | ".join(_fmt(counts.get(p), ",") for p in ends)
                   + f" | {r['num_gaussians']:,} |")
    return out


def guidance_table(results: List[Dict]) -> List[str]:
    """Markdown rows: per guided run and phase, queries, boxes, source time and Gaussians guided; and the wall-time
    overhead against the unguided ``vlm-fastgs`` run when there is one."""
    guided = [r for r in results if r.get("guidance")]
    if not guided:
        return []
    base = next((r for r in results if r["method"] == "vlm-fastgs"), None)
    out = ["| method | phase | queries applied | boxes | source time (s) | densify-guided GSs | prune-guided GSs |",
           "|---|---|---|---|---|---|---|"]
    notes = []
    for r in guided:
        g = r["guidance"]
        for phase, p in g["phases"].items():
            out.append(f"| {r['method']} | {phase} | {p['queries']} | {p['boxes']} | {p['source_s']:.1f} | "
                       f"{p['densify_gaussians']:,} | {p['prune_gaussians']:,} |")
        overhead = (f"; wall time {100 * (r['train_wall_s'] / base['train_wall_s'] - 1):+.1f}% against unguided "
                    "vlm-fastgs" if base else "")
        notes.append(f"- {r['method']}: source busy {g['worker_busy_s']:.1f} s on the worker thread; training "
                     f"thread {g['main_thread_snapshot_s']:.1f} s snapshotting + {g['main_thread_apply_s']:.1f} s "
                     f"applying; {g['dropped_queries']} queries dropped{overhead}")
    return [*out, "", *notes]


def write_report(args: argparse.Namespace, results: List[Dict]) -> None:
    """``results.json``, ``results.md`` (metrics, per-phase counts, guidance cost) and ``curves.png`` under --out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    gpu = ", ".join(sorted({r.get("gpu", "unknown") for r in results}))
    meta = {"date": ", ".join(sorted({r.get("date", "unknown") for r in results})), "gpu": gpu,
            "commands": [r.get("command", "") for r in results], "data": str(args.data),
            "downscale": args.downscale, "iterations": args.iterations, "num_random": args.num_random,
            "seed": args.seed, "init": args.init}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    start = f"{args.num_random} random points" if args.init == "random" else "SfM points"
    metrics = metrics_table(results, args.iterations)
    threshold = next((r["coverage_threshold"] for r in results if "coverage_threshold" in r), args.coverage_threshold)
    md = [f"# {Path(args.data).name} at {args.downscale}x, {args.iterations} iterations, from {start}",
          "", f"GPU: {gpu}; date: {meta['date']}; seed {args.seed}", "", "Commands (one process per method):", "",
          *[f"- `{c}`" for c in meta["commands"]], "", *metrics, "",
          f"Coverage: fraction of test pixels whose mean absolute RGB error is below {threshold}.", ""]
    phases, guidance = phase_table(results), guidance_table(results)
    if phases:
        md += ["## Gaussians at the end of each guidance phase", "", *phases, ""]
    if guidance:
        md += ["## Guidance", "", *guidance, ""]
    (out / "results.md").write_text("\n".join([*md, "![curves](curves.png)", ""]))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        for ax, key in zip(axes, ("loss", "gaussians")):
            pts = r["curves"].get(key, [])
            if pts:
                values = [p[1] for p in pts]
                if key == "loss":  # per-step losses swing with the view and background: show a running mean
                    w = 25
                    values = [sum(values[max(0, i - w + 1) : i + 1]) / len(values[max(0, i - w + 1) : i + 1])
                              for i in range(len(values))]
                ax.plot([p[0] for p in pts], values, label=r["method"])
    ends = next((r["phase_ends"] for r in results if r.get("phase_ends")), {})
    for phase, step in ends.items():
        if step < args.iterations:
            axes[1].axvline(step, color="grey", ls=":", lw=1)
            axes[1].text(step, axes[1].get_ylim()[1], f" end of {phase}", rotation=90, va="top", fontsize=7)
    axes[0].set(title="training loss (running mean of 25 logs)", xlabel="iteration", yscale="log")
    axes[1].set(title="number of Gaussians", xlabel="iteration")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    print("\n".join([*metrics, "", *phases, "", *guidance]))


def _file_name(method: str) -> str:
    return method.replace(":", "-").replace("+", "-")


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--num-random", type=int, default=100)
    parser.add_argument("--init", choices=["random", "sfm"], default="random")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--methods", nargs="+", default=["splatfacto", "vlm-fastgs"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs-dir", default=None, help="where ns-train run folders go (default: OUT/runs)")
    parser.add_argument("--vlm-model-path", default=None,
                        help="--pipeline.vlm.model-path of '+vlm' methods (e.g. a tiny_vlm folder)")
    parser.add_argument("--coverage-threshold", type=float, default=0.1,
                        help="per-pixel mean absolute RGB error (0-1) below which a test pixel counts as covered")
    parser.add_argument("--run-one", default=None)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.run_one:
        result = run_one(args.run_one, args)
        (out / f"{_file_name(args.run_one)}.json").write_text(json.dumps(result, indent=1))
        return
    if not args.report_only:
        for method in args.methods:
            if (out / f"{_file_name(method)}.json").exists():
                continue
            cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--run-one", method]
            subprocess.run(cmd, check=True)
    files = [out / f"{_file_name(m)}.json" for m in args.methods]
    results = [json.loads(f.read_text()) for f in files if f.exists()]
    write_report(args, results)


if __name__ == "__main__":
    main()
