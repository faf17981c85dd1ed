"""The eval split scored during and after a benchmark run (:mod:`compare_methods`): splatfacto's metric definitions
for every method plus coverage and, with regions, masked PSNR; the training callback that records the eval curve
with the training wall time at each point; and the result of a run cut before its end, read back from those points."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from bench_regions import RegionErrors


def evaluate(pipeline, coverage_threshold: float = 0.1, with_lpips: bool = True,
             first_view: Optional[list] = None, regions: Optional[Callable] = None) -> Dict[str, float]:
    """Mean PSNR / SSIM / LPIPS over the eval split, with splatfacto's metric definitions for every method, and
    coverage: the fraction of test pixels whose mean absolute RGB error is below ``coverage_threshold``.

    nerfstudio's ``get_average_eval_image_metrics`` calls the model's own metric code, whose LPIPS needs weights that
    cannot be downloaded offline; this loop computes the same metrics with one offline-safe LPIPS for all methods.
    ``with_lpips=False`` leaves LPIPS out (the eval curve); ``first_view``, a list, receives the render and the ground
    truth ([H, W, 3] float in [0, 1]) of the first eval view. With ``regions`` (:func:`load_regions`) the result also
    has ``region_psnr``: per phase with a region on some eval image, :func:`region_psnr` inside and outside it (eval
    images without a region for the phase are left out of that phase). ``psnr_per_view`` lists each eval image's PSNR
    in the eval split's order (``psnr`` is their mean).
    """
    import torch
    from torchmetrics.image import PeakSignalNoiseRatio

    from splat_core.compat import OptionalLPIPS
    from splat_core.metrics import pixel_coverage

    model = pipeline.model
    psnr = PeakSignalNoiseRatio(data_range=1.0).to(model.device)
    lpips = OptionalLPIPS(normalize=True) if with_lpips else None
    rows: List[Dict[str, float]] = []
    region_errors = RegionErrors(regions) if regions is not None else None
    names = pipeline.datamanager.eval_dataset.image_filenames
    with torch.no_grad():
        for camera, batch in pipeline.datamanager.fixed_indices_eval_dataloader:
            outputs = model.get_outputs_for_camera(camera=camera)
            gt = model.composite_with_background(model.get_gt_img(batch["image"]), outputs["background"])
            gt_b = gt.permute(2, 0, 1)[None].to(model.device)
            pred_b = outputs["rgb"].permute(2, 0, 1)[None]
            row = {"psnr": float(psnr(pred_b, gt_b)), "ssim": float(model.ssim(gt_b, pred_b)),
                   "coverage": pixel_coverage(outputs["rgb"], gt.to(model.device), coverage_threshold)}
            value = lpips(pred_b, gt_b) if lpips is not None else None
            if value is not None:
                row["lpips"] = float(value)
            if region_errors is not None:
                name = Path(names[int(batch["image_idx"])]).name
                region_errors.add(name, outputs["rgb"], gt.to(model.device))
                if hasattr(model, "render_view"):  # the splat_core models: count Gaussians by footprint too
                    region_errors.add_gaussians(name, model.render_view(camera))
            if first_view is not None and not first_view:
                first_view.extend([outputs["rgb"].cpu(), gt.cpu()])
            rows.append(row)
    out = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]} | {"num_eval_images": float(len(rows))}
    out["psnr_per_view"] = [r["psnr"] for r in rows]  # which test views rise or fall, in eval-split order
    if region_errors is not None:
        out["region_psnr"] = region_errors.psnr()
    return out


def _save_png(image, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image.clamp(0, 1) * 255).round().byte().numpy()).save(path)
    return str(path)


class EvalCurve:
    """A training callback that scores the eval split at fixed steps, with the training wall time at each.

    ``wall_s`` at a point is the time since :meth:`start`, minus the time spent in earlier evals and in this one:
    CUDA is synchronised before each reading, so queued training work is counted as training. At the progress
    steps the first eval view's render is saved under ``image_dir``. Each point is also appended to ``points_file``
    (JSON lines) as it is measured, so a run cut short (a device call's time limit) keeps its curve so far.
    """

    def __init__(self, pipeline, eval_steps: Sequence[int], progress_steps: Sequence[int], image_dir: Path,
                 coverage_threshold: float, points_file: Optional[Path] = None, regions: Optional[Callable] = None):
        self.pipeline, self.image_dir, self.coverage_threshold = pipeline, image_dir, coverage_threshold
        self.points_file, self.regions = points_file, regions
        self.eval_steps, self.progress_steps = sorted(eval_steps), set(progress_steps)
        self.points: List[Dict[str, float]] = []
        self.images: Dict[int, str] = {}
        self.gt: Optional[str] = None
        self.eval_seconds = 0.0
        self._start = None

    def callback(self):
        """The nerfstudio ``TrainingCallback`` (after the iteration of loop step ``s``, i.e. at ``s + 1`` steps)."""
        from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

        return TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self,
                                iters=tuple(s - 1 for s in self.eval_steps))

    def start(self) -> None:
        self._sync()
        self._start = time.perf_counter()

    def train_seconds(self) -> float:
        """Training wall time so far, evals excluded."""
        self._sync()
        return time.perf_counter() - self._start - self.eval_seconds

    @staticmethod
    def _sync() -> None:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def __call__(self, step: int) -> None:
        wall = self.train_seconds()
        begin = time.perf_counter()
        done = step + 1
        first_view: list = []
        self.pipeline.eval()
        try:
            metrics = evaluate(self.pipeline, self.coverage_threshold, with_lpips=False, first_view=first_view,
                               regions=self.regions)
        finally:
            self.pipeline.train()
        self.points.append({"step": done, "wall_s": wall, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
                            "coverage": metrics["coverage"], "num_gaussians": int(self.pipeline.model.num_points),
                            "psnr_per_view": metrics["psnr_per_view"]})
        if "region_psnr" in metrics:
            self.points[-1]["region_psnr"] = metrics["region_psnr"]
        if self.points_file is not None:
            self.points_file.parent.mkdir(parents=True, exist_ok=True)
            with self.points_file.open("a") as f:
                f.write(json.dumps(self.points[-1]) + "\n")
        if done in self.progress_steps and first_view:
            self.images[done] = _save_png(first_view[0], self.image_dir / f"step_{done:06d}.png")
            if self.gt is None:
                self.gt = _save_png(first_view[1], self.image_dir / "ground_truth.png")
        self._sync()
        self.eval_seconds += time.perf_counter() - begin


def cut_run(method: str, seed: int, points_file: Path) -> Optional[Dict]:
    """The result dict of a run cut before its last step (e.g. by a device call's time limit): the eval points it
    wrote to ``points_file`` (``<out>/partial/<run>.jsonl``), ``cut_at_step`` (its last eval step), the progress
    images it saved (``<out>/progress/<run>/``) and no final metrics; None when it wrote no point."""
    if not points_file.is_file():
        return None
    points = [json.loads(line) for line in points_file.read_text().splitlines() if line.strip()]
    if not points:
        return None
    out = points_file.parent.parent
    progress = out / "progress" / points_file.stem  # the images its eval points saved (bench_eval.EvalCurve)
    images = {str(int(f.stem.split("_")[1])): str(f.relative_to(out)) for f in sorted(progress.glob("step_*.png"))}
    gt = progress / "ground_truth.png"
    return {"method": method, "seed": seed, "metrics": {}, "eval_curve": points, "cut_at_step": points[-1]["step"],
            "num_gaussians": points[-1]["num_gaussians"], "train_wall_s": None, "progress_images": images,
            "progress_gt": str(gt.relative_to(out)) if gt.is_file() else None}
