"""Method registrations (nerfstudio entry point ``nerfstudio.method_configs``). No logic here."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.plugins.types import MethodSpecification

from splat_core.data.datamanager import SplatDatamanagerConfig
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.optimizers import gaussian_optimizers
from splat_core.trainer import SplatTrainerConfig
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig
from vlm_instruct_gs.vlm_fastgs_pipeline import VLMFastGSPipelineConfig

MAX_STEPS = 20000


vlm_fastgs = MethodSpecification(
    config=SplatTrainerConfig(
        method_name="vlm-fastgs",
        steps_per_eval_image=500,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=5000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=VLMFastGSPipelineConfig(
            datamanager=SplatDatamanagerConfig(
                dataparser=SceneDataParserConfig(),
                # training images stay on the GPU: a CPU cache costs a blocking copy (a host sync) every step;
                # uint8 keeps them at a quarter of float32's memory for one conversion kernel per step
                cache_images="gpu",
                cache_images_type="uint8",
            ),
            model=VLMFastGSModelConfig(),
        ),
        optimizers=gaussian_optimizers(MAX_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description=(
        "VLM-guided FastGS splatting from 100 random points (20k steps); needs Qwen3-VL weights "
        "(--pipeline.vlm.model-path) or --pipeline.guidance.source image-evidence|none; CPU via --machine.device-type cpu"
    ),
)
