"""``fmgs-query``: relevancy heatmaps of text queries from a trained fmgs run, and per-Gaussian feature export.

Loads a run with nerfstudio's ``eval_setup`` (as ``ns-render``), sets the queries on the CLIP teacher and renders the
dataset cameras of one split or a camera path (ns-viewer's "Render" panel writes one). For each query ``i`` and frame
it writes the model's ``composited_{i}`` output: the turbo colour map of ``clip(relevancy - 0.5, 0, 1)`` (rescaled
by its maximum in the frame) over the rendered RGB, as LERF's ``composited_{i}``::

    fmgs-query --load-config outputs/scene/fmgs/<timestamp>/config.yml --query "a mug;a plate" --output-dir renders
    fmgs-query --load-config ... --query "a mug" --camera-path camera_paths/orbit.json --output-dir renders
    fmgs-query --load-config ... --export-gaussian-features
    fmgs-query --load-config ... --eval-labels lerf_ovs/label/teatime

Frames go to ``<output-dir>/<query>/<frame>.png``; ``--save-relevancy`` adds the raw relevancy as ``.npy`` (float16,
[H, W]). ``--export-gaussian-features`` writes the field's CLIP [N, Dc] and DINO [N, Dd] outputs at the N Gaussian
means (float16, with means and opacities) to ``<run dir>/fmgs_gaussian_features-<step>.pt`` (or ``.npz``): FMGS keeps
no per-Gaussian vectors (the checkpoint holds the hash grids and heads), so this is how to get them.

``--eval-labels`` evaluates a run against a LERF-OVS label folder after training (``ns-eval`` takes no config
overrides): it sets the datamanager's ``eval_labels``, puts every image in the eval split (LangSplat evaluates the
labelled frames whatever the split; ``--no-labels-on-all-images`` keeps the run's split) and writes the averaged
metrics (``miou``, ``localization_accuracy``, ``num_label_queries``, ``feature_fidelity_*``, ``psnr``, ...) to
``<output-dir>/lerf_ovs_metrics.json``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
import tyro
from nerfstudio.cameras.camera_paths import get_path_from_json
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.eval_utils import eval_setup
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image

from fmgs_field.fmgs_model import FMGSModel
from splat_core.images import to_uint8_image


def query_slug(text: str) -> str:
    """Folder name of a query: lower case, runs of other characters than [a-z0-9] as "_" (``"A mug!" -> "a_mug"``)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "query"


def split_phrases(text: Optional[str]) -> List[str]:
    """``"a mug; a plate;"`` -> ``["a mug", "a plate"]`` (None or blank gives [])."""
    return [p.strip() for p in (text or "").split(";") if p.strip()]


