"""Method registrations (nerfstudio entry point ``nerfstudio.method_configs``). No logic here."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.datamanagers.full_images_datamanager import FullImageDatamanagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from vlm_instruct_gs.data.scene_dataparser import SceneDataParserConfig
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig
from vlm_instruct_gs.vlm_fastgs_pipeline import VLMFastGSPipelineConfig

MAX_STEPS = 20000


def _gaussian_optimizers(max_steps: int) -> dict:
    """Splatfacto's optimiser settings with the means' decay stretched over ``max_steps``."""
    return {
        "means": {
            "optimizer": AdamOptimizerConfig(lr=1.6e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(lr_final=1.6e-6, max_steps=max_steps),
        },
        "features_dc": {"optimizer": AdamOptimizerConfig(lr=0.0025, eps=1e-15), "scheduler": None},
        "features_rest": {"optimizer": AdamOptimizerConfig(lr=0.0025 / 20, eps=1e-15), "scheduler": None},
        "opacities": {"optimizer": AdamOptimizerConfig(lr=0.05, eps=1e-15), "scheduler": None},
        "scales": {"optimizer": AdamOptimizerConfig(lr=0.005, eps=1e-15), "scheduler": None},
        "quats": {"optimizer": AdamOptimizerConfig(lr=0.001, eps=1e-15), "scheduler": None},
        "camera_opt": {
            "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=5e-7, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
        "bilateral_grid": {
            "optimizer": AdamOptimizerConfig(lr=2e-3, eps=1e-15),
            "scheduler": ExponentialDecaySchedulerConfig(
                lr_final=1e-4, max_steps=max_steps, warmup_steps=1000, lr_pre_warmup=0
            ),
        },
    }


vlm_fastgs = MethodSpecification(
    config=TrainerConfig(
        method_name="vlm-fastgs",
        steps_per_eval_image=500,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=5000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=VLMFastGSPipelineConfig(
            datamanager=FullImageDatamanagerConfig(
                dataparser=SceneDataParserConfig(),
                cache_images_type="uint8",
            ),
            model=VLMFastGSModelConfig(),
        ),
        optimizers=_gaussian_optimizers(MAX_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description=(
        "VLM-guided FastGS splatting from 100 random points (20k steps); needs Qwen3-VL weights "
        "(--pipeline.vlm.model-path) or --pipeline.guidance.source image-evidence|none; CPU via --machine.device-type cpu"
    ),
)
