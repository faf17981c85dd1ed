"""Side-by-side benchmark: splatfacto vs vlm-fastgs from the same random points, seeds, budget and scene.

Each run (one method, one seed) trains in its own process (``--run-one``) with its own run folder, so its peak GPU
memory, checkpoint and TensorBoard events are its own; ``--jobs N`` runs N of them at once on one GPU. All use the
project's scene dataparser with ``init=random``: the same ``--num-random`` points, drawn where the training cameras
look from the run's seed, reach each model as its initial point cloud.

During training the eval split is scored at fixed steps (``--eval-steps``; by default 1k, 2k, 4k, 6k, 8k, 11k, 14k,
17k and 20k, scaled to ``--iterations``): test PSNR / SSIM / coverage (the share of pixels with mean absolute error
below ``--coverage-threshold``) and the Gaussian count, with the training wall time at that point (eval time
excluded); one fixed test view is saved at the progress steps (2k, 4k, 8k, 14k, 20k, scaled). After training the eval
split is scored as ``ns-eval`` does (PSNR, SSIM, LPIPS when available, coverage), loss / Gaussian-count curves are
read from the run's TensorBoard events, and guided runs report per-phase Gaussian counts and what the guidance cost.

The report (``results.json``, ``results.md``, ``curves.png``, ``progress.png``; :mod:`bench_report`) gives each
method's mean ± std over ``--seeds`` and its *time to quality*: the training seconds until test PSNR first reaches
the ``--reference`` method's final PSNR (mean over seeds) minus 0.1 dB.

Methods: a registered method name, then optionally ``:VARIANT`` (vlm-fastgs: ``default`` for gsplat's
DefaultStrategy, ``legacy`` for the FastGS settings before FastGS-faithful scores and early growth,
``FastGSStrategy.legacy()``), ``+SOURCE`` (guidance source: ``image-evidence``, ``vlm``, ``boxes`` with
``--boxes-file``; unguided without it) and
``@FIELD=VALUE,...`` (FastGS strategy fields, e.g. ``vlm-fastgs@early_refine_stop_iter=2000``, model fields, e.g.
``vlm-fastgs@num_downscales=0``, guidance fields, e.g. ``vlm-fastgs+boxes@subject_grow=true``, phase schedule
fields, e.g. ``vlm-fastgs+image-evidence@detail_every=0`` (phase 1 off), or dataparser
fields, e.g. ``vlm-fastgs@random_far_share=0.3``).

Usage (GPU; all runs of a scene in one call, 9 at a time)::

    python benchmarks/compare_methods.py --data ../shared/data/desk_vr --downscale 2 --iterations 20000 \\
        --out docs/benchmarks/desk_vr_2x --seeds 42 7 123 --jobs 9 \\
        --methods splatfacto vlm-fastgs:legacy vlm-fastgs vlm-fastgs+image-evidence

Without ``--run-one``, every (method, seed) without a finished ``<out>/<method>_s<seed>.json`` runs (logs in
``<out>/logs/``), then the report is written; a re-run resumes. ``--report-only`` writes the report from existing
JSON files.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_report sits beside this script
import bench_report  # noqa: E402
from bench_eval import EvalCurve, cut_run, evaluate  # noqa: E402
from bench_regions import load_regions, region_table  # noqa: E402
from bench_report import guidance_table, phase_table  # noqa: E402,F401  (the report's tables, importable from here)

EVAL_STEPS = (1000, 2000, 4000, 6000, 8000, 11000, 14000, 17000, 20000)
"""Steps of the eval curve in a 20k-step run (scaled to shorter budgets)."""
PROGRESS_STEPS = (2000, 4000, 8000, 14000, 20000)
"""Steps at which the fixed test view is saved for the progress picture (scaled likewise)."""
FULL_BUDGET = 20000


def scaled_steps(steps: Sequence[int], iterations: int, full: int = FULL_BUDGET) -> List[int]:
    """``steps`` of a ``full``-step run scaled to ``iterations`` (each at least 1, at most ``iterations``), sorted,
    duplicates dropped."""
    return sorted({min(iterations, max(1, round(s * iterations / full))) for s in steps})


def parse_method(method: str) -> Dict:
    """``NAME[:VARIANT][+SOURCE][@FIELD=VALUE,...]`` into its parts (see the module docstring)."""
    method, _, overrides = method.partition("@")
    method, _, source = method.partition("+")
    name, _, variant = method.partition(":")
    fields = dict(item.split("=", 1) for item in overrides.split(",") if item) if overrides else {}
    return {"name": name, "variant": variant, "source": source, "overrides": fields}


def _typed(current, text: str):
    """``text`` converted to the type of the field's ``current`` value."""
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(current, int):
        return int(float(text))
    if isinstance(current, float):
        return float(text)
    return text


