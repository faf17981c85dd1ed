"""Benchmark of the fmgs language field: feature-training time and peak memory, relevancy-map render speed, fidelity.

One process, one scene:

1. Teachers: OpenCLIP ViT-B-16 and DINO ViT-S/8 from local weights (``--clip-pretrained``, ``--dino-pretrained``);
   when they cannot be loaded (offline machine, no cache) or with ``--tiny-teachers``, tiny random teachers with the
   real channel counts (512 / 384) are written and used instead, so field and rasteriser costs match the real method
   but teacher-map time and feature fidelity are meaningless. The output says which ran, and why.
2. Geometry: the Gaussians of ``--geometry-ckpt`` (a vlm-fastgs or fmgs checkpoint of the same scene and dataparser
   settings), or ``--num-gaussians`` random Gaussians where the training cameras look (about 200k by default).
3. ``--steps`` feature-distillation steps (FMGS losses, the method's optimiser, Gaussians frozen): wall time per step
   and peak GPU memory (allocated and reserved).
4. Feature fidelity (mean cosine of rendered vs teacher CLIP/DINO maps) and PSNR/SSIM on the eval views, as ns-eval.
5. Relevancy maps at ``--render-width`` x ``--render-height`` (1920 x 1080): ``--renders`` renders of one text query
   after ``--warmup`` untimed ones, timed with CUDA events: the whole eval output (RGB + feature map at half resolution
   + relevancy + turbo composite), the relevancy map alone (basis-coefficient render, :mod:`fmgs_field.projection`)
   and the reference relevancy from the full CLIP + DINO feature map.

Writes ``results.json`` and ``results.md`` (GPU name, date, command, versions) under ``--out``.

Usage (GPU)::

    python benchmarks/bench_fmgs.py --data ../shared/data/desk_vr --downscale 2 --out docs/benchmarks/fmgs_desk_vr
    python benchmarks/bench_fmgs.py --tiny --out /tmp/bench_fmgs      # CPU smoke run, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_renders(fn: Callable[[], object], count: int, warmup: int, device: torch.device) -> Dict[str, float]:
    """Mean milliseconds per call of ``fn`` over ``count`` calls after ``warmup`` untimed ones (CUDA events on GPU)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(count):
            fn()
        end.record()
        torch.cuda.synchronize(device)
        total_ms = start.elapsed_time(end)
    else:
        t0 = time.perf_counter()
        for _ in range(count):
            fn()
        total_ms = 1000.0 * (time.perf_counter() - t0)
    ms = total_ms / max(count, 1)
    return {"ms_per_frame": ms, "fps": 1000.0 / ms if ms > 0 else float("inf"), "renders": count}


def resolve_teachers(args: argparse.Namespace, device: str) -> Tuple[object, object, Dict[str, str]]:
    """Teacher configs: the real ones when they load, else tiny random ones (512 / 384 channels)."""
    from fmgs_field.teachers import CLIPTeacherConfig, DINOTeacherConfig
    from fmgs_field.testing.tiny import write_tiny_teachers

    reason = "--tiny-teachers given"
    if not args.tiny_teachers:
        clip = CLIPTeacherConfig(model_name=args.clip_model, pretrained=args.clip_pretrained)
        dino = DINOTeacherConfig(backend=args.dino_backend, pretrained=args.dino_pretrained)
        try:
            for config in (clip, dino):  # load once to check; the datamanager loads them again
                config.setup().to(device)
            return clip, dino, {"kind": "real", "clip": args.clip_pretrained, "dino": args.dino_pretrained}
        except Exception as err:  # MissingWeightsError, or a hub/cache error of the libraries
            reason = f"real weights unavailable ({type(err).__name__}: {str(err)[:300]})"
    clip, dino = write_tiny_teachers(Path(args.out) / "tiny_teachers", clip_dim=512, dino_dim=384, seed=args.seed)
    note = ("TINY RANDOM TEACHERS: training and render timings are representative; teacher-map time and feature "
            "fidelity are not; " + reason)
    print(note, flush=True)
    return clip, dino, {"kind": "tiny-random", "note": note}


