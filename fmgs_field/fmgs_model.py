"""fmgs model: Gaussian splatting plus the FMGS language field, rendered as N-channel feature maps.

Subclasses the shared splatting model (:class:`splat_core.model.SplatModel`, a
``SplatfactoModel`` with a CPU rendering path) the way LERF's lerf/lerf.py subclasses Nerfacto, and follows FMGS's
schedule (googlestaging/foundation-model-embedded-3dgs, README and ``train.py``):

- Until ``feature_start_step`` (FMGS: 30k) it is plain Gaussian splatting.
- From then on every training step also renders a feature map. The field is queried at the Gaussian means and its
  CLIP (512) and DINO (384) outputs are alpha-composited as 896 channels at ``feature_resolution`` (FMGS:
  ``--fmap_resolution 2``, half size) with the Gaussians detached, so feature losses never move them. The RGB losses
  are dropped too (``rgb_loss_during_features=False``), which freezes the Gaussians as FMGS's stage 2 does.
- Loss (:func:`fmgs_field.losses.feature_loss_dict`): rendered maps and the CLIP target are resized to the DINO
  target's resolution, as in ``train.py``. The CLIP weight is ``0.2 * clip_loss_weight`` for the first 20 feature
  steps; the pixel-alignment term starts ``pixel_alignment_after`` feature steps in (README stage 3 at 32.5k).
- In eval mode, with positives set on the CLIP teacher (the viewer's "FMGS Positives" field), outputs include
  ``relevancy_{i}`` [H, W, 1] and ``composited_{i}`` [H, W, 3] as LERF's; training never computes relevancy. Those
  maps render the CLIP features' coefficients in a basis of their span (:mod:`fmgs_field.projection`), not all 512
  channels.
- Evaluation (the pipeline wraps it in :meth:`FMGSModel.feature_outputs`): eval outputs also carry the feature maps,
  and :meth:`FMGSModel.get_image_metrics_and_images` adds ``feature_fidelity_clip``/``feature_fidelity_dino`` (mean
  cosine with the eval image's teacher maps) and, for LERF-OVS labels, per-frame sums that become mIoU and
  localization accuracy, from relevancy rendered at the label images' resolution (as LangSplat scores it).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.utils.colormaps import ColormapOptions, apply_colormap
from torch import Tensor
from torch.nn import Parameter

from fmgs_field.evaluation import FrameLabels, evaluate_frame, feature_fidelity, frame_label_sums
from fmgs_field.field import FMGSFieldConfig, FMGSFieldHeadNames
from fmgs_field.losses import CLIP_LOSS_WEIGHT, PIXEL_ALIGNMENT_WEIGHT, feature_loss_dict
from fmgs_field.projection import feature_basis, projected_relevancy
from fmgs_field.relevancy import relevancy
from fmgs_field.teachers.base import resize_feature_map
from fmgs_field.teachers.clip_teacher import CLIPTeacher
from splat_core.model import SplatModel, SplatModelConfig


@dataclass
class FMGSModelConfig(SplatModelConfig):
    """fmgs model: the splatting model's fields plus the language field and its schedule."""

    _target: Type = field(default_factory=lambda: FMGSModel)
    fmgs_field: FMGSFieldConfig = field(default_factory=FMGSFieldConfig)
    """Hash-grid language field (grids, heads)."""
    feature_start_step: int = 30000
    """Step from which feature maps are rendered and distilled (FMGS trains 3DGS alone for 30k steps first)."""
    rgb_loss_during_features: bool = False
    """Keep the RGB losses, and so Gaussian updates, after feature_start_step (FMGS freezes the Gaussians)."""
    feature_resolution: float = 0.5
    """Feature maps are rendered at this fraction of the RGB render's width and height."""
    clip_loss_weight: float = CLIP_LOSS_WEIGHT
    """l in (1 - l) * DINO + l * CLIP."""
    clip_warmup_steps: int = 20
    """Feature steps at the start that use 0.2 * clip_loss_weight (FMGS train.py)."""
    pixel_alignment_weight: float = PIXEL_ALIGNMENT_WEIGHT
    """Weight of the pixel-alignment loss (0 disables it)."""
    pixel_alignment_after: int = 2500
    """Feature steps before the pixel-alignment loss is switched on (FMGS README: stage 3 starts at 32.5k)."""
    query_chunk_size: int = 1 << 18
    """Gaussians per field evaluation outside autograd (bounds activation memory at render time)."""
    relevancy_basis_tol: float = 1e-6
    """Text queries render the per-Gaussian CLIP features' coefficients in an orthonormal basis of their span instead
    of all clip_dim channels (:mod:`fmgs_field.projection`); directions holding at most this fraction of the features'
    energy are dropped. A negative value renders the full CLIP map (the slow reference path)."""


