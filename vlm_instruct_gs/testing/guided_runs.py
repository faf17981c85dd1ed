"""Short guided vlm-fastgs runs in-process on CPU, driven step by step as nerfstudio's Trainer does, for tests of
the guidance phases (schedule compressed into 12 steps) and VLM stand-ins with fixed answers. The answers are fixed
text parsed by the real Qwen answer parser; they stand in for a model only in tests of the plumbing."""

from __future__ import annotations

import random

import torch
from nerfstudio.engine.callbacks import TrainingCallbackAttributes
from nerfstudio.engine.optimizers import Optimizers

from splat_core.data.datamanager import SplatDatamanagerConfig
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig
from vlm_instruct_gs.guidance.phases import GuidanceSchedule
from vlm_instruct_gs.guidance.vlm_backend import VLMBackend, VLMBackendConfig
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig
from vlm_instruct_gs.vlm_fastgs_pipeline import VLMFastGSPipelineConfig

STEPS = 12
SCHEDULE = GuidanceSchedule(detail_start=2, detail_stop=6, detail_every=2, subject_start=6, subject_stop=10,
                            subject_every=2, artifacts_start=8, artifacts_stop=12, artifacts_every=2)
"""Queries at 2, 4 (detail), 6, 8 (subject), 8, 10 (artifacts); answers applied at the next refine step."""
ANSWER = '```json\n[{"bbox_2d": [100, 200, 600, 900], "label": "brick texture"}]\n```'


class FixedAnswerBackend(VLMBackend):
    """A VLM that gives the same answer about every image (``answer`` class attribute)."""

    answer = ANSWER

    def ask(self, images, prompt):
        return [self.answer] * len(images)


class EmptyAnswerBackend(FixedAnswerBackend):
    """A VLM that finds no box."""

    answer = "[]"


class FloaterAnswerBackend(FixedAnswerBackend):
    """A VLM that boxes the whole image as floaters."""

    answer = '[{"bbox_2d": [0, 0, 1000, 1000], "label": "floating blobs"}]'


def guided_pipeline(scene, source="none", strategy=None, vlm=None, test_mode="val", **guidance):
    """A vlm-fastgs pipeline on CPU over ``scene`` (60 random points, full resolution) with the compressed
    :data:`SCHEDULE`, synchronous guidance (``apply_delay`` 1) and a FastGS strategy refining every 2 steps whose VCD
    threshold only guidance can meet; ``guidance`` sets further :class:`GuidanceConfig` fields. Seeded."""
    strategy = strategy or FastGSStrategy(refine_start_iter=1, refine_every=2, refine_stop_iter=STEPS + 1,
                                          num_score_views=3, densify_min_count=200.0, guidance_densify_scale=0.005)
    guidance = {"schedule": SCHEDULE, "detail_views": 2, "subject_views": 2, "artifacts_views": 2,
                "asynchronous": False, "apply_delay": 1, **guidance}
    config = VLMFastGSPipelineConfig(
        datamanager=SplatDatamanagerConfig(
            dataparser=SceneDataParserConfig(data=scene, num_random_points=60), cache_images_type="uint8"
        ),
        model=VLMFastGSModelConfig(num_downscales=0, fastgs=strategy),
        guidance=GuidanceConfig(source=source, **guidance),
        vlm=vlm or VLMBackendConfig(),
    )
    random.seed(0)
    torch.manual_seed(0)  # the random initial points
    return config.setup(device="cpu", test_mode=test_mode)


def train_steps(pipeline, steps=STEPS, out_dir=None):
    """Drive training steps as nerfstudio's Trainer does; returns the final means. Seeded after set-up."""
    model = pipeline.model
    optimizers = Optimizers(vlm_fastgs.config.optimizers, model.get_param_groups())
    pipeline.get_training_callbacks(TrainingCallbackAttributes(optimizers, None, pipeline, None))
    if pipeline.guidance is not None:
        pipeline.guidance.set_output_dir(out_dir)
    random.seed(0)
    torch.manual_seed(0)
    model.train()
    for step in range(1, steps + 1):
        model.step_cb(optimizers, step)
        camera, batch = pipeline.datamanager.next_train(step)
        loss = sum(model.get_loss_dict(model(camera), batch).values())
        loss.backward()
        optimizers.optimizer_step_all()
        optimizers.zero_grad_all()
        model.step_post_backward(step)
    if pipeline.guidance is not None:
        pipeline.guidance.close()
    return model.gauss_params["means"].detach().clone()


def same(a, b) -> bool:
    """Same shape and exactly the same values."""
    return a.shape == b.shape and torch.equal(a, b)