@dataclass
class FMGSQuery:
    """Render relevancy heatmaps of text queries, and/or export per-Gaussian language features, from an fmgs run."""

    load_config: Path
    """config.yml of a trained fmgs run."""
    query: str = ""
    """';'-separated positive phrases, e.g. "a mug;a plate" (may be empty with --export-gaussian-features)."""
    output_dir: Path = Path("renders/fmgs_query")
    """Folder of the heatmaps: <output-dir>/<query>/<frame>.png."""
    negatives: Optional[str] = None
    """';'-separated negative phrases (default: the teacher's canonical negatives)."""
    camera_path: Optional[Path] = None
    """Camera path JSON (nerfstudio format); when given, its cameras are rendered instead of --split."""
    split: Literal["train", "test"] = "test"
    """Dataset cameras to render when no camera path is given ("test" is the eval split)."""
    save_relevancy: bool = False
    """Also write each raw relevancy map (float16 [H, W]) as <output-dir>/<query>/<frame>.npy."""
    export_gaussian_features: bool = False
    """Write the field's CLIP and DINO features at every Gaussian (float16) next to the run's config.yml."""
    eval_labels: Optional[Path] = None
    """LERF-OVS label folder (frame_*.json): evaluate mIoU and localization accuracy on the labelled frames."""
    labels_on_all_images: bool = True
    """With --eval-labels, evaluate on every image of the scene (the labelled frames may be training images)."""
    gaussian_features_path: Optional[Path] = None
    """Where --export-gaussian-features writes (.pt; .npz for numpy). Default:
    <run dir>/fmgs_gaussian_features-<step>.pt."""

    def main(self) -> None:
        """Runs the query and/or the export."""
        positives = split_phrases(self.query)
        if not Path(self.load_config).is_file():
            raise SystemExit(f"error: --load-config {self.load_config} is not a file (the config.yml of an fmgs run)")
        if not (positives or self.export_gaussian_features or self.eval_labels):
            raise SystemExit("error: nothing to do: give --query, --export-gaussian-features and/or --eval-labels")
        test_mode = "inference" if self.camera_path is not None and self.eval_labels is None else "test"
        config, pipeline, checkpoint, step = eval_setup(self.load_config, test_mode=test_mode,
                                                        update_config_callback=self._update_config)
        model = pipeline.model
        if not isinstance(model, FMGSModel) or model.clip_teacher is None:
            raise SystemExit(f"error: {self.load_config} is not an fmgs run (model {type(model).__name__})")
        if self.export_gaussian_features:
            path = self.gaussian_features_path or self.load_config.parent / f"fmgs_gaussian_features-{step:09d}.pt"
            export_gaussian_features(model, Path(path), checkpoint, step)
        if self.eval_labels is not None:
            metrics = pipeline.get_average_eval_image_metrics()
            self.output_dir.mkdir(parents=True, exist_ok=True)
            report = {"config": str(self.load_config), "checkpoint": str(checkpoint), "step": step,
                      "labels": str(self.eval_labels), "all_images": self.labels_on_all_images, "metrics": metrics}
            (self.output_dir / "lerf_ovs_metrics.json").write_text(json.dumps(report, indent=1))
            CONSOLE.print(json.dumps(metrics, indent=1))
        if not positives:
            return
        teacher = model.clip_teacher
        teacher.set_positives(positives)
        teacher.set_negatives(split_phrases(self.negatives))
        cameras, names = self._cameras(pipeline)
        folders = [self.output_dir / query_slug(p) for p in positives]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        CONSOLE.log(f"Rendering {len(names)} frames for {positives} (negatives {teacher.negatives})")
        for i, name in enumerate(names):
            outputs = model.get_outputs_for_camera(cameras[i : i + 1].to(model.device))
            for j, folder in enumerate(folders):
                Image.fromarray(to_uint8_image(outputs[f"composited_{j}"]).numpy()).save(folder / f"{name}.png")
                if self.save_relevancy:
                    np.save(folder / f"{name}.npy", outputs[f"relevancy_{j}"][..., 0].cpu().numpy().astype(np.float16))
        (self.output_dir / "queries.json").write_text(
            json.dumps(
                {"config": str(self.load_config), "checkpoint": str(checkpoint), "step": step, "positives": positives,
                 "negatives": teacher.negatives, "folders": [f.name for f in folders], "frames": names},
                indent=1,
            )
        )
        CONSOLE.log(f"Wrote {len(names) * len(folders)} heatmaps under {self.output_dir}")

    def _update_config(self, config):
        if self.eval_labels is not None:
            config.pipeline.datamanager.eval_labels = Path(self.eval_labels)
            if self.labels_on_all_images and hasattr(config.pipeline.datamanager.dataparser, "eval_mode"):
                config.pipeline.datamanager.dataparser.eval_mode = "all"
        return config

    def _cameras(self, pipeline) -> Tuple[Cameras, List[str]]:
        if self.camera_path is not None:
            cameras = get_path_from_json(json.loads(Path(self.camera_path).read_text()))
            return cameras, [f"frame_{i:05d}" for i in range(len(cameras))]
        dm = pipeline.datamanager
        dataset = dm.train_dataset if self.split == "train" else dm.eval_dataset
        return dataset.cameras, unique_names(dataset.image_filenames)


def unique_names(paths: Sequence[Path]) -> List[str]:
    """File stems of ``paths``, made unique with the index when two frames share a stem."""
    stems = [Path(p).stem for p in paths]
    return stems if len(set(stems)) == len(stems) else [f"{i:05d}_{s}" for i, s in enumerate(stems)]


def export_gaussian_features(model: FMGSModel, path: Path, checkpoint: Path, step: int) -> Path:
    """Saves the field's outputs at every Gaussian (float16) with the means and opacities.

    Keys: ``means`` [N, 3], ``opacities`` [N] (after the sigmoid), ``clip`` [N, Dc] (unit norm), ``dino`` [N, Dd],
    plus ``step`` and ``checkpoint``. ``.npz`` paths are written with numpy, anything else with ``torch.save``.

    Args:
        model: A loaded fmgs model.
        path: Output file.
        checkpoint: Checkpoint the model was loaded from (recorded in the file).
        step: Its step.

    Returns:
        ``path``.
    """
    feats = model.gaussian_language_features()
    data = {
        "means": feats["means"].float().cpu(),
        "opacities": torch.sigmoid(model.gauss_params["opacities"].detach()).squeeze(-1).cpu(),
        "clip": feats["clip"].half().cpu(),
        "dino": feats["dino"].half().cpu(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, step=step, checkpoint=str(checkpoint), **{k: v.numpy() for k, v in data.items()})
    else:
        torch.save({**data, "step": step, "checkpoint": str(checkpoint)}, path)
    n, dc = data["clip"].shape
    CONSOLE.log(f"Exported {dc}-d CLIP and {data['dino'].shape[1]}-d DINO features of {n} Gaussians to {path}")
    return path


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point (``fmgs-query``); ``argv`` for tests."""
    tyro.cli(FMGSQuery, args=argv).main()


if __name__ == "__main__":
    main()