def _override(pipeline_config, fields: Dict[str, str]) -> None:
    """Set string ``fields`` on ``pipeline_config``: FastGS strategy fields on its model's ``fastgs``, model fields
    (e.g. ``num_downscales``, ``sh_degree_interval``) on the model config, guidance fields (e.g. ``subject_grow``,
    ``spawn_budget``) on its ``guidance``, phase schedule fields (e.g. ``detail_every=0`` turns phase 1 off) on
    ``guidance.schedule``, dataparser fields (e.g. ``random_far_share``) on its datamanager's
    dataparser, each converted to the field's type."""
    model_config = pipeline_config.model
    strategy = model_config.fastgs
    known = {f.name for f in dataclasses.fields(strategy)}
    guidance = getattr(pipeline_config, "guidance", None)
    dataparser = getattr(pipeline_config.datamanager, "dataparser", None)
    values = {}
    for key, text in fields.items():
        if key in known:
            values[key] = _typed(getattr(strategy, key), text)
        elif key in {f.name for f in dataclasses.fields(model_config)}:
            setattr(model_config, key, _typed(getattr(model_config, key), text))
        elif guidance is not None and key in {f.name for f in dataclasses.fields(guidance)}:
            setattr(guidance, key, _typed(getattr(guidance, key), text))
        elif guidance is not None and key in {f.name for f in dataclasses.fields(guidance.schedule)}:
            guidance.schedule = dataclasses.replace(guidance.schedule,
                                                    **{key: _typed(getattr(guidance.schedule, key), text)})
        elif dataparser is not None and key in {f.name for f in dataclasses.fields(dataparser)}:
            setattr(dataparser, key, _typed(getattr(dataparser, key), text))
        else:
            raise SystemExit(f"error: neither FastGSStrategy, {type(model_config).__name__}, the guidance config, "
                             f"its schedule nor the dataparser has a field {key!r}")
    model_config.fastgs = dataclasses.replace(strategy, **values)


def trainer_config(method: str, args: argparse.Namespace):
    """The nerfstudio TrainerConfig of ``method`` with the shared scene, init, seed (``args.seed``) and budget.

    ``method`` is ``NAME[:VARIANT][+SOURCE][@FIELD=VALUE,...]`` (module docstring). Without a ``+SOURCE``, vlm-fastgs
    trains unguided (``guidance.source none``), as the recorded FastGS-strategy runs did.
    """
    from nerfstudio.configs.method_configs import all_methods

    from splat_core.data.scene_dataparser import SceneDataParserConfig
    from splat_core.strategy import FastGSStrategy

    parts = parse_method(method)
    name, variant, source = parts["name"], parts["variant"], parts["source"]
    config = copy.deepcopy(all_methods[name])  # the registry's config is shared: a variant must not leak into it
    if variant == "legacy":
        config.pipeline.model.strategy = "fastgs"
        config.pipeline.model.fastgs = FastGSStrategy.legacy()
    elif variant:
        config.pipeline.model.strategy = variant
    config.pipeline.datamanager.dataparser = SceneDataParserConfig(
        data=Path(args.data), downscale_factor=args.downscale, init=args.init,
        num_random_points=args.num_random, init_seed=args.seed, eval_mode="interval", eval_interval=8,
    )
    if parts["overrides"]:
        if not hasattr(config.pipeline.model, "fastgs"):
            raise SystemExit(f"error: {name} has no FastGS strategy fields to set")
        _override(config.pipeline, parts["overrides"])
    if hasattr(config.pipeline, "guidance"):
        config.pipeline.guidance.source = source or "none"
        if args.vlm_model_path:
            config.pipeline.vlm.model_path = args.vlm_model_path
        if source == "boxes":
            if not getattr(args, "boxes_file", None):
                raise SystemExit("error: '+boxes' methods need --boxes-file")
            config.pipeline.guidance.boxes_file = Path(args.boxes_file)
    elif source:
        raise SystemExit(f"error: {name} has no guidance phases; drop '+{source}'")
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
    if getattr(args, "compress_schedule", False):
        compress_schedule(config, args.iterations)
    for group in config.optimizers.values():  # stretch the lr decays over the budget, as each method's 30k/20k does
        sched = group.get("scheduler")
        if sched is not None and hasattr(sched, "max_steps"):
            sched.max_steps = args.iterations
    return config


