"""vlm-fastgs pipeline: a VanillaPipeline that loads the guidance source once, at start-up, and hands it to the model.

Only there to own the guidance source (a local VLM, the weights-free image-evidence guide or a boxes file, whose image
names are checked against the scene here) and its controller, as LERF's pipeline owns its image encoder. It calls
``super().__init__`` (keeping splatfacto's seed points, which LERF's own constructor drops) and attaches the
controller to the model afterwards. The source is loaded only when the pipeline is built
for training (``test_mode="val"``, what nerfstudio's Trainer uses), so ns-eval, ns-render and ns-viewer load a
checkpoint without the VLM's weights. A VLM that cannot be loaded stops ns-train before the first step with one line
(:class:`~vlm_instruct_gs.guidance.sources.GuidanceSetupError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Type

from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils.rich_utils import CONSOLE
from nerfstudio.viewer.viewer_elements import ViewerText
from torch.cuda.amp.grad_scaler import GradScaler

from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance.boxes_file import BoxesFileSource
from vlm_instruct_gs.guidance.controller import GuidanceController
from vlm_instruct_gs.guidance.guidance_controller import GuidanceConfig
from vlm_instruct_gs.guidance.image_evidence import ImageEvidenceGuideConfig
from vlm_instruct_gs.guidance.phases import phase_name
from vlm_instruct_gs.guidance.records import short_verdict
from vlm_instruct_gs.guidance.sources import build_guidance_source
from vlm_instruct_gs.guidance.vlm_backend import VLMBackendConfig
from vlm_instruct_gs.vlm_fastgs_model import VLMFastGSModelConfig


@dataclass
class VLMFastGSPipelineConfig(VanillaPipelineConfig):
    """Configuration of :class:`VLMFastGSPipeline`."""

    _target: Type = field(default_factory=lambda: VLMFastGSPipeline)
    model: VLMFastGSModelConfig = field(default_factory=VLMFastGSModelConfig)
    """The vlm-fastgs model (splatfacto + FastGS)."""
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    """Guidance source choice, phase schedule and how answers become densify/prune/grow guidance and new Gaussians."""
    vlm: VLMBackendConfig = field(default_factory=VLMBackendConfig)
    """The VLM used when guidance.source is 'vlm' (model path, device, dtype, generation budget, prompt folder)."""
    image_evidence: ImageEvidenceGuideConfig = field(default_factory=ImageEvidenceGuideConfig)
    """Thresholds of the weights-free source used when guidance.source is 'image-evidence'."""


class VLMFastGSPipeline(VanillaPipeline):
    """VanillaPipeline plus the guidance source and controller (training only).

    Args:
        config (VLMFastGSPipelineConfig): Pipeline configuration.
        device (str): Device of the model and batches.
        test_mode (str): "val" (training), "test" or "inference"; the guidance source is loaded for "val" only.
        world_size (int): Distributed world size.
        local_rank (int): Distributed rank.
        grad_scaler (GradScaler, optional): Mixed-precision scaler.

    Raises:
        GuidanceSetupError: the guidance source cannot be loaded (a SystemExit with one ``error: ...`` line).
    """

    config: VLMFastGSPipelineConfig

    def __init__(
        self,
        config: VLMFastGSPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler: Optional[GradScaler] = None,
    ) -> None:
        super().__init__(config, device, test_mode, world_size, local_rank, grad_scaler)
        # two short fields: one text field shows about 30 characters, and "phase | last: verdict" was cut off
        self.guidance_status = ViewerText("VLM guidance", "off", disabled=True, hint="Current guidance phase")
        self.guidance_last = ViewerText(
            "VLM guidance last", "none yet", disabled=True,
            hint="Last applied answer: phase@query step, +Gaussians given densify guidance, -Gaussians marked for "
            "pruning (full line in the console and <run>/guidance/applied.jsonl)",
        )
        self.guidance_verdict = ViewerText("VLM guidance verdict", "none yet", disabled=True,
                                           hint="The whole line of the last applied answer")
        self._guidance: Optional[GuidanceController] = None
        source_name = config.guidance.source
        if test_mode != "val" or source_name == "none":
            return
        if not isinstance(self.model.strategy, FastGSStrategy):
            CONSOLE.log(f"[yellow]guidance.source={source_name!r} needs the fastgs strategy; training unguided")
            return
        source = build_guidance_source(source_name, config.vlm, config.image_evidence, config.guidance.boxes_file,
                                       config.guidance.floater_keywords)
        if source is None:
            return
        train_names = [Path(p).name for p in self.datamanager.train_dataparser_outputs.image_filenames]
        if isinstance(source, BoxesFileSource):
            eval_dataset = getattr(self.datamanager, "eval_dataset", None)
            source.check_image_names(train_names, getattr(eval_dataset, "image_filenames", []))
        self._guidance = config.guidance.setup(source=source, status=self.guidance_status,
                                               last_answer=self.guidance_last, full_verdict=self.guidance_verdict)
        self._guidance.set_image_names(train_names)
        self.model.attach_guidance(self._guidance)

    def load_pipeline(self, loaded_state: Dict[str, Any], step: int) -> None:
        """VanillaPipeline's checkpoint load; without a controller (ns-viewer, ns-eval, ns-render on a finished run)
        the viewer fields then show the guidance the checkpoint records: the phase of its step, the last applied
        answer in short and in full (the run's ``applied.jsonl`` records travel in the checkpoint), or ``off`` for
        an unguided run."""
        super().load_pipeline(loaded_state, step)
        recorded = getattr(self.model, "recorded_guidance", None)
        if self._guidance is not None:
            return
        if not isinstance(recorded, dict):
            self.guidance_status.value = "off"
            return
        applied = list(recorded.get("applied") or [])
        self.guidance_status.value = f"{phase_name(self.config.guidance.schedule, step)} @{step}"
        self.guidance_last.value = short_verdict(applied[-1]) if applied else "none applied"
        self.guidance_verdict.value = str(recorded.get("last_verdict", "none applied"))

    @property
    def guidance(self) -> Optional[GuidanceController]:
        """The guidance controller (None when unguided or not training)."""
        return self._guidance

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """VanillaPipeline's callbacks; also points the guidance records at ``<run>/guidance``, checks that the
        schedule lines up with the strategy and stops the worker after training."""
        callbacks = super().get_training_callbacks(training_callback_attributes)
        if self._guidance is None:
            return callbacks
        trainer = training_callback_attributes.trainer
        if trainer is not None:
            self._guidance.set_run_seed(trainer.config.machine.seed)
            if self.config.guidance.write_files:
                self._guidance.set_output_dir(trainer.base_dir / "guidance")
            start = getattr(trainer, "_start_step", 0)  # after a checkpoint resume, the step after the saved one
            self._guidance.check_schedule(self.model.strategy, start + trainer.config.max_num_iterations, start)
        callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN], self._guidance.close))
        return callbacks
