"""Side-by-side benchmark: splatfacto vs vlm-fastgs from the same random points, seed, budget and scene.

Each method trains in its own process (``--run-one``) so peak GPU memory is its own. Both use the project's scene
dataparser with ``init=random``: the same ``--num-random`` points, drawn where the training cameras look from the
same seed, reach each model as its initial point cloud. After training, the eval split is scored in the same process
(as ``ns-eval`` does), and loss / Gaussian-count curves are read from the run's tensorboard events.

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
from typing import Dict, List

METRIC_COLUMNS = ("psnr", "ssim", "lpips")


def trainer_config(method: str, args: argparse.Namespace):
    """The nerfstudio TrainerConfig of ``method`` with the shared scene, init, seed and budget.

    ``method`` is a registered method name, optionally with a vlm-fastgs strategy variant after a colon
    (``vlm-fastgs:default`` trains with gsplat's DefaultStrategy) and a guidance source after a plus
    (``vlm-fastgs+image-evidence``, ``vlm-fastgs+vlm``). Without a plus, vlm-fastgs trains unguided
    (``guidance.source none``), as the recorded FastGS-strategy runs did.
    """
    from nerfstudio.configs.method_configs import all_methods

    from vlm_instruct_gs.data.scene_dataparser import SceneDataParserConfig

    method, _, source = method.partition("+")
    name, _, variant = method.partition(":")
    config = all_methods[name]
    if variant:
        config.pipeline.model.strategy = variant
    if hasattr(config.pipeline, "guidance"):
        config.pipeline.guidance.source = source or "none"
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


def evaluate(pipeline) -> Dict[str, float]:
    """Mean PSNR / SSIM / LPIPS over the eval split, with splatfacto's metric definitions for every method.

    nerfstudio's ``get_average_eval_image_metrics`` calls the model's own metric code, whose LPIPS needs weights that
    cannot be downloaded offline; this loop computes the same metrics with one offline-safe LPIPS for all methods.
    """
    import torch
    from torchmetrics.image import PeakSignalNoiseRatio

    from vlm_instruct_gs.compat import OptionalLPIPS

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
            row = {"psnr": float(psnr(pred_b, gt_b)), "ssim": float(model.ssim(gt_b, pred_b))}
            value = lpips(pred_b, gt_b)
            if value is not None:
                row["lpips"] = float(value)
            rows.append(row)
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} | {"num_eval_images": float(len(rows))}


def run_one(method: str, args: argparse.Namespace) -> Dict:
    import torch

    from vlm_instruct_gs.compat import offline_safe_lpips

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

    return {
        "method": method,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "date": str(date.today()),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "versions": {"torch": torch.__version__, "gsplat": gsplat.__version__},
        "metrics": evaluate(pipeline),
        "num_gaussians": int(pipeline.model.num_points),
        "train_wall_s": wall,
        "peak_gpu_mem_gib": peak,
        "config": str(config.get_base_dir() / "config.yml"),
        "curves": read_curves(config.get_base_dir()),
    }


def write_report(args: argparse.Namespace, results: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    gpu = ", ".join(sorted({r.get("gpu", "unknown") for r in results}))
    header = ("| method | PSNR | SSIM | LPIPS | Gaussians | train wall (s) | s / 1k iter | peak GPU mem (GiB) |\n"
              "|---|---|---|---|---|---|---|---|")
    rows = []
    for r in results:
        m = r["metrics"]
        lp = f"{m['lpips']:.3f}" if "lpips" in m else "n/a"
        rows.append(
            f"| {r['method']} | {m['psnr']:.2f} | {m['ssim']:.3f} | {lp} | {r['num_gaussians']:,} | "
            f"{r['train_wall_s']:.0f} | {1000 * r['train_wall_s'] / args.iterations:.1f} | {r['peak_gpu_mem_gib']:.2f} |"
        )
    meta = {"date": ", ".join(sorted({r.get("date", "unknown") for r in results})), "gpu": gpu,
            "commands": [r.get("command", "") for r in results], "data": str(args.data),
            "downscale": args.downscale, "iterations": args.iterations, "num_random": args.num_random,
            "seed": args.seed, "init": args.init}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    start = f"{args.num_random} random points" if args.init == "random" else "SfM points"
    md = [f"# {Path(args.data).name} at {args.downscale}x, {args.iterations} iterations, from {start}",
          "", f"GPU: {gpu}; date: {meta['date']}; seed {args.seed}", "", "Commands (one process per method):", "",
          *[f"- `{c}`" for c in meta["commands"]], "",
          header, *rows, "", "![curves](curves.png)", ""]
    (out / "results.md").write_text("\n".join(md))
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
    axes[0].set(title="training loss (running mean of 25 logs)", xlabel="iteration", yscale="log")
    axes[1].set(title="number of Gaussians", xlabel="iteration")
    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    print("\n".join([header, *rows]))


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
