"""vlm-fastgs model: the shared splatting model (:mod:`splat_core.model`) steered by VLM guidance.

When the pipeline attaches a :class:`~vlm_instruct_gs.guidance.controller.GuidanceController`, it reaches the
FastGS strategy only through ``guidance=`` in ``step_post_backward`` (per-Gaussian densify/prune/grow masks and
spawned Gaussians at its refinement and final-prune steps), and queries its source after the step when a query is
due. Checkpoints hold the controller's state too
(:meth:`VLMFastGSModel.get_extra_state`), so a resumed run applies the answers that were pending at the save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Type

from splat_core.model import SplatModel, SplatModelConfig
from splat_core.strategy import FastGSStrategy
from vlm_instruct_gs.guidance.guidance_controller import GuidanceController


@dataclass
class VLMFastGSModelConfig(SplatModelConfig):
    """vlm-fastgs model: the shared splatting model's fields (splatfacto's plus FastGS's)."""

    _target: Type = field(default_factory=lambda: VLMFastGSModel)


class VLMFastGSModel(SplatModel):
    """The shared splatting model plus the guidance controller's hooks. See the module docstring."""

    config: VLMFastGSModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self._guidance: Optional[GuidanceController] = None
        self.recorded_guidance: Optional[Dict[str, object]] = None
        """The guidance state of the loaded checkpoint when no controller is attached (a finished run in ns-viewer):
        its applied records and last verdict; None for an unguided checkpoint or none loaded."""

    def attach_guidance(self, controller: Optional[GuidanceController]) -> None:
        """Let ``controller`` query at its schedule steps and guide the FastGS strategy (None detaches it)."""
        self._guidance = controller

    def get_extra_state(self) -> Dict[str, object]:
        """The shared model's checkpoint state plus ``"guidance"``: the attached controller's ``state_dict()``
        (e.g. queries asked but not yet applied at the save), when a controller is attached."""
        state = super().get_extra_state()
        if self._guidance is not None:
            state["guidance"] = self._guidance.state_dict()
        return state

    def set_extra_state(self, state: Dict[str, object]) -> None:
        """Restore the shared model's state, and the controller's when one is attached and the checkpoint has it
        (ns-eval/ns-viewer build no controller and keep it as :attr:`recorded_guidance`, for the viewer)."""
        super().set_extra_state(state)
        if not (isinstance(state, dict) and "guidance" in state):
            return
        if self._guidance is not None:
            self._guidance.load_state_dict(state["guidance"])
        else:
            self.recorded_guidance = state["guidance"]

    def strategy_step_kwargs(self, step: int) -> Dict[str, object]:
        """``guidance=`` the controller's per-Gaussian masks and new Gaussians for ``step`` (FastGS strategy only)."""
        if self._guidance is None or not isinstance(self.strategy, FastGSStrategy):
            return {}
        return {"guidance": self._guidance.guidance_for_step(step, self.strategy, self.render_view, self.num_points,
                                                              self.device, self._train_views)}

    def step_post_backward(self, step: int) -> None:
        """The strategy step (with guidance), then the controller's query, if one is due."""
        super().step_post_backward(step)
        views = self._train_views
        if self._guidance is not None and isinstance(self.strategy, FastGSStrategy) and views is not None:
            self._guidance.after_step(step, self.render_view, views.cameras, views.images, self.strategy)
