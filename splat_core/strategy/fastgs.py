"""FastGS densification and pruning as a gsplat :class:`~gsplat.strategy.Strategy`.

Imports torch and gsplat only (never nerfstudio), so a bare test can drive it. The per-step gradient accumulators
are :mod:`splat_core.strategy.gradients`, the ops beyond gsplat's :mod:`splat_core.strategy.ops`.
"""

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Literal, Optional, Tuple, Union

import torch
from gsplat.strategy import Strategy
from gsplat.strategy.ops import duplicate, remove, reset_opa, split
from jaxtyping import Float
from torch import Tensor

from splat_core.strategy.gradients import accumulate_gradients
from splat_core.strategy.guided_growth import GrowMode, add_guided_grow, cap_to_count, grow_rank, guidance_mask
from splat_core.strategy.ops import sample_without_replacement, spawn_points
from splat_core.strategy.view_scores import camera_proximity

ParamsT = Union[Dict[str, torch.nn.Parameter], torch.nn.ParameterDict]


@dataclass
class FastGSStrategy(Strategy):
    """Multi-view consistent densification (VCD) and pruning (VCP) from FastGS:

    `FastGS: Training 3D Gaussian Splatting in 100 Seconds <https://arxiv.org/abs/2511.04283>`_
    (reference code: github.com/fastgs/FastGS, ``train.py`` and ``scene/gaussian_model.py``).

    The strategy will:

    - Accumulate image-plane gradients (and AbsGS absolute gradients) of visible GSs every step in the refine window.
    - Every ``refine_every`` steps in (``refine_start_iter``, ``refine_stop_iter``), and every
      ``early_refine_every`` steps up to ``early_refine_stop_iter`` (a sparse start grows by at most one doubling
      per refinement), densify (VCD) only GSs whose gradient is high AND whose multi-view score
      ``view_scores["densify_score"]`` (mean number of high-error pixels per sampled view that the GS blends into,
      in full-resolution pixels) exceeds ``densify_min_count``: duplicate small ones (plain gradient), split large
      ones (absolute gradient).
    - Then prune (VCP) among the candidates (opacity below ``prune_opa``; after the first opacity reset also 3D scale
      above ``prune_scale3d``): at most ``prune_budget_frac`` of them, drawn without replacement with weight
      ``1 / (1 - prune_score + 1e-6)`` so GSs with high multi-view photometric error go first. GSs created in the same
      refinement (clones and both children of each split) are never drawn.
    - Then clamp all opacities to at most ``refine_opa_clamp`` (FastGS does this after every densification).
    - Every ``reset_every`` steps while refining, reset opacities to at most ``reset_opa``.
    - Every ``final_prune_every`` steps in (``final_prune_start_iter``, ``final_prune_stop_iter``), prune every GS with
      opacity below ``final_prune_opa`` or ``prune_score`` above ``final_prune_score`` (no budget).

    The caller computes ``view_scores`` when :meth:`wants_view_scores` says so: it renders ``num_score_views`` random
    training views at ``score_resolution``, thresholds their error maps with ``high_error_thresh``, counts each GS's
    high-error pixels by ``score_footprint`` and calls :func:`splat_core.strategy.view_scores.view_scores_from_counts`
    (:meth:`splat_core.model.SplatModel.score_views`).

    :meth:`legacy` gives the settings before FastGS-faithful scores and early growth (box footprints, scores at
    the training resolution, one refinement per 500 steps, one final pass per 3000 steps, no near-camera prune), for
    side-by-side runs.

    ``guidance`` (optional, per step) holds per-GS masks [N] from the VLM phases, bool or float:

    - ``"densify"`` in [-1, 1]: scales the VCD threshold to ``densify_min_count * guidance_densify_scale ** g``, so
      ``g = 1`` relaxes the multi-view requirement (by 2x with the default 0.5), ``g = -1`` raises it, 0 keeps it.
      The gradient requirement is unchanged.
    - ``"prune"`` in [0, 1]: GSs with a value above ``guidance_prune_thresh`` are not densified, join the prune
      candidates (within the budget, drawn with priority ``max(prune_score, value)``) and are removed by the final
      prune.
    - ``"grow"`` in [0, 1] (phase 1, detail regions): among GSs with a value above 0.5 that VCD did not pick, the
      ``guidance_grow_budget`` with the highest gradient (``max(grad / grow_grad2d, absgrad / grow_grad2d_abs)``,
      visible ones only) are duplicated (small) or split (large) too, whatever their multi-view score. With
      ``guidance_grow_mode="swap"`` the whole guided choice is then cut back to VCD's unguided number, the region's
      picks kept first (:mod:`splat_core.strategy.guided_growth`).
    - ``"spawn"`` (phases 2 and 3): ``{"means": [M, 3] world units, "colors": [M, 3] RGB in [0, 1], "scales": [M]
      world units}``, new isotropic GSs (opacity 0.1, as new 3DGS points) appended after the growth by
      :func:`splat_core.strategy.ops.spawn`; like clones they are never pruned in their own refinement. The caller
      chooses them and their number (:mod:`vlm_instruct_gs.guidance.spawning`).

    .. note::
        Faithful to the reference code except: scores travel through the ops in ``state``, so they stay aligned with
        the GSs after duplicate/split (FastGS indexes its pre-densification ``pruning_score`` after the split has
        shifted indices); the 2D screen-size prune (``max_screen_size=20``) is left out, since FastGS zeroes
        ``max_radii2D`` in ``densification_postfix`` before pruning so it never fires; the white-background opacity
        reset at ``densify_from_iter`` and the sparse SH optimizer schedule are not strategy concerns.

    Args:
        prune_opa (float): GSs with opacity below this value are prune candidates while refining. Default is 0.005.
        grow_grad2d (float): GSs with mean image-plane gradient (NDC units, like 3DGS) at or above this value may be
          duplicated; also the split threshold when ``absgrad`` is False. FastGS ``grad_thresh``. Default is 0.0002.
        grow_grad2d_abs (float): GSs with mean absolute gradient (AbsGS) at or above this value may be split.
          FastGS ``grad_abs_thresh``; its scripts use 0.0006-0.002 per scene. Default is 0.0012.
        grow_scale3d (float): GSs with max 3D scale (normalized by scene_scale) at or below this value are
          duplicated, above it split. FastGS ``dense``; its scripts use 0.001-0.013 per scene. Default is 0.001.
        prune_scale3d (float): GSs with max 3D scale (normalized by scene_scale) above this value are prune
          candidates after the first opacity reset. Default is 0.1.
        high_error_thresh (float): Threshold on the min-max normalized per-view L1 error map; read by the caller for
          :func:`compute_view_scores`. FastGS ``loss_thresh``. Default is 0.1.
        num_score_views (int): Number of random training views the caller renders for ``view_scores``. FastGS
          ``sampling_cameras``. Default is 10.
        score_footprint (str): How the caller counts a GS's high-error pixels: "blended", the pixels it blends into
          (alpha >= 1/255 before the transmittance falls to 1e-4, as FastGS's rasteriser counts;
          :mod:`splat_core.rendering.contributions`), or "box", every pixel of its projected 3-sigma box
          (:mod:`splat_core.rendering.footprint`; ignores opacity and occlusion). Default is "blended".
        score_resolution (str): Resolution of the score renders: "full" (the training images' full size, the
          resolution ``densify_min_count`` is given in), "training" (splatfacto's current resolution schedule, counts
          scaled to full-resolution pixels by the pixel-area ratio) or "training-unscaled" (the same renders, counts
          in rendered pixels: the threshold is 4x / 16x stricter at 1/2 / 1/4 resolution). Default is "full".
        densify_min_count (float): VCD threshold: GSs need ``view_scores["densify_score"]`` above this value.
          FastGS ``importance_score > 5``. Default is 5.0.
        prune_budget_frac (float): At most this fraction of the prune candidates is removed per refinement.
          FastGS ``remove_budget = int(0.5 * to_remove)``. Default is 0.5.
        prune_sample_candidates_only (bool): Draw the budget among candidates only, so exactly the budget is removed.
          FastGS draws among all GSs and keeps the drawn candidates, removing fewer (False). Default is False.
        refine_opa_clamp (float): Opacities are clamped to at most this value after each refinement (optimizer
          moments of opacities are zeroed). Values >= 1 disable it. Default is 0.8.
        reset_opa (float): Opacity reset value (FastGS/3DGS ``reset_opacity``: 0.01). Default is 0.01.
        refine_start_iter (int): Start refining GSs after this iteration (FastGS ``densify_from_iter``).
          Default is 500.
        refine_stop_iter (int): Stop refining GSs at this iteration (FastGS ``densify_until_iter``). Default is 15_000.
        refine_every (int): Refine GSs every this steps. FastGS scripts pass ``--densification_interval 500``
          (``arguments`` default 100). Default is 500.
        early_refine_every (int): Refine GSs every this steps up to ``early_refine_stop_iter`` too, when below
          ``refine_every`` (0 disables it). From ~100 random points one refinement at most doubles the count, so at
          500 steps per refinement the model stays sparse for thousands of steps; FastGS starts from SfM points.
          Default is 100.
        early_refine_stop_iter (int): Last step of the ``early_refine_every`` cadence. Growth made here happens while
          splatfacto's resolution schedule trains at 1/4 resolution (before step 3000): on desk_vr 2x, 3 seeds in
          one record (``docs/benchmarks/desk_vr_2x_early_window``), stopping at 1500 instead of 3000 ended 1.7 dB
          higher (33.01 +- 0.55 vs 31.29 +- 1.54), and training at full resolution from step 0 plateaued at 31.4 dB
          from step 4000 on. Default is 1500.
        reset_every (int): Reset opacities every this steps while refining. Default is 3000.
        final_prune_start_iter (int): Final VCP passes run after this iteration. Default is 15_000.
        final_prune_stop_iter (int): Final VCP passes run before this iteration. Default is 20_000.
        final_prune_every (int): Final VCP pass every this steps. FastGS runs four in 30k steps (18k, 21k, 24k,
          27k); the defaults fit four into the 20k budget: 16k, 17k, 18k, 19k. Default is 1000.
        final_prune_opa (float): Final VCP prunes GSs with opacity below this value; opacities need time to recover
          from the last reset before the first final pass (FastGS: 12k to 18k; here 12k to 16k). Default is 0.1.
        final_prune_score (float): Final VCP prunes GSs with ``prune_score`` above this value. Default is 0.9.
        absgrad (bool): Split with absolute gradients (AbsGS), as FastGS does; the :func:`rasterization` call must use
          ``absgrad=True`` too. If False, split uses the plain gradient and ``grow_grad2d``. Default is True.
        guidance_densify_scale (float): VCD threshold multiplier for ``guidance["densify"] == 1`` (its inverse for
          -1). Default is 0.5.
        guidance_prune_thresh (float): ``guidance["prune"]`` values above this mark prune candidates. Default is 0.5.
        guidance_grow_budget (int): Most GSs duplicated or split per refinement by ``guidance["grow"]`` beyond VCD's
          choice (0 disables it). Default is 1000.
        guidance_grow_mode (str): "add": the guided grows come on top of VCD's choice; "swap": the guided choice
          (relaxed threshold and grows) is cut back to the number VCD picks without guidance, dropping the
          lowest-gradient picks outside the guided region first (:mod:`splat_core.strategy.guided_growth`), so
          guidance moves densification without adding to it. Default is "add".
        prune_near_camera (float): At refine and final-prune steps, remove every GS closer to a training camera than
          this fraction of that camera's distance to the point the cameras look at
          (:func:`~splat_core.strategy.view_scores.camera_proximity` with ``view_scores["camera_centers"]`` and
          ``["camera_focus_distances"]``; not in FastGS). 0 disables it. Default is 0.25: on the GPU (3 seeds, 20k) it
          ended beer_can 4x 1.68 dB higher and desk_vr 2x level (docs/benchmarks/beer_can_4x_near_camera).
        verbose (bool): Whether to print verbose information. Default is False.

    Examples:

        >>> from gsplat import rasterization
        >>> from splat_core.strategy import FastGSStrategy, compute_view_scores
        >>> strategy = FastGSStrategy()
        >>> strategy.check_sanity(params, optimizers)
        >>> strategy_state = strategy.initialize_state(scene_scale=1.0)
        >>> for step in range(30_000):
        ...     render_image, render_alpha, info = rasterization(..., packed=False, absgrad=strategy.absgrad)
        ...     strategy.step_pre_backward(params, optimizers, strategy_state, step, info)
        ...     loss = ...
        ...     loss.backward()
        ...     view_scores = None
        ...     if strategy.wants_view_scores(step):
        ...         error_maps, means2d, radii = ...  # render strategy.num_score_views training views
        ...         view_scores = compute_view_scores(error_maps, means2d, radii, strategy.high_error_thresh)
        ...     strategy.step_post_backward(params, optimizers, strategy_state, step, info, view_scores=view_scores)

    """

    prune_opa: float = 0.005
    grow_grad2d: float = 0.0002
    grow_grad2d_abs: float = 0.0012
    grow_scale3d: float = 0.001
    prune_scale3d: float = 0.1
    high_error_thresh: float = 0.1
    num_score_views: int = 10
    score_footprint: Literal["blended", "box"] = "blended"
    score_resolution: Literal["full", "training", "training-unscaled"] = "full"
    densify_min_count: float = 5.0
    prune_budget_frac: float = 0.5
    prune_sample_candidates_only: bool = False
    refine_opa_clamp: float = 0.8
    reset_opa: float = 0.01
    refine_start_iter: int = 500
    refine_stop_iter: int = 15_000
    refine_every: int = 500
    early_refine_every: int = 100
    early_refine_stop_iter: int = 1500
    reset_every: int = 3000
    final_prune_start_iter: int = 15_000
    final_prune_stop_iter: int = 20_000
    final_prune_every: int = 1000
    final_prune_opa: float = 0.1
    final_prune_score: float = 0.9
    absgrad: bool = True
    guidance_densify_scale: float = 0.5
    guidance_prune_thresh: float = 0.5
    guidance_grow_budget: int = 1000
    guidance_grow_mode: GrowMode = "add"
    prune_near_camera: float = 0.25
    verbose: bool = False

    @classmethod
    def legacy(cls, **overrides: Any) -> "FastGSStrategy":
        """The strategy as configured before FastGS-faithful scores and early growth (the records in
        ``docs/benchmarks`` up to 2026-12-01), with ``overrides`` applied: box footprints, scores at the training
        resolution in rendered pixels, one refinement per 500 steps, final passes every 3000 steps up to 30k, no
        near-camera prune."""
        return replace(cls(), **{**LEGACY_SETTINGS, **overrides})

    def initialize_state(self, scene_scale: float = 1.0) -> Dict[str, Any]:
        """Initialize and return the running state for this strategy.

        The returned state should be passed to the `step_pre_backward()` and `step_post_backward()` functions.
        Per-GS tensors are created on the first `step_post_backward()`, on the device of the gradients:

        - grad2d: running sum of the image-plane gradient norm (NDC units) of each GS while visible. [N]
        - grad2d_abs: same for the absolute gradient (AbsGS); only kept when ``absgrad``. [N]
        - count: running count of steps in which each GS was visible. [N]
        - prune_score, guide_prune: ``view_scores["prune_score"]`` and ``guidance["prune"]`` (both in [0, 1]) held
          during one refinement only, so duplicate/split re-index them with the GSs; None otherwise. [N]
        - scene_scale: scene extent in world units; 3D scale thresholds are relative to it. Scalar.
        """
        return {
            "grad2d": None,
            "grad2d_abs": None,
            "count": None,
            "prune_score": None,
            "guide_prune": None,
            "scene_scale": scene_scale,
        }

    def check_sanity(self, params: ParamsT, optimizers: Dict[str, torch.optim.Optimizer]):
        """Sanity check for the parameters and optimizers.

        Check if:
            * `params` and `optimizers` have the same (trainable) keys, one param_group each (gsplat's base check).
            * The following keys are present: {"means", "scales", "quats", "opacities"}.

        Raises:
            AssertionError: If any of the above conditions is not met.
        """
        super().check_sanity(params, optimizers)
        for key in ["means", "scales", "quats", "opacities"]:
            assert key in params, f"{key} is required in params but missing."

    def is_refine_step(self, step: int) -> bool:
        """Whether ``step`` runs VCD + VCP (densify, budgeted prune, opacity clamp): every ``refine_every`` steps in
        the refine window, every ``early_refine_every`` steps up to ``early_refine_stop_iter``."""
        if not self.refine_start_iter < step < self.refine_stop_iter:
            return False
        every = self.refine_every
        if 0 < self.early_refine_every < every and step <= self.early_refine_stop_iter:
            every = self.early_refine_every
        return step % every == 0

    def last_opacity_reset(self, step: int) -> Optional[int]:
        """The latest step ``<= step`` at which :meth:`step_post_backward` resets opacities (a positive multiple of
        ``reset_every`` below ``refine_stop_iter``), or None before the first one."""
        if self.reset_every <= 0:
            return None
        last = (min(step, self.refine_stop_iter - 1) // self.reset_every) * self.reset_every
        return last if last > 0 else None

    def is_final_prune_step(self, step: int) -> bool:
        """Whether ``step`` runs a final VCP pass (never on a refine step: its ``view_scores`` predate the refinement)."""
        in_window = self.final_prune_start_iter < step < self.final_prune_stop_iter
        return in_window and step % self.final_prune_every == 0 and not self.is_refine_step(step)

    def wants_view_scores(self, step: int) -> bool:
        """Whether `step_post_backward()` at ``step`` needs ``view_scores`` (render the sampled views only then)."""
        return self.is_refine_step(step) or self.is_final_prune_step(step)

    def step_pre_backward(
        self,
        params: ParamsT,
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
        step: int,
        info: Dict[str, Any],
    ):
        """Callback function to be executed before the `loss.backward()` call: retains the 2D means' gradient."""
        if step >= self.refine_stop_iter:
            return
        assert "means2d" in info, "The 2D means of the Gaussians is required but missing."
        info["means2d"].retain_grad()

    def step_post_backward(
        self,
        params: ParamsT,
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
        step: int,
        info: Dict[str, Any],
        packed: bool = False,
        view_scores: Optional[Dict[str, Tensor]] = None,
        guidance: Optional[Dict[str, Any]] = None,
    ):
        """Callback function to be executed after the `loss.backward()` call (and the optimizer step).

        Args:
            params: Gaussian parameters; modified in place by the ops.
            optimizers: One optimizer per parameter key; their state is kept aligned by the ops.
            state: The dict from `initialize_state()`.
            step: Training step.
            info: The ``info`` dict of the rasterization of this step (``means2d`` with its gradient, ``radii``,
              ``width``, ``height``, ``n_cameras``; ``gaussian_ids`` when packed).
            packed: Whether the rasterization ran with ``packed=True``.
            view_scores: Output of :func:`compute_view_scores` for the current GSs; required when
              `wants_view_scores()` is True, ignored otherwise. Values [N].
            guidance: Optional ``{"densify": [N], "prune": [N], "grow": [N]}`` bool or float masks and ``"spawn"``
              new GSs (see the class docstring).
        """
        if step >= max(self.refine_stop_iter, self.final_prune_stop_iter):
            return
        if step < self.refine_stop_iter:
            self._update_state(params, state, info, packed=packed)

        if self.is_refine_step(step):
            n, dev = len(params["means"]), params["means"].device
            densify_score = self._score(view_scores, "densify_score", n, step, dev)
            prune_score = self._score(view_scores, "prune_score", n, step, dev).clamp(0.0, 1.0)
            guide_densify = guidance_mask(guidance, "densify", n, -1.0, 1.0, dev)
            guide_prune = guidance_mask(guidance, "prune", n, 0.0, 1.0, dev)
            guide_grow = guidance_mask(guidance, "grow", n, 0.0, 1.0, dev)
            # held in state for this refinement only, so duplicate/split/remove keep them aligned with the GSs
            state["prune_score"], state["guide_prune"] = prune_score, guide_prune

            n_dupli, n_split = self._grow_gs(params, optimizers, state, densify_score, guide_densify, guide_grow)
            n_spawn = self._spawn_gs(params, optimizers, state, guidance)
            # split replaces each parent by two children appended at the end: 2 new GSs per split
            is_prune = self._prune_gs(params, state, step, n_new=n_dupli + 2 * n_split + n_spawn)
            n_prune = self._remove(params, optimizers, state, is_prune | self._near_camera(params, view_scores, step))
            if self.verbose:
                print(
                    f"Step {step}: {n_dupli} GSs duplicated, {n_split} GSs split, {n_spawn} GSs spawned, "
                    f"{n_prune} GSs pruned. Now having {len(params['means'])} GSs."
                )
            state["prune_score"] = state["guide_prune"] = None
            state["grad2d"].zero_()
            state["count"].zero_()
            if state["grad2d_abs"] is not None:
                state["grad2d_abs"].zero_()
            if self.refine_opa_clamp < 1.0:
                reset_opa(params=params, optimizers=optimizers, state=state, value=self.refine_opa_clamp)

        if self.last_opacity_reset(step) == step:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.reset_opa)

        if self.is_final_prune_step(step):
            n, dev = len(params["means"]), params["means"].device
            prune_score = self._score(view_scores, "prune_score", n, step, dev)
            guide_prune = guidance_mask(guidance, "prune", n, 0.0, 1.0, dev)
            is_prune = self._final_prune_gs(params, prune_score, guide_prune)
            n_prune = self._remove(params, optimizers, state, is_prune | self._near_camera(params, view_scores, step))
            if self.verbose:
                print(f"Step {step}: final prune removed {n_prune} GSs. Now having {len(params['means'])} GSs.")

    @staticmethod
    def _score(
        view_scores: Optional[Dict[str, Tensor]], key: str, n: int, step: int, device: torch.device
    ) -> Tensor:  # [N] float
        if view_scores is None or key not in view_scores:
            raise ValueError(
                f"Step {step}: FastGSStrategy needs view_scores['{key}'] (see wants_view_scores() and "
                "compute_view_scores()), got " + ("None" if view_scores is None else f"keys {sorted(view_scores)}")
            )
        value = view_scores[key].detach().reshape(-1).float().to(device)
        if value.shape[0] != n:
            raise ValueError(f"view_scores['{key}'] has {value.shape[0]} entries but there are {n} Gaussians")
        return value

    def _update_state(self, params: ParamsT, state: Dict[str, Any], info: Dict[str, Any], packed: bool = False):
        """Add this step's image-plane gradients and visibility to the accumulators
        (:func:`splat_core.strategy.gradients.accumulate_gradients`; DefaultStrategy's ``_update_state``)."""
        accumulate_gradients(state, info, len(params["means"]), self.absgrad, packed=packed)

    @torch.no_grad()
    def _grow_gs(
        self,
        params: ParamsT,
        optimizers: Dict[str, torch.optim.Optimizer],
        state: Dict[str, Any],
        densify_score: Float[Tensor, "N"],
        guide_densify: Optional[Float[Tensor, "N"]],
        guide_grow: Optional[Float[Tensor, "N"]] = None,
    ) -> Tuple[int, int]:
        count = state["count"].clamp_min(1)
        grads = state["grad2d"] / count
        device = grads.device

        is_small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        is_clone = (grads >= self.grow_grad2d) & is_small
        if self.absgrad:
            is_split = (state["grad2d_abs"] / count >= self.grow_grad2d_abs) & ~is_small
        else:
            is_split = (grads >= self.grow_grad2d) & ~is_small

        # VCD: enough high-error pixels per sampled view in the footprint; guidance scales the threshold per GS.
        threshold = torch.full_like(grads, self.densify_min_count)
        if guide_densify is not None:
            threshold = threshold * self.guidance_densify_scale**guide_densify
        allowed = torch.ones_like(is_clone) if state["guide_prune"] is None else (
            state["guide_prune"] <= self.guidance_prune_thresh)
        is_consistent = (densify_score > threshold) & allowed
        n_unguided = None
        if self.guidance_grow_mode == "swap" and (guide_densify is not None or guide_grow is not None):
            unguided = (densify_score > self.densify_min_count) & allowed
            n_unguided = int(((is_clone | is_split) & unguided).sum().item())

        is_dupli = is_clone & is_consistent
        is_split = is_split & is_consistent
        if guide_grow is not None or n_unguided is not None:  # unguided refinements skip the rank
            abs_mean = state["grad2d_abs"] / count if self.absgrad else None
            rank = grow_rank(grads, abs_mean, state["count"], self.grow_grad2d, self.grow_grad2d_abs)
            if guide_grow is not None and self.guidance_grow_budget > 0:
                # phase 1: the region's GSs with the highest gradient grow too, whatever their multi-view score
                is_dupli, is_split = add_guided_grow(rank, is_small, is_dupli, is_split, guide_grow > 0.5,
                                                     self.guidance_grow_budget)
            if n_unguided is not None:  # "swap": as many as VCD alone would pick, the guided region's first
                inside = guide_grow > 0.5 if guide_grow is not None else guide_densify > 0
                is_dupli, is_split = cap_to_count(rank, is_dupli, is_split, inside, n_unguided)
        n_dupli = int(is_dupli.sum().item())
        n_split = int(is_split.sum().item())

        # first duplicate; the copies are appended at the end and are not split
        if n_dupli > 0:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=device)])
        # then split: originals removed, two children each appended at the end
        if n_split > 0:
            split(params=params, optimizers=optimizers, state=state, mask=is_split)
        return n_dupli, n_split

    @torch.no_grad()
    def _spawn_gs(self, params: ParamsT, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
                  guidance: Optional[Dict[str, Any]]) -> int:
        """Append ``guidance["spawn"]``'s new GSs (class docstring); returns their number."""
        new = None if guidance is None else guidance.get("spawn")
        return 0 if new is None else spawn_points(params, optimizers, state, new)

    @torch.no_grad()
    def _prune_gs(self, params: ParamsT, state: Dict[str, Any], step: int, n_new: int) -> Tensor:  # [N] bool
        """Budgeted VCP's choice (removed by the caller). The last ``n_new`` GSs (clones, split children: the ops
        append them) are never drawn."""
        n = len(params["means"])
        is_cand = torch.sigmoid(params["opacities"].flatten()) < self.prune_opa
        if step > self.reset_every:
            is_cand |= torch.exp(params["scales"]).max(dim=-1).values > self.prune_scale3d * state["scene_scale"]
        priority = state["prune_score"]
        if state["guide_prune"] is not None:
            is_cand |= state["guide_prune"] > self.guidance_prune_thresh
            priority = torch.maximum(priority, state["guide_prune"])

        budget = int(math.floor(self.prune_budget_frac * is_cand.sum().item()))
        if budget <= 0:
            return torch.zeros_like(is_cand)
        weights = 1.0 / (1.0 - priority + 1e-6)  # FastGS: 1 / (1e-6 + (1 - pruning_score))
        drawable = torch.arange(n, device=weights.device) < n - n_new
        if self.prune_sample_candidates_only:
            drawable &= is_cand
        weights = torch.where(drawable, weights, torch.zeros_like(weights))
        return is_cand & sample_without_replacement(weights, budget)

    @torch.no_grad()
    def _near_camera(self, params: ParamsT, view_scores: Optional[Dict[str, Tensor]], step: int) -> Tensor:
        """[N] bool: the GSs ``prune_near_camera`` selects (class docstring), all False when it is off. Proximity
        depends on each GS's own mean only, so joining this to VCP's choice in one removal is the same as removing
        these after VCP."""
        if self.prune_near_camera <= 0:
            return torch.zeros(len(params["means"]), dtype=torch.bool, device=params["means"].device)
        if view_scores is None or "camera_centers" not in view_scores or "camera_focus_distances" not in view_scores:
            raise ValueError(f"Step {step}: prune_near_camera needs view_scores['camera_centers'] and "
                             "view_scores['camera_focus_distances'] (the training cameras)")
        proximity = camera_proximity(params["means"].detach(), view_scores["camera_centers"],
                                     view_scores["camera_focus_distances"])
        return proximity < self.prune_near_camera

    @torch.no_grad()
    def _final_prune_gs(
        self, params: ParamsT, prune_score: Float[Tensor, "N"], guide_prune: Optional[Float[Tensor, "N"]]
    ) -> Tensor:  # [N] bool
        """Final VCP's choice (removed by the caller)."""
        is_prune = torch.sigmoid(params["opacities"].flatten()) < self.final_prune_opa
        is_prune |= prune_score > self.final_prune_score
        if guide_prune is not None:
            is_prune |= guide_prune > self.guidance_prune_thresh
        return is_prune

    @staticmethod
    @torch.no_grad()
    def _remove(params: ParamsT, optimizers: Dict[str, torch.optim.Optimizer], state: Dict[str, Any],
                mask: Tensor) -> int:
        """gsplat's ``remove`` of the GSs in ``mask`` [N] bool (skipped when empty); returns their number."""
        n_prune = int(mask.sum().item())
        if n_prune > 0:
            remove(params=params, optimizers=optimizers, state=state, mask=mask)
        return n_prune


LEGACY_SETTINGS: Dict[str, Any] = {
    "score_footprint": "box",
    "score_resolution": "training-unscaled",
    "early_refine_every": 0,
    "final_prune_stop_iter": 30_000,
    "final_prune_every": 3000,
    "prune_near_camera": 0.0,
}
"""The fields whose defaults changed with FastGS-faithful scores, early growth and the near-camera prune, at their
earlier values (:meth:`FastGSStrategy.legacy`)."""