def compress_schedule(config, iterations: int, full: int = FULL_BUDGET) -> None:
    """Scale a vlm-fastgs config's step counts from a ``full``-step run to ``iterations`` steps, as
    ``vlm-fastgs-demo`` does (:func:`vlm_instruct_gs.demo.schedule_steps`: FastGS refinement, early growth, resets
    and final pruning, the guidance phase windows and apply delay), plus the model's resolution and SH-degree
    schedules; each count by :func:`vlm_instruct_gs.demo.scale_steps`. For short CPU runs that keep a 20k run's
    shape."""
    from vlm_instruct_gs.demo import scale_steps, schedule_steps

    if not hasattr(config.pipeline, "guidance"):
        raise SystemExit("error: --compress-schedule applies to vlm-fastgs methods only")
    scale = iterations / full

    def set_path(owner, path: List[str], value):  # a frozen dataclass (GuidanceSchedule) is replaced, not mutated
        if len(path) > 1:
            value = set_path(getattr(owner, path[0]), path[1:], value)
        if dataclasses.is_dataclass(owner) and owner.__dataclass_params__.frozen:
            return dataclasses.replace(owner, **{path[0]: value})
        setattr(owner, path[0], value)
        return owner

    for flag, steps in schedule_steps(config.pipeline).items():
        set_path(config, flag.removeprefix("--").replace("-", "_").split("."), scale_steps(steps, scale))
    model = config.pipeline.model
    model.resolution_schedule = scale_steps(model.resolution_schedule, scale)
    model.sh_degree_interval = scale_steps(model.sh_degree_interval, scale)


def read_curves(run_dir: Path) -> Dict[str, List[List[float]]]:
    """``{"loss": [[step, value], ...], "gaussians": [...]}`` from the run's tensorboard events: the loss to 5
    significant digits (TensorBoard stores float32; the full repr tripled every record's size for nothing), the
    Gaussian counts exact."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    wanted = {"loss": "Train Loss", "gaussians": "Train Metrics Dict/gaussian_count"}

    def value(key: str, v: float) -> float:
        return float(f"{v:.5g}") if key == "loss" else v

    return {k: [[e.step, value(k, e.value)] for e in acc.Scalars(t)] for k, t in wanted.items() if t in tags}


def result_json(result: Dict) -> str:
    """A run's record as JSON: indented, but each curve on one line (indenting 2,000 pairs made most of its bytes)."""
    curves = result.get("curves", {})
    text = json.dumps({**result, "curves": {k: f"@{k}@" for k in curves}}, indent=1)
    for k, curve in curves.items():
        text = text.replace(json.dumps(f"@{k}@"), json.dumps(curve, separators=(",", ":")))
    return text


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
    snapshotting views and applying answers (of which waiting for the source), and queries dropped because the source
    fell behind.
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
        "main_thread_wait_s": controller.wait_seconds,
        "dropped_queries": controller.worker.dropped,
    }




def _relative(path: str, root: str) -> str:
    """``path`` relative to the output folder ``root`` (the record stays readable when the folder moves)."""
    return os.path.relpath(Path(path).resolve(), Path(root).resolve())