def build_pipeline(args: argparse.Namespace, clip, dino, device: str):
    """The fmgs pipeline on the scene, features from step 0, Gaussians from the checkpoint or random points."""
    from fmgs_field.data.fmgs_datamanager import FMGSDataManagerConfig
    from fmgs_field.field import FMGSFieldConfig
    from fmgs_field.fmgs_model import FMGSModelConfig
    from fmgs_field.fmgs_pipeline import FMGSPipelineConfig
    from splat_core.data.scene_dataparser import SceneDataParserConfig

    field = FMGSFieldConfig()
    if args.tiny:
        field = FMGSFieldConfig(grid_levels=(2, 2), grid_resolutions=((4, 16), (16, 32)), log2_hashmap_sizes=(12, 12),
                                features_per_level=4, hidden_width=32, implementation="torch")
    parser = SceneDataParserConfig(
        data=Path(args.data), downscale_factor=args.downscale, eval_mode="interval", eval_interval=8,
        init="random", num_random_points=100 if args.geometry_ckpt else args.num_gaussians, init_seed=args.seed,
    )
    config = FMGSPipelineConfig(
        datamanager=FMGSDataManagerConfig(dataparser=parser, clip=clip, dino=dino, cache_images_type="uint8",
                                          feature_cache_dir=Path(args.out) / "feature_cache"),
        model=FMGSModelConfig(fmgs_field=field, feature_start_step=0, num_downscales=0),
    )
    torch.manual_seed(args.seed)
    pipeline = config.setup(device=device, test_mode="val")
    if args.geometry_ckpt:
        state = torch.load(args.geometry_ckpt, map_location="cpu", weights_only=False)
        pipeline.load_pipeline(state["pipeline"], state["step"])
        # feature steps continue the checkpoint's step count, as ns-train --load-checkpoint does: splatfacto's
        # step-driven schedules (SH degree, resolution) must stay where the geometry finished
        pipeline.model.config.feature_start_step = state["step"] + 1
    return pipeline


