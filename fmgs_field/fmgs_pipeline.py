"""fmgs pipeline: a VanillaPipeline that hands the datamanager's CLIP teacher to the model.

Only there to share one CLIP teacher between the datamanager (hybrid CLIP training maps) and the model (text queries
and the viewer's "FMGS Positives" field), as lerf:lerf/lerf_pipeline.py shares its image encoder. It calls
``super().__init__`` (keeping splatfacto's seed points, STYLE.md §7) and attaches the teacher afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional, Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch.cuda.amp.grad_scaler import GradScaler

from fmgs_field.data.fmgs_datamanager import FMGSDataManagerConfig
from fmgs_field.fmgs_model import FMGSModelConfig


@dataclass
class FMGSPipelineConfig(VanillaPipelineConfig):
    """Configuration of :class:`FMGSPipeline`."""

    _target: Type = field(default_factory=lambda: FMGSPipeline)
    datamanager: FMGSDataManagerConfig = field(default_factory=FMGSDataManagerConfig)
    """Full-image datamanager with teacher maps."""
    model: FMGSModelConfig = field(default_factory=FMGSModelConfig)
    """Splatting model with the FMGS language field."""


class FMGSPipeline(VanillaPipeline):
    """VanillaPipeline plus ``model.set_clip_teacher(datamanager.clip_teacher)``.

    Args:
        config (FMGSPipelineConfig): Pipeline configuration.
        device (str): Device of the model and batches.
        test_mode (str): "val", "test" or "inference".
        world_size (int): Distributed world size.
        local_rank (int): Distributed rank.
        grad_scaler (GradScaler, optional): Mixed-precision scaler.
    """

    def __init__(
        self,
        config: FMGSPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ) -> None:
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        teacher = getattr(self.datamanager, "clip_teacher", None)
        if teacher is not None:  # already on ``device`` (a submodule of the datamanager)
            self.model.set_clip_teacher(teacher)
