"""fmgs pipeline: a VanillaPipeline that hands the datamanager's CLIP teacher to the model and evaluates features.

- It shares one CLIP teacher between the datamanager (hybrid CLIP training maps) and the model (text queries and the
  viewer's "FMGS Positives"/"FMGS Negatives" fields), as LERF's lerf/lerf_pipeline.py shares its image encoder. It calls
  ``super().__init__`` and attaches the teacher afterwards (LERF's pipeline rewrites the constructor instead, which
  would drop splatfacto's seed points).
- Evaluation (``ns-eval``, the trainer's eval callbacks) runs the model under
  :meth:`~fmgs_field.fmgs_model.FMGSModel.feature_outputs` on batches with eval teacher maps (and LERF-OVS labels),
  so the averaged metrics gain ``feature_fidelity_clip``/``feature_fidelity_dino`` and, with labels, ``miou``,
  ``localization_accuracy`` and ``num_label_queries``.
- :func:`train_feature_steps` runs feature steps outside nerfstudio's Trainer (benchmarks, tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Literal, Optional, Tuple, Type

from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from torch import Tensor
from torch.cuda.amp.grad_scaler import GradScaler

from fmgs_field.data.fmgs_datamanager import FMGSDataManager, FMGSDataManagerConfig
from fmgs_field.evaluation import label_metrics_from_means
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

    def get_eval_image_metrics_and_images(self, step: int) -> Tuple[Dict, Dict]:
        """The parent's one-image evaluation with feature outputs (fidelity metrics; labels give per-frame sums)."""
        with self.model.feature_outputs():
            return super().get_eval_image_metrics_and_images(step)

    def get_average_eval_image_metrics(
        self, step: Optional[int] = None, output_path: Optional[Path] = None, get_std: bool = False
    ) -> Dict[str, float]:
        """Metrics averaged over every eval image, with feature fidelity and, with labels, LERF-OVS scene metrics.

        Args:
            step: Training step (unused, as in the parent).
            output_path: Folder for the rendered images, or None.
            get_std: Also report each metric's standard deviation.

        Returns:
            ``psnr``, ``ssim``, ..., ``feature_fidelity_clip``, ``feature_fidelity_dino``, and with labels ``miou``,
            ``localization_accuracy`` and ``num_label_queries`` (over all (frame, category) pairs).
        """
        if not isinstance(self.datamanager, FMGSDataManager):
            return super().get_average_eval_image_metrics(step, output_path, get_std)
        batches = self.datamanager.eval_batches()
        with self.model.feature_outputs():
            metrics = self.get_average_image_metrics(batches, "eval", step, output_path, get_std)
        return label_metrics_from_means(metrics, len(batches))


def train_feature_steps(
    pipeline: VanillaPipeline,
    optimizers: Optimizers,
    steps: int,
    start_step: int = 0,
    after_step: Optional[Callable[[int], None]] = None,
) -> Dict[str, Tensor]:
    """Trains ``steps`` steps from ``start_step`` the way nerfstudio's ``Trainer.train_iteration`` does (model
    ``step_cb``, forward, backward, ``optimizer_step_all``, ``scheduler_step_all``), without the trainer's other
    callbacks: no densification, which the fmgs model skips anyway while its Gaussians are frozen (feature phase).

    Args:
        pipeline: A pipeline set up for training; it is put in train mode.
        optimizers: Optimisers of ``pipeline.model.get_param_groups()``.
        steps: Number of steps (0 runs none).
        start_step: Step number of the first step (e.g. the model's ``feature_start_step``).
        after_step: Called with the step number after each step's optimiser and scheduler updates (e.g. timing).

    Returns:
        The last step's loss dict (empty when ``steps`` is 0).
    """
    pipeline.train()
    losses: Dict[str, Tensor] = {}
    for step in range(start_step, start_step + steps):
        pipeline.model.step_cb(optimizers, step)
        _, losses, _ = pipeline.get_train_loss_dict(step)
        optimizers.zero_grad_all()
        sum(losses.values()).backward()  # type: ignore[union-attr]
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)
        if after_step is not None:
            after_step(step)
    return losses
