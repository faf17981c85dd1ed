"""Short vlm-fastgs training runs on CPU, for tests of the training loop (resume, divergence, bad input)."""

from __future__ import annotations

import copy
from pathlib import Path

from splat_core.trainer import SplatTrainerConfig
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs


def trainer_config(scene: Path, out: Path, steps: int, **overrides) -> SplatTrainerConfig:
    """A short vlm-fastgs run on CPU for tests: unguided, refining every 20 steps from step 10 (so the Gaussian count
    changes early), 200 random points, two score views, full resolution, no viewer, checkpoints every 1000 steps.

    Args:
        scene: scene folder (transforms.json or COLMAP layout).
        out: ``--output-dir``; the run folder is ``out/<scene name>/vlm-fastgs/run``.
        steps: ``max_num_iterations``.
        overrides: further ``SplatTrainerConfig`` fields set as given.
    """
    config = copy.deepcopy(vlm_fastgs.config)
    assert isinstance(config, SplatTrainerConfig)
    config.pipeline.datamanager.data = scene
    config.pipeline.datamanager.dataparser.num_random_points = 200
    config.pipeline.datamanager.dataparser.eval_mode = "all"  # PSNR of the fit to the training views
    config.pipeline.guidance.source = "none"
    model = config.pipeline.model
    model.fastgs.refine_start_iter, model.fastgs.refine_every = 10, 20
    model.fastgs.num_score_views = 2
    model.num_downscales = 0  # train at full size: the 48x36 images are small already
    config.output_dir, config.timestamp = out, "run"
    config.machine.device_type = "cpu"
    config.vis = "tensorboard"
    config.max_num_iterations = steps
    config.steps_per_save = 1000
    config.steps_per_eval_image = config.steps_per_eval_all_images = 100000
    config.logging.local_writer.enable = False
    for key, value in overrides.items():
        setattr(config, key, value)
    return config
