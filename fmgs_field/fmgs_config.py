"""Method registration for ``fmgs`` (nerfstudio entry point ``nerfstudio.method_configs``). No logic here.

Schedule and optimiser of the language field follow FMGS (googlestaging/foundation-model-embedded-3dgs): 30k steps of
Gaussian splatting, then feature distillation until step 34200 (README: stage 2 to 32.5k, stage 3 to 34.2k), RAdam
with lr 0.005 (``--fmap_lr``), eps 1e-15, weight decay 1e-9, exponential decay to 2e-3 over 10k feature steps, and
gradient-norm clipping at 1.0 (``train.py``).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.optimizers import RAdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.plugins.types import MethodSpecification

from fmgs_field.data.fmgs_datamanager import FMGSDataManagerConfig
from fmgs_field.fmgs_model import FMGSModelConfig
from fmgs_field.fmgs_pipeline import FMGSPipelineConfig
from splat_core.data.scene_dataparser import SceneDataParserConfig
from splat_core.optimizers import gaussian_optimizers
from splat_core.trainer import SplatTrainerConfig

FEATURE_START_STEP = 30000
MAX_STEPS = 34200


def _optimizers() -> dict:
    """The Gaussian optimisers of the splatting method plus the language field's."""
    optimizers = gaussian_optimizers(FEATURE_START_STEP)
    optimizers["fmgs_field"] = {
        "optimizer": RAdamOptimizerConfig(lr=5e-3, eps=1e-15, weight_decay=1e-9, max_norm=1.0),
        "scheduler": ExponentialDecaySchedulerConfig(
            lr_pre_warmup=5e-3,
            lr_final=2e-3,
            warmup_steps=FEATURE_START_STEP,
            max_steps=FEATURE_START_STEP + 10000,
            ramp="linear",
        ),
    }
    return optimizers


fmgs = MethodSpecification(
    config=SplatTrainerConfig(
        method_name="fmgs",
        steps_per_eval_image=500,
        steps_per_eval_batch=0,
        steps_per_save=2000,
        steps_per_eval_all_images=100000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=FMGSPipelineConfig(
            datamanager=FMGSDataManagerConfig(dataparser=SceneDataParserConfig(), cache_images_type="uint8"),
            model=FMGSModelConfig(feature_start_step=FEATURE_START_STEP),
        ),
        optimizers=_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    ),
    description="FMGS: Gaussian splatting with a distilled CLIP/DINO hash-grid language field and text relevancy",
)