def train_features(pipeline, steps: int, device: torch.device) -> Dict[str, float]:
    """``steps`` feature steps with the method's optimisers; wall time and peak memory."""
    from nerfstudio.engine.optimizers import Optimizers

    from fmgs_field.fmgs_config import fmgs
    from fmgs_field.fmgs_pipeline import train_feature_steps

    model = pipeline.model
    optimizers = Optimizers(dict(fmgs.config.optimizers), model.get_param_groups())
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_ms: List[float] = []
    _sync(device)
    t0 = last = time.perf_counter()

    def timed(_step: int) -> None:
        nonlocal last
        _sync(device)
        now = time.perf_counter()
        step_ms.append(1000.0 * (now - last))
        last = now

    losses = train_feature_steps(pipeline, optimizers, steps, model.config.feature_start_step, after_step=timed)
    total = time.perf_counter() - t0
    steady = step_ms[len(step_ms) // 5 :] or step_ms
    out = {"steps": steps, "wall_s": total, "ms_per_step_mean": 1000.0 * total / max(steps, 1),
           "ms_per_step_median_after_warmup": statistics.median(steady) if steady else 0.0,
           "final_losses": {k: float(v.item()) for k, v in losses.items()} if steps else {}}
    if device.type == "cuda":
        out["peak_mem_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        out["peak_mem_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
    return out


def render_benchmark(pipeline, args: argparse.Namespace, device: torch.device) -> Dict[str, object]:
    """Relevancy renders at the requested resolution from the first eval (or training) camera."""
    from nerfstudio.cameras.cameras import Cameras

    model = pipeline.model
    dm = pipeline.datamanager
    source = dm.eval_dataset.cameras if len(dm.eval_dataset) else dm.train_dataset.cameras
    cam = source[0:1]
    s = args.render_width / float(cam.width[0, 0])
    camera = Cameras(
        camera_to_worlds=cam.camera_to_worlds, fx=cam.fx * s, fy=cam.fy * s,
        cx=torch.full_like(cam.cx, args.render_width / 2), cy=torch.full_like(cam.cy, args.render_height / 2),
        width=args.render_width, height=args.render_height,
    ).to(device)
    model.eval()
    model.clip_teacher.set_positives([args.query])

    def full() -> None:
        with torch.no_grad():
            model.get_outputs_for_camera(camera)

    def relevancy_only() -> None:  # what a text query costs: basis-coefficient render + relevancy
        model.render_relevancy(camera)

    def full_clip_map() -> None:  # the reference: all CLIP and DINO channels, then relevancy
        with torch.no_grad():
            model.clip_teacher.relevancy(model.render_feature_maps(camera)["fmgs_clip"])

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    result: Dict[str, object] = {
        "resolution": [args.render_width, args.render_height],
        "feature_map_resolution": [int(args.render_width * model.config.feature_resolution),
                                   int(args.render_height * model.config.feature_resolution)],
        "query": args.query,
        "output_keys": sorted(k for k in outputs if outputs[k] is not None),
        "full_output": time_renders(full, args.renders, args.warmup, device),
        "relevancy": time_renders(relevancy_only, args.renders, args.warmup, device),
        "relevancy_from_full_feature_map": time_renders(full_clip_map, args.renders, args.warmup, device),
    }
    def rebuild_basis() -> None:  # a cache miss: the field at every Gaussian, the Gram matrix and its eigenvectors
        model._query_cache = None
        model.clip_coefficients()

    result["basis_rebuild"] = time_renders(rebuild_basis, max(args.renders // 10, 1), 1, device)
    basis, _ = model.clip_coefficients()
    result["relevancy_channels"] = {"rendered": int(basis.shape[1]), "clip_dim": int(basis.shape[0]),
                                    "basis_tol": model.config.relevancy_basis_tol}
    with torch.no_grad():  # how far the fast path is from the reference on this view
        fast = model.render_relevancy(camera)
        ref = model.clip_teacher.relevancy(model.render_feature_maps(camera)["fmgs_clip"])
    result["relevancy_max_abs_diff"] = float((fast - ref).abs().max())
    if device.type == "cuda":
        result["peak_mem_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return result


def write_report(out: Path, results: Dict[str, object]) -> None:
    """``results.json`` and a short ``results.md``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    tr, rd, ev = results["training"], results["render"], results["eval"]

    def fmt(value: Optional[float], digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    scene = results["scene"]
    lines = [
        "# fmgs benchmark", "",
        f"GPU: {results['gpu']}; date: {results['date']}; torch {results['versions']['torch']}, gsplat "
        f"{results['versions']['gsplat']}, nerfstudio {results['versions']['nerfstudio']}", "",
        f"Command: `{results['command']}`", "",
        f"Teachers: **{results['teachers']['kind']}**" + (f" ({results['teachers']['note']})"
                                                           if "note" in results["teachers"] else ""), "",
        f"Scene: {scene['data']} ({scene['train_images']} train / {scene['eval_images']} eval images, "
        f"{scene['image_size']}), {scene['num_gaussians']:,} Gaussians ({scene['geometry']})", "",
        "| measure | value |", "|---|---|",
        f"| set-up incl. teacher maps of the train images | {fmt(results['setup_s'], 1)} s |",
        f"| feature training, {tr['steps']} steps | {fmt(tr['wall_s'], 1)} s "
        f"({fmt(tr['ms_per_step_median_after_warmup'], 1)} ms/step median) |",
        f"| peak GPU memory, training (allocated / reserved) | {fmt(tr.get('peak_mem_allocated_gib'), 2)} / "
        f"{fmt(tr.get('peak_mem_reserved_gib'), 2)} GiB |",
        f"| relevancy render {rd['resolution'][0]}x{rd['resolution'][1]}, full output | "
        f"{fmt(rd['full_output']['ms_per_frame'], 1)} ms ({fmt(rd['full_output']['fps'], 1)} fps) |",
        f"| relevancy map only ({rd['relevancy_channels']['rendered']} of {rd['relevancy_channels']['clip_dim']} "
        f"CLIP channels rendered, `fmgs_field.projection`) | {fmt(rd['relevancy']['ms_per_frame'], 1)} ms "
        f"({fmt(rd['relevancy']['fps'], 1)} fps) |",
        f"| rebuilding the basis and coefficients (once per change of Gaussians or field) | "
        f"{fmt(rd['basis_rebuild']['ms_per_frame'], 1)} ms |" if "basis_rebuild" in rd else "",
        f"| relevancy from the full CLIP + DINO map (reference) | "
        f"{fmt(rd['relevancy_from_full_feature_map']['ms_per_frame'], 1)} ms "
        f"({fmt(rd['relevancy_from_full_feature_map']['fps'], 1)} fps); max abs difference "
        f"{rd['relevancy_max_abs_diff']:.1e} |",
        f"| feature fidelity CLIP / DINO (eval views) | {fmt(ev.get('feature_fidelity_clip'))} / "
        f"{fmt(ev.get('feature_fidelity_dino'))} |",
        f"| PSNR / SSIM (eval views) | {fmt(ev.get('psnr'), 2)} / {fmt(ev.get('ssim'))} |",
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    """Runs the benchmark; returns the results dict (also written under ``--out``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="scene folder (COLMAP or transforms.json); default: built-in scene")
    parser.add_argument("--downscale", type=int, default=1, help="image downscale factor of the dataparser")
    parser.add_argument("--geometry-ckpt", type=Path, help="checkpoint whose Gaussians (and field, if fmgs) to use")
    parser.add_argument("--num-gaussians", type=int, default=200_000, help="random Gaussians when no checkpoint")
    parser.add_argument("--clip-model", default="ViT-B-16")
    parser.add_argument("--clip-pretrained", default="laion2b_s34b_b88k", help="checkpoint file or cached tag")
    parser.add_argument("--dino-backend", choices=["timm", "transformers"], default="timm")
    parser.add_argument("--dino-pretrained", default="vit_small_patch8_224_dino", help="file, folder or cached id")
    parser.add_argument("--tiny-teachers", action="store_true", help="use tiny random teachers (512/384 channels)")
    parser.add_argument("--steps", type=int, default=500, help="feature-distillation steps to time")
    parser.add_argument("--render-width", type=int, default=1920)
    parser.add_argument("--render-height", type=int, default=1080)
    parser.add_argument("--renders", type=int, default=100, help="timed relevancy renders")
    parser.add_argument("--warmup", type=int, default=5, help="untimed renders first")
    parser.add_argument("--query", default="a mug")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true",
                        help="CPU smoke preset: tiny field, 8-view 48x36 scene, 2k Gaussians, 5 steps, 3 renders at "
                             "64x36 (explicit flags win)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    if args.tiny:
        for name, value in (("num_gaussians", 2000), ("steps", 5), ("renders", 3), ("warmup", 1),
                            ("render_width", 64), ("render_height", 36)):
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    device_name = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    device = torch.device(device_name)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.data is None:
        from splat_core.data.synthetic_scene import write_synthetic_scene

        size = (48, 36) if args.tiny else (640, 480)
        args.data = write_synthetic_scene(args.out / "scene", num_views=8 if args.tiny else 24, width=size[0],
                                          height=size[1], seed=args.seed)

    from importlib.metadata import version

    clip, dino, teachers = resolve_teachers(args, device_name)
    t0 = time.perf_counter()
    pipeline = build_pipeline(args, clip, dino, device_name)
    setup_s = time.perf_counter() - t0  # mostly the training images' teacher maps (a second run hits the disk cache)
    dm = pipeline.datamanager
    image = dm.cached_train[0]["image"]
    training = train_features(pipeline, args.steps, device)
    evaluation = pipeline.get_average_eval_image_metrics() if len(dm.eval_dataset) else {}
    render = render_benchmark(pipeline, args, device)
    results: Dict[str, object] = {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "versions": {"torch": torch.__version__, "gsplat": version("gsplat"), "nerfstudio": version("nerfstudio"),
                     "cuda": torch.version.cuda},
        "teachers": teachers,
        "scene": {"data": str(args.data), "downscale": args.downscale, "train_images": len(dm.train_dataset),
                  "eval_images": len(dm.eval_dataset), "image_size": f"{image.shape[1]}x{image.shape[0]}",
                  "num_gaussians": int(pipeline.model.num_points),
                  "geometry": f"checkpoint {args.geometry_ckpt}" if args.geometry_ckpt else "random Gaussians in view"},
        "field": {"parameters": sum(p.numel() for p in pipeline.model.fmgs_field.parameters()),
                  "implementation": pipeline.model.fmgs_field.implementation, "tiny": bool(args.tiny)},
        "setup_s": setup_s,
        "training": training,
        "eval": {k: float(v) for k, v in evaluation.items()},
        "render": render,
    }
    write_report(args.out, results)
    print((args.out / "results.md").read_text(), flush=True)
    return results


if __name__ == "__main__":
    main()