class FMGSModel(SplatModel):
    """Splatting model with the FMGS language field. See the module docstring.

    Args:
        config (FMGSModelConfig): Model configuration.
    """

    config: FMGSModelConfig

    def populate_modules(self) -> None:
        super().populate_modules()
        self.fmgs_field = self.config.fmgs_field.setup()
        self.clip_teacher: Optional[CLIPTeacher] = None
        self._eval_feature_outputs = False
        self._query_cache: Optional[Tuple[tuple, Tensor, Tensor]] = None  # (key, basis [D, k], coefficients [N, k])

    def set_clip_teacher(self, teacher: CLIPTeacher) -> None:
        """Attaches the CLIP teacher used for text queries (the pipeline passes the datamanager's).

        Raises:
            ValueError: The teacher's embedding size differs from the field's CLIP head.
        """
        if teacher.feature_dim != self.config.fmgs_field.clip_dim:
            dim = self.config.fmgs_field.clip_dim
            raise ValueError(f"CLIP teacher embeds in {teacher.feature_dim} dims, fmgs_field.clip_dim is {dim}")
        self.clip_teacher = teacher

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """Splatfacto's groups plus ``fmgs_field`` (hash grids and heads; no per-Gaussian tensors)."""
        groups = super().get_param_groups()
        groups["fmgs_field"] = list(self.fmgs_field.parameters())
        return groups

    def in_feature_phase(self) -> bool:
        """Whether training has reached ``feature_start_step``."""
        return self.step >= self.config.feature_start_step

    def _gaussians_frozen(self) -> bool:
        return self.training and self.in_feature_phase() and not self.config.rgb_loss_during_features

    def step_post_backward(self, step) -> None:
        """Skips densification while the Gaussians are frozen (no RGB loss, so no ``means2d`` gradient)."""
        if self._gaussians_frozen():
            return
        super().step_post_backward(step)

    def _rasterize_features(
        self,
        camera: Cameras,
        params: Dict[str, Tensor],
        colors: Tensor,  # [N, C]
        size: Optional[Tuple[int, int]] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Alpha-composites per-Gaussian ``colors`` [N, C] (any C) with the Gaussians and the pose detached, at
        ``feature_resolution`` of the current RGB resolution or at ``size`` (height, width); returns
        ``(render [h, w, C], alpha [h, w, 1])``."""
        if self.training:
            camera_to_world = self.camera_optimizer.apply_to_camera(camera)
        else:
            camera_to_world = camera.camera_to_worlds
        detached = {k: params[k].detach() for k in ("means", "quats", "scales", "opacities")}
        resolution = size if size is not None else self.config.feature_resolution
        render, alpha, _ = self._rasterize(
            detached, camera, camera_to_world.detach(), "RGB", colors=colors, resolution=resolution
        )
        return render[0], alpha[0]

    def render_feature_maps(self, camera: Cameras, size: Optional[Tuple[int, int]] = None) -> Dict[str, Tensor]:
        """Renders the field's CLIP and DINO outputs with the Gaussians detached.

        Args:
            camera: One camera.
            size: Output (height, width) in pixels; default: ``feature_resolution`` of the current RGB resolution.

        Returns:
            ``{"fmgs_clip": [h, w, Dc], "fmgs_dino": [h, w, Dd], "fmgs_alpha": [h, w, 1]}``; empty when no Gaussian is
            inside the crop box.
        """
        params = self._cropped_params()
        if params is None:
            return {}
        chunk = None if torch.is_grad_enabled() else self.config.query_chunk_size
        out = self.fmgs_field(params["means"].detach(), chunk_size=chunk)
        clip, dino = out[FMGSFieldHeadNames.CLIP], out[FMGSFieldHeadNames.DINO]
        render, alpha = self._rasterize_features(camera, params, torch.cat([clip, dino], dim=-1), size)
        d_clip = clip.shape[-1]
        return {"fmgs_clip": render[..., :d_clip], "fmgs_dino": render[..., d_clip:], "fmgs_alpha": alpha}

    @torch.no_grad()
    def clip_coefficients(self) -> Tuple[Tensor, Tensor]:
        """Basis of the per-Gaussian CLIP features' span and every Gaussian's coefficients in it
        (:func:`fmgs_field.projection.feature_basis` with ``relevancy_basis_tol``).

        Cached until the Gaussian means, the field's parameters (any in-place update or load bumps their versions),
        the number of Gaussians or the step change, so a static scene in the viewer pays for the field and the basis
        once.

        Returns:
            ``(basis [Dc, k], coefficients [N, k])`` for all N Gaussians (crop box ignored).
        """
        means = self.gauss_params["means"]
        key = (self.step, means.shape[0], means._version, *(p._version for p in self.fmgs_field.parameters()))
        if self._query_cache is None or self._query_cache[0] != key:
            clip = self.fmgs_field(means.detach(), chunk_size=self.config.query_chunk_size)[FMGSFieldHeadNames.CLIP]
            basis = feature_basis(clip, self.config.relevancy_basis_tol)
            self._query_cache = (key, basis, clip @ basis)
        return self._query_cache[1], self._query_cache[2]

    @torch.no_grad()
    def relevancy_at(
        self,
        camera: Cameras,
        positives: Tensor,  # [P, Dc]
        negatives: Tensor,  # [M, Dc]
        size: Optional[Tuple[int, int]] = None,
    ) -> Optional[Tensor]:
        """LERF relevancy maps of text embeddings, rendered from :meth:`clip_coefficients` (k channels instead of Dc;
        exact up to ``relevancy_basis_tol``), or from the full CLIP map when ``relevancy_basis_tol`` is negative.

        Args:
            camera: One camera.
            positives: Text embeddings of the queries, any norm. [P, Dc]
            negatives: Text embeddings of the negatives, any norm. [M, Dc]
            size: Output (height, width) in pixels, e.g. a label image's; default: ``feature_resolution`` of the
                current RGB resolution.

        Returns:
            ``[h, w, P]`` in (0, 1), or None when no Gaussian is inside the crop box.
        """
        params = self._cropped_params()
        if params is None:
            return None
        if self.config.relevancy_basis_tol < 0:
            return relevancy(self.render_feature_maps(camera, size)["fmgs_clip"], positives, negatives)
        basis, coefficients = self.clip_coefficients()
        inside = self._crop_mask()
        if inside is not None:
            coefficients = coefficients[inside]
        rendered, _ = self._rasterize_features(camera, params, coefficients, size)
        return projected_relevancy(rendered, basis, positives, negatives)

    def render_relevancy(self, camera: Cameras) -> Optional[Tensor]:
        """Relevancy maps of the CLIP teacher's current positives against its current negatives
        (:meth:`relevancy_at`).

        Args:
            camera: One camera.

        Returns:
            ``[h, w, P]`` in (0, 1) at ``feature_resolution``, or None (no teacher or positives, empty crop box).
        """
        teacher = self.clip_teacher
        if teacher is None or not teacher.positives:
            return None
        return self.relevancy_at(camera, teacher.pos_embeds, teacher.neg_embeds)

    @contextlib.contextmanager
    def feature_outputs(self) -> Iterator[None]:
        """Within the block, eval-mode outputs also carry ``fmgs_clip`` [h, w, Dc], ``fmgs_dino`` [h, w, Dd],
        ``fmgs_alpha`` [h, w, 1] and ``fmgs_camera`` (the rendered camera, for label-resolution relevancy) for metrics;
        outside it, eval renders feature maps only when a query is set, so the
        viewer stays fast. The pipeline enters it around evaluation."""
        previous, self._eval_feature_outputs = self._eval_feature_outputs, True
        try:
            yield
        finally:
            self._eval_feature_outputs = previous

    @torch.no_grad()
    def gaussian_language_features(self) -> Dict[str, Tensor]:
        """The field's outputs at every Gaussian (crop box ignored), e.g. to export per-Gaussian features.

        Returns:
            ``{"means": [N, 3], "clip": [N, Dc] (unit norm), "dino": [N, Dd]}`` on the model's device.
        """
        means = self.gauss_params["means"].detach()
        out = self.fmgs_field(means, chunk_size=self.config.query_chunk_size)
        return {"means": means, "clip": out[FMGSFieldHeadNames.CLIP], "dino": out[FMGSFieldHeadNames.DINO]}

    def get_outputs(self, camera: Cameras) -> Dict[str, Tensor]:
        """RGB outputs, plus feature maps when training in the feature phase and relevancy maps in eval."""
        outputs = super().get_outputs(camera)
        if self.training:
            if self.in_feature_phase():
                outputs.update(self.render_feature_maps(camera))
            return outputs
        teacher = self.clip_teacher
        query = teacher is not None and bool(teacher.positives)
        if not (query or self._eval_feature_outputs):
            return outputs
        if self._eval_feature_outputs:  # evaluation needs the full maps anyway: relevancy from them
            features = self.render_feature_maps(camera)
            outputs.update(features, fmgs_camera=camera)
            rel = teacher.relevancy(features["fmgs_clip"]) if features and query else None
        else:
            rel = self.render_relevancy(camera)
        if rel is None:
            return outputs
        rgb = outputs["rgb"]
        rel = resize_feature_map(rel, tuple(rgb.shape[:2]))
        for i in range(rel.shape[-1]):
            r = rel[..., i : i + 1]
            outputs[f"relevancy_{i}"] = r
            p = torch.clip(r - 0.5, 0, 1)
            composited = apply_colormap(p / (p.max() + 1e-6), ColormapOptions("turbo"))
            below = (r < 0.5).squeeze(-1)
            composited[below] = rgb[below]
            outputs[f"composited_{i}"] = composited
        return outputs

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """Splatfacto's losses before ``feature_start_step``; from then on the weighted feature terms (and the RGB
        terms only with ``rgb_loss_during_features``)."""
        loss_dict = super().get_loss_dict(outputs, batch, metrics_dict)
        if not (self.training and "fmgs_clip" in outputs and "fmgs_clip" in batch):
            return loss_dict
        feature_step = self.step - self.config.feature_start_step
        clip_weight = self.config.clip_loss_weight * (0.2 if feature_step < self.config.clip_warmup_steps else 1.0)
        align_weight = self.config.pixel_alignment_weight if feature_step >= self.config.pixel_alignment_after else 0.0
        target_dino = batch["fmgs_dino"].to(self.device)
        size = tuple(target_dino.shape[:2])
        terms = feature_loss_dict(
            resize_feature_map(outputs["fmgs_clip"], size),
            resize_feature_map(outputs["fmgs_dino"], size),
            resize_feature_map(batch["fmgs_clip"].to(self.device), size),
            target_dino,
            clip_weight=clip_weight,
            alignment_weight=align_weight,
        )
        if self.config.rgb_loss_during_features:
            loss_dict.update(terms)
            return loss_dict
        return terms

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        """Splatfacto's metrics plus, in the feature phase, the cosine between rendered and teacher CLIP features."""
        metrics = super().get_metrics_dict(outputs, batch)
        if "fmgs_clip" in outputs and "fmgs_clip" in batch:
            target = batch["fmgs_clip"].to(self.device)
            rendered = resize_feature_map(outputs["fmgs_clip"].detach(), tuple(target.shape[:2]))
            metrics["clip_cosine"] = F.cosine_similarity(rendered, target, dim=-1).mean()
        return metrics

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Splatfacto's image metrics plus feature fidelity and LERF-OVS sums when ``outputs`` has feature maps.

        Args:
            outputs: Eval outputs; ``fmgs_clip`` [h, w, Dc], ``fmgs_dino`` [h, w, Dd] and ``fmgs_camera`` are present
                under :meth:`feature_outputs`.
            batch: Eval batch: ``image`` [H, W, 3], and from the fmgs datamanager ``fmgs_clip`` [h', w', Dc],
                ``fmgs_dino`` [h'', w'', Dd] and (with ``eval_labels``) ``fmgs_labels`` (a ``FrameLabels``).

        Returns:
            ``(metrics, images)``: PSNR/SSIM (LPIPS when available) as splatfacto; ``feature_fidelity_clip`` /
            ``feature_fidelity_dino`` (mean cosine with the teacher maps, :func:`~fmgs_field.evaluation.
            feature_fidelity`); with labels the per-frame sums of :func:`~fmgs_field.evaluation.frame_label_sums`
            (relevancy to each labelled category against the canonical negatives, rendered at the label image's
            size by :meth:`relevancy_at` from ``fmgs_camera``, LangSplat's protocol; zeros for an unlabelled frame).
            ``images`` is splatfacto's.
        """
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if "fmgs_clip" not in outputs:
            return metrics, images
        for key in ("clip", "dino"):
            if f"fmgs_{key}" in batch:
                target = batch[f"fmgs_{key}"].to(self.device)
                metrics[f"feature_fidelity_{key}"] = float(feature_fidelity(outputs[f"fmgs_{key}"], target))
        labels: Optional[FrameLabels] = batch.get("fmgs_labels")  # type: ignore[assignment]
        camera: Optional[Cameras] = outputs.get("fmgs_camera")  # type: ignore[assignment]
        if labels is not None and self.clip_teacher is not None and camera is not None:
            results = {}
            if labels.masks:
                categories, size = list(labels.masks), (labels.height, labels.width)
                text = self.clip_teacher.encode_text(categories).to(self.device)
                rel = self.relevancy_at(camera, text, self.clip_teacher.canonical_neg_embeds.to(self.device), size)
                if rel is None:  # empty crop box: nothing is relevant anywhere
                    rel = torch.zeros(*size, len(categories), device=self.device)
                results = evaluate_frame({c: rel[..., i] for i, c in enumerate(categories)}, labels)
            metrics.update(frame_label_sums(results))
        return metrics, images