def run_name(method: str, seed: int) -> str:
    """File stem of a run's result: ``<method>_s<seed>`` with ``:``/``+``/``@``/``=``/``,`` made path-safe."""
    safe = method
    for ch, sub in ((":", "-"), ("+", "-"), ("@", "--"), ("=", "-"), (",", "-")):
        safe = safe.replace(ch, sub)
    return f"{safe}_s{seed}"


def seed_like_ns_train(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators as ``ns-train`` does before set-up (nerfstudio's
    ``train_loop``), so a run here trains as ``ns-train --machine.seed SEED`` would: the training-view order,
    splatfacto's random backgrounds and the view scores' draws then follow the seed. Without it they came from an
    unseeded process, and two CPU runs of one command and seed differed from the first eval on."""
    from nerfstudio.scripts.train import _set_random_seed

    _set_random_seed(seed)


def run_one(method: str, args: argparse.Namespace) -> Dict:
    import torch

    from splat_core.compat import offline_safe_lpips

    config = trainer_config(method, args)
    # One folder per run even when runs of one method start in the same second (nerfstudio's timestamp has
    # 1 s resolution): name, seed, time and process id.
    config.timestamp = f"{run_name(method, args.seed)}_{time.strftime('%Y-%m-%d_%H%M%S')}_{os.getpid()}"
    config.save_config()
    seed_like_ns_train(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    with offline_safe_lpips():  # splatfacto builds LPIPS in populate_modules, which needs a download otherwise
        trainer.setup()
    eval_steps = args.eval_steps or scaled_steps(EVAL_STEPS, args.iterations)
    progress = scaled_steps(PROGRESS_STEPS, args.iterations)
    regions = load_regions(args.region_boxes)  # read once: the eval curve and the final eval use the same regions
    curve = EvalCurve(trainer.pipeline, eval_steps, progress, Path(args.out) / "progress" / run_name(method, args.seed),
                      args.coverage_threshold, points_file=Path(args.out) / "partial" / f"{run_name(method, args.seed)}.jsonl",
                      regions=regions)
    trainer.callbacks.append(curve.callback())
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    curve.start()
    trainer.train()
    wall = curve.train_seconds()
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    pipeline = trainer.pipeline
    pipeline.eval()
    import gsplat

    curves = read_curves(config.get_base_dir())
    phase_ends = phase_boundaries(config)
    checkpoints = sorted((config.get_base_dir() / "nerfstudio_models").glob("step-*.ckpt"))
    return {
        "method": method,
        "seed": args.seed,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": str(date.today()),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "versions": {"torch": torch.__version__, "gsplat": gsplat.__version__},
        "metrics": evaluate(pipeline, args.coverage_threshold, regions=regions),
        "coverage_threshold": args.coverage_threshold,
        "num_gaussians": int(pipeline.model.num_points),
        "eval_curve": curve.points,
        "eval_seconds": curve.eval_seconds,
        "progress_images": {str(k): _relative(v, args.out) for k, v in sorted(curve.images.items())},
        "progress_gt": _relative(curve.gt, args.out) if curve.gt else None,
        "phase_ends": phase_ends,
        "gaussians_at_phase_end": counts_at(curves.get("gaussians", []), phase_ends),
        "guidance": guidance_summary(pipeline),
        "vlm_model_path": args.vlm_model_path if "+vlm" in method else None,
        "train_wall_s": wall,
        "peak_gpu_mem_gib": peak,
        "concurrent_jobs": args.jobs,
        "config": str(config.get_base_dir() / "config.yml"),
        "checkpoint": str(checkpoints[-1]) if checkpoints else None,
        "curves": curves,
    }


def write_report(args: argparse.Namespace, results: List[Dict]) -> None:
    """``results.json``, ``results.md`` (summary over seeds, eval curve, per-phase counts, guidance cost),
    ``curves.png`` and ``progress.png`` under --out."""
    out = Path(args.out)
    finished = [r for r in results if r.get("cut_at_step") is None] or results  # cut runs hold their points only
    gpu = ", ".join(sorted({r.get("gpu", "unknown") for r in finished}))
    seeds = sorted({r.get("seed") for r in results if r.get("seed") is not None})
    jobs = sorted({r.get("concurrent_jobs") or 1 for r in finished})
    meta = {"date": ", ".join(sorted({r.get("date", "unknown") for r in finished})), "gpu": gpu,
            "commands": [r["command"] for r in finished if r.get("command")], "data": str(args.data),
            "downscale": args.downscale, "iterations": args.iterations, "num_random": args.num_random,
            "seeds": seeds, "init": args.init, "reference": args.reference, "concurrent_jobs": jobs}
    target = bench_report.quality_target(results, args.reference)
    for r in results:
        r["time_to_quality"] = bench_report.time_to_quality(r, target)
    (out / "results.json").write_text(json.dumps({"meta": meta, "quality_target_psnr": target, "results": results},
                                                 indent=1))
    start = f"{args.num_random} random points" if args.init == "random" else "SfM points"
    summary = bench_report.summary_table(results, args.reference, args.iterations)
    threshold = next((r["coverage_threshold"] for r in results if "coverage_threshold" in r), args.coverage_threshold)
    ttq = ("no run of the reference method in this record" if target is None else
           f"training seconds until test PSNR first reaches {target:.2f} dB ({args.reference}'s final PSNR, mean "
           f"over its seeds, minus {bench_report.QUALITY_MARGIN_DB} dB), at the eval points")
    md = [f"# {Path(args.data).name} at {args.downscale}x, {args.iterations} iterations, from {start}", "",
          f"GPU: {gpu}; date: {meta['date']}; seeds {', '.join(map(str, seeds))}; runs at a time on the GPU: "
          f"{', '.join(map(str, jobs))} (wall times compare within this record only)", "",
          "Commands (one process per run):", "", *[f"- `{c}`" for c in sorted(set(meta["commands"]))], "",
          "Mean ± std over seeds.", "", *summary, "", *bench_report.cut_notes(results), "",
          f"Coverage: fraction of test pixels whose mean absolute RGB error is below {threshold}. Time to quality: "
          f"{ttq}. Train wall excludes the eval-curve evaluations.", ""]
    for title, key, spec in (("Test PSNR (dB) at each eval step", "psnr", ".2f"),
                             ("Test coverage at each eval step", "coverage", ".3f"),
                             ("Training wall time (s, eval excluded) at each eval step", "wall_s", ".0f"),
                             ("Gaussians at each eval step", "num_gaussians", ",.0f")):
        rows = bench_report.curve_table(results, key, spec)
        if rows:
            md += [f"## {title}", "", *rows, ""]
        paired = bench_report.paired_table(results, args.reference) if key == "psnr" else []
        if paired:
            md += [f"## Test PSNR minus {args.reference}'s of the same seed (dB), at each eval step", "", *paired, ""]
    phases, guidance = bench_report.phase_table(results), bench_report.guidance_table(results)
    if phases:
        md += ["## Gaussians at the end of each guidance phase", "", *phases, ""]
    if guidance:
        md += ["## Guidance", "", *guidance, ""]
    regions = region_table(results)
    if regions:
        md += ["## Test PSNR inside and outside the regions of --region-boxes at each phase's end", "", *regions, ""]
    phase_ends = next((r["phase_ends"] for r in results if r.get("phase_ends")), {})
    bench_report.plot_curves(results, out / "curves.png", target, phase_ends, args.iterations)
    md += ["![eval curve, loss and Gaussians](curves.png)", ""]
    if bench_report.plot_progress(results, out / "progress.png", out, seed=(args.seeds or [None])[0]):
        md += ["One fixed test view during training (first seed):", "", "![progress](progress.png)", ""]
    (out / "results.md").write_text("\n".join(md))
    print("\n".join([*summary, "", *phases, "", *guidance]))


def build_gsplat_once() -> None:
    """Build (or load) gsplat's JIT-compiled CUDA extension in this process before parallel runs start: processes
    that each start the build at once race on its cache folder, and the losers fail to import ``gsplat_cuda.so``
    (seen on an H200, 2026-12-01). Does nothing without CUDA."""
    import torch

    if torch.cuda.is_available():
        from gsplat.cuda._backend import _C  # noqa: F401  (importing builds the extension)


def run_all(args: argparse.Namespace, argv: Sequence[str]) -> List[str]:
    """Run every (method, seed) of ``args`` without a result JSON, ``args.jobs`` processes at a time, each logging
    to ``<out>/logs/<run>.log``. Returns the runs that failed."""
    out = Path(args.out)
    todo = [(m, s) for s in args.seeds for m in args.methods if not (out / f"{run_name(m, s)}.json").exists()]
    (out / "logs").mkdir(exist_ok=True)
    if todo and args.jobs > 1:
        build_gsplat_once()
    running: List = []
    failed: List[str] = []
    while todo or running:
        while todo and len(running) < max(1, args.jobs):
            method, seed = todo.pop(0)
            name = run_name(method, seed)
            log = open(out / "logs" / f"{name}.log", "w")
            cmd = [sys.executable, __file__, *argv, "--run-one", method, "--seed", str(seed)]
            running.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"started {name}", flush=True)
        time.sleep(0.5)
        for item in list(running):
            name, proc, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                print(f"finished {name}: exit {proc.returncode}", flush=True)
                if proc.returncode != 0:
                    failed.append(name)
    return failed


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--downscale", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--num-random", type=int, default=100)
    parser.add_argument("--init", choices=["random", "sfm"], default="random")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="each method runs once per seed")
    parser.add_argument("--seed", type=int, default=42, help="the seed of a --run-one run")
    parser.add_argument("--methods", nargs="+", default=["splatfacto", "vlm-fastgs:legacy", "vlm-fastgs"])
    parser.add_argument("--reference", default="vlm-fastgs:legacy",
                        help="method whose final PSNR (mean over seeds) minus 0.1 dB defines time to quality")
    parser.add_argument("--eval-steps", type=int, nargs="+", default=None,
                        help="steps of the eval curve (default: 1k 2k 4k 6k 8k 11k 14k 17k 20k scaled to --iterations)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (separate processes, one GPU)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs-dir", default=None, help="where ns-train run folders go (default: OUT/runs)")
    parser.add_argument("--vlm-model-path", default=None,
                        help="--pipeline.vlm.model-path of '+vlm' methods (e.g. a tiny_vlm folder)")
    parser.add_argument("--coverage-threshold", type=float, default=0.1,
                        help="per-pixel mean absolute RGB error (0-1) below which a test pixel counts as covered")
    parser.add_argument("--compress-schedule", action="store_true",
                        help="scale vlm-fastgs's step schedules from 20k steps to --iterations (short CPU runs)")
    parser.add_argument("--boxes-file", default=None, help="--pipeline.guidance.boxes-file of '+boxes' methods")
    parser.add_argument("--region-boxes", default=None,
                        help="boxes file (--pipeline.guidance.boxes-file format) with regions of the eval images: the "
                             "eval curve adds PSNR inside and outside each phase's region")
    parser.add_argument("--run-one", default=None)
    parser.add_argument("--report-only", action="store_true")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.run_one:
        result = run_one(args.run_one, args)
        (out / f"{run_name(args.run_one, args.seed)}.json").write_text(result_json(result))
        return
    failed = [] if args.report_only else run_all(args, argv)
    results = []
    for m in args.methods:
        for seed in args.seeds:
            finished = out / f"{run_name(m, seed)}.json"
            if finished.exists():
                results.append(json.loads(finished.read_text()))
            elif cut := cut_run(m, seed, out / "partial" / f"{run_name(m, seed)}.jsonl"):  # cut by a time limit
                cut["phase_ends"] = phase_boundaries(trainer_config(m, args))
                results.append(cut)
    if results:
        write_report(args, results)
    if failed:
        raise SystemExit(f"error: {len(failed)} runs failed (logs in {out / 'logs'}): {', '.join(failed)}")


if __name__ == "__main__":
    main()
