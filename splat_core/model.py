"""The shared splatting model: splatfacto with a device-agnostic rendering path, offline-safe metrics, sparse init and
a pluggable densification strategy. Both methods build on it (``vlm_instruct_gs.vlm_fastgs_model`` adds the VLM
guidance, ``fmgs_field.fmgs_model`` the language field).

The model subclasses nerfstudio's ``SplatfactoModel`` (the way LERF subclasses Nerfacto) and changes only what the
methods need:

- ``get_outputs`` renders through :func:`splat_core.rendering.rasterize`, which uses gsplat's CUDA kernels on
  CUDA tensors and a pure-PyTorch path with gsplat's math on CPU. Splatfacto's own ``get_outputs`` hard-codes
  ``.cuda()`` and gsplat's CUDA-only ``rasterization``, so it cannot be reused on CPU; everything else (camera
  optimiser, crop box, background, SH schedule, resolution schedule, losses) is splatfacto's.
- Initial Gaussians come from the dataparser's points (random points where the cameras look, or SfM), built on the
  model's device; splatfacto's SfM branch hard-codes ``.cuda()``.
- LPIPS degrades to "unavailable" offline (:mod:`splat_core.compat`).
- The training step is lean (issue 11): SSIM is :class:`splat_core.ssim.FastSSIM` (pytorch_msssim's values in 2
  convolutions instead of 10), the photometric loss replays as a CUDA graph on CUDA (:mod:`splat_core.losses`), a
  training camera's projection matrices are built once per camera and resolution, the losses need no host
  synchronisation, and the per-step PSNR is computed only when the trainer logs it
  (:attr:`SplatModel.train_metrics_due`, set by :class:`splat_core.trainer.SplatTrainer`).
- Densification goes through ``self.strategy`` (a gsplat ``Strategy``; FastGS by default,
  :mod:`splat_core.strategy.fastgs`), fed by the ``info`` dict of every render and, for FastGS, by multi-view scores
  (:mod:`splat_core.view_scoring`). Subclasses add keyword arguments to the strategy's ``step_post_backward`` through
  :meth:`SplatModel.strategy_step_kwargs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Literal, Optional, Tuple, Type, Union

import torch
from jaxtyping import Float, UInt8
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.model_components.lib_bilagrid import color_correct, total_variation_loss
from nerfstudio.models.splatfacto import (
    RGB2SH,
    SplatfactoModel,
    SplatfactoModelConfig,
    get_viewmat,
    num_sh_bases,
    random_quat_tensor,
)
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from splat_core import view_scoring
from splat_core.compat import (
    OptionalLPIPS,
    allow_nerfstudio_checkpoints,
    install_checkpoint_errors,
    offline_safe_lpips,
)
from splat_core.losses import PhotometricLoss
from splat_core.metrics import pixel_coverage
from splat_core.rendering import rasterize
from splat_core.rendering.views import RenderedView
from splat_core.ssim import FastSSIM
from splat_core.strategy import FastGSStrategy

# ns-train/ns-eval/ns-viewer/ns-render import this module (method registry or config.yml) before their torch.load
allow_nerfstudio_checkpoints()


@dataclass
class SplatModelConfig(SplatfactoModelConfig):
    """The shared splatting model: splatfacto's fields (all still apply) with sparse-start defaults."""

    _target: Type = field(default_factory=lambda: SplatModel)
    random_init: bool = False
    """If True, ignore the dataparser's initial points and use splatfacto's cube init (num_random points in a cube
    of side random_scale). The dataparser's --init (random|sfm) is the usual way to choose the start."""
    num_random: int = 100
    """Number of points for the cube init (random_init True, or a dataparser that provides no points)."""
    strategy: Literal["fastgs", "default"] = "fastgs"
    """Densification strategy: 'fastgs' (multi-view consistent densification and pruning, configured by
    --pipeline.model.fastgs.*) or 'default' (gsplat's DefaultStrategy, configured by splatfacto's fields
    cull_alpha_thresh, densify_grad_thresh, ... exactly as splatfacto)."""
    fastgs: FastGSStrategy = field(default_factory=FastGSStrategy)
    """FastGS strategy settings (used when strategy is 'fastgs'); splatfacto's densification fields do not apply."""
    cuda_graph_loss: bool = True
    """On CUDA, replay the photometric training loss (L1 + SSIM, forward and backward) as one CUDA graph per image
    size (:mod:`splat_core.losses`): same values, about 60 fewer kernel launches per step. False runs it eagerly."""


def gaussians_from_points(
    xyz: Float[Tensor, "N 3"],
    rgb: UInt8[Tensor, "N 3"],
    sh_degree: int,
    scales: Float[Tensor, "N 1"],
) -> torch.nn.ParameterDict:
    """Splatfacto's per-Gaussian parameters for a point cloud (pre-activation values, as splatfacto stores them).

    Args:
        xyz: means in world (dataparser) units. [N, 3]
        rgb: colours, uint8 0-255. [N, 3]
        sh_degree: maximum SH degree; 0 stores logit colours (splatfacto's colour-only mode).
        scales: isotropic scale per point in world units (e.g. mean distance to 3 nearest neighbours). [N, 1]

    Returns:
        ParameterDict with means [N,3], scales (log) [N,3], quats [N,4] (wxyz, random), features_dc [N,3],
        features_rest [N,K-1,3], opacities (logit of 0.1) [N,1], on ``xyz``'s device.
    """
    n = xyz.shape[0]
    colors = rgb.float().to(xyz.device) / 255.0
    if sh_degree > 0:
        features_dc = RGB2SH(colors)
    else:
        features_dc = torch.logit(colors, eps=1e-10)
    return torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(xyz.float().clone()),
            "scales": torch.nn.Parameter(torch.log(scales.clamp(min=1e-7)).repeat(1, 3)),
            "quats": torch.nn.Parameter(random_quat_tensor(n).to(xyz.device)),
            "features_dc": torch.nn.Parameter(features_dc),
            "features_rest": torch.nn.Parameter(torch.zeros(n, num_sh_bases(sh_degree) - 1, 3, device=xyz.device)),
            "opacities": torch.nn.Parameter(torch.logit(0.1 * torch.ones(n, 1, device=xyz.device))),
        }
    )


@dataclass(frozen=True)
class TrainViews:
    """The training cameras and cached images (nerfstudio FullImageDatamanager's), for extra training-time renders."""

    cameras: Cameras
    images: List[Dict[str, Tensor]]


def camera_extent(camera_to_worlds: Float[Tensor, "C 3 4"]) -> float:
    """3DGS's scene extent: 1.1 x the largest distance of a camera centre from the cameras' mean centre (world units)."""
    centers = camera_to_worlds[:, :3, 3].float()
    return float(1.1 * (centers - centers.mean(0)).norm(dim=-1).max().clamp(min=1e-6))


class SplatModel(SplatfactoModel):
    """Splatfacto on gsplat (CUDA) or on a pure-PyTorch rasteriser (CPU). See the module docstring."""

    config: SplatModelConfig
    lpips: OptionalLPIPS

    def populate_modules(self) -> None:
        # splatfacto's seed-point branch calls .cuda(); let it build its cube init, then replace it below.
        seed_points, self.seed_points = self.seed_points, None
        with offline_safe_lpips():
            super().populate_modules()
        self.seed_points = seed_points
        if seed_points is not None and not self.config.random_init and seed_points[0].shape[0] > 0:
            xyz = seed_points[0].float()
            distances, _ = self.k_nearest_sklearn(xyz, min(3, max(xyz.shape[0] - 1, 1)))
            scales = torch.from_numpy(distances).mean(dim=-1, keepdim=True)
            self.gauss_params = gaussians_from_points(xyz, seed_points[1], self.config.sh_degree, scales)
        if self.config.strategy == "fastgs":
            self.strategy = replace(self.config.fastgs)
            self.strategy_state = self.strategy.initialize_state(scene_scale=1.0)
        self._train_views: Optional[TrainViews] = None
        self.ssim = FastSSIM(data_range=1.0, size_average=True, channel=3)  # splatfacto's SSIM, same values, faster
        self.photometric_loss = PhotometricLoss(self.ssim, self.config.ssim_lambda, self.config.cuda_graph_loss)
        # whether get_metrics_dict computes training metrics (PSNR) this step; SplatTrainer clears it between its
        # logging steps, since nothing reads them there and they cost kernels every step
        self.train_metrics_due: bool = True
        self._train_projections: Dict[Tuple, Tuple[int, Tensor, Tensor, int, int]] = {}
        install_checkpoint_errors()  # ns-eval/viewer/render load a checkpoint right after building the model

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        """Splatfacto's callbacks; also keeps the training views for FastGS's multi-view scores."""
        datamanager = training_callback_attributes.pipeline.datamanager
        if hasattr(datamanager, "cached_train"):
            self._train_views = TrainViews(cameras=datamanager.train_cameras, images=datamanager.cached_train)
            if isinstance(self.strategy, FastGSStrategy):
                # FastGS (as 3DGS) measures 3D scales against the camera extent
                self.strategy_state["scene_scale"] = camera_extent(datamanager.train_cameras.camera_to_worlds)
        return super().get_training_callbacks(training_callback_attributes)

    def step_post_backward(self, step: int) -> None:
        """Run the strategy after the optimizer step; FastGS gets multi-view scores when it asks for them, and
        subclasses' extra arguments (:meth:`strategy_step_kwargs`)."""
        assert step == self.step
        kwargs = self.strategy_step_kwargs(step)
        if isinstance(self.strategy, FastGSStrategy):
            wants = self.strategy.wants_view_scores(step)
            kwargs["view_scores"] = self.score_views(self.strategy.num_score_views) if wants else None
        self.strategy.step_post_backward(
            params=self.gauss_params, optimizers=self.optimizers, state=self.strategy_state, step=step,
            info=self.info, packed=False, **kwargs,
        )

    def strategy_step_kwargs(self, step: int) -> Dict[str, object]:
        """Extra keyword arguments for the strategy's ``step_post_backward`` at ``step`` (none here; the guided
        model passes ``guidance=``)."""
        return {}

    # ------------------------------------------------------------------ checkpoint state
    def get_extra_state(self) -> Dict[str, object]:
        """What a checkpoint holds besides the Parameters (``nn.Module``'s hook, saved as ``_extra_state``).

        Returns:
            ``{"strategy_state": self.strategy_state}``: the strategy's per-Gaussian accumulators ([N] tensors
            aligned with the Gaussians saved beside them, or None) and scalars (``scene_scale``, world units).
            Subclasses add their own keys; values stay types ``torch.load(weights_only=True)`` accepts.
        """
        return {"strategy_state": dict(self.strategy_state)}

    def set_extra_state(self, state: Dict[str, object]) -> None:
        """Restore :meth:`get_extra_state`'s dict (tensors moved to the model's device). A checkpoint of another
        strategy (other keys) leaves the current state as built, with a log line."""
        saved = state.get("strategy_state") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            return
        if set(saved) != set(self.strategy_state):
            CONSOLE.log("[yellow]checkpoint's strategy state is another strategy's; it starts afresh")
            return
        for key, value in saved.items():
            self.strategy_state[key] = value.to(self.device) if isinstance(value, Tensor) else value

    @torch.no_grad()
    def render_view(self, camera: Cameras) -> RenderedView:
        """Render one camera (no camera optimiser, eval background) at the current training resolution, for view
        scores and guidance.

        Returns:
            rgb [H,W,3], expected depth [H,W], alpha [H,W] and the projection (means2d [1,N,2], radii, depths [1,N]).
        """
        camera = camera.to(self.device)
        params = {k: self.gauss_params[k] for k in self.gauss_params.keys()}
        render, alpha, info = self._rasterize(params, camera, camera.camera_to_worlds, "RGB+ED")
        rgb = (render[0, ..., :3] + (1 - alpha[0]) * self.background_color.to(self.device)).clamp(0, 1)
        return RenderedView(
            rgb=rgb, depth=render[0, ..., 3], alpha=alpha[0, ..., 0], means2d=info["means2d"].detach(),
            radii=info["radii"], depths=info["depths"].detach(),
        )

    # ------------------------------------------------------------------ rendering
    def get_outputs(self, camera: Cameras) -> Dict[str, Union[torch.Tensor, List]]:
        """Render one camera.

        When training, a camera of the datamanager (``metadata["cam_idx"]`` set) renders with the projection cached by
        :meth:`_train_projection`, so the step reads no camera tensor back from the GPU; any other camera renders
        through :meth:`_rasterize`, as at eval.

        Returns:
            ``rgb`` [H,W,3] in [0,1], ``depth`` [H,W,1] (expected depth, eval or when requested), ``accumulation``
            [H,W,1], ``background`` ([3] when training, [H,W,3] otherwise), as splatfacto.

        Raises:
            TypeError: ``camera`` is not a nerfstudio ``Cameras``.
        """
        if not isinstance(camera, Cameras):
            raise TypeError(f"get_outputs expects a Cameras object, got {type(camera).__name__}")
        if self.training:
            assert camera.shape[0] == 1, "Only one camera at a time"

        params = self._cropped_params()
        if params is None:
            return self.get_empty_outputs(int(camera.width.item()), int(camera.height.item()), self.background_color)

        render_mode = "RGB+ED" if (self.config.output_depth_during_training or not self.training) else "RGB"
        projection = self._train_projection(camera) if self.training else None
        if projection is not None:
            render, alpha, self.info = self._rasterize_projected(
                params, *projection, render_mode=render_mode, absgrad=self.strategy.absgrad
            )
        else:
            camera_to_world = (
                self.camera_optimizer.apply_to_camera(camera) if self.training else camera.camera_to_worlds
            )
            render, alpha, self.info = self._rasterize(params, camera, camera_to_world, render_mode)
        H, W = self.last_size = render.shape[1:3]
        if self.training:
            self.strategy.step_pre_backward(
                self.gauss_params, self.optimizers, self.strategy_state, self.step, self.info
            )

        background = self._get_background_color()
        rgb = torch.clamp(render[..., :3] + (1 - alpha) * background, 0.0, 1.0)
        if self.config.use_bilateral_grid and self.training and camera.metadata and "cam_idx" in camera.metadata:
            rgb = self._apply_bilateral_grid(rgb, camera.metadata["cam_idx"], H, W)
        depth = None
        if render_mode == "RGB+ED":
            depth = render[..., 3:4]
            depth = torch.where(alpha > 0, depth, depth.detach().max()).squeeze(0)
        if not self.training:
            background = background.expand(H, W, 3)
        return {"rgb": rgb.squeeze(0), "depth": depth, "accumulation": alpha.squeeze(0), "background": background}

    def _train_projection(self, camera: Cameras) -> Optional[Tuple[Tensor, Tensor, int, int]]:
        """World-to-camera ``[1, 4, 4]`` and intrinsics ``[1, 3, 3]`` (on the model's device) and the width and height
        in pixels of a datamanager training camera at the current training resolution; None for a camera without
        ``metadata["cam_idx"]``.

        Built by :meth:`_intrinsics_at`, as :meth:`_rasterize` builds them, once per camera and resolution: building
        reads the camera's size (``.item()``) and copies K to the device, and each of those waits for the GPU when the
        camera lives there (as nerfstudio's datamanager puts it with ``cache_images="gpu"``). An entry is reused only
        for the same ``camera_to_worlds`` storage (the datamanager's cameras, sliced per step). The camera optimiser's
        pose correction, when on, is applied every step.
        """
        idx = (camera.metadata or {}).get("cam_idx")
        if idx is None:
            return None
        scale = self._get_downscale_factor()
        key = (int(idx), scale, str(self.device))
        ptr = camera.camera_to_worlds.data_ptr()
        entry = self._train_projections.get(key)
        if entry is None or entry[0] != ptr:
            K, W, H = self._intrinsics_at(camera)
            entry = (ptr, get_viewmat(camera.camera_to_worlds).to(self.device), K, W, H)
            self._train_projections[key] = entry
        _, viewmat, K, W, H = entry
        if self.camera_optimizer.config.mode != "off":
            viewmat = get_viewmat(self.camera_optimizer.apply_to_camera(camera)).to(self.device)
        return viewmat, K, W, H

    def _rasterize_projected(
        self,
        params: Dict[str, Tensor],
        viewmats: Tensor,  # [C, 4, 4]
        Ks: Tensor,  # [C, 3, 3]
        width: int,
        height: int,
        render_mode: str = "RGB",
        colors: Optional[Tensor] = None,  # [N, D]
        absgrad: bool = False,
    ) -> Tuple[Tensor, Tensor, Dict]:
        """Rasterise ``params`` for C cameras of one size: the one gsplat call of the model (training, eval, feature
        and score-view renders all come here, through :func:`splat_core.rendering.rasterize`).

        Args:
            params: Per-Gaussian tensors as stored (pre-activation ``means``, ``scales`` (log), ``quats`` (wxyz),
                ``opacities`` (logit) [N, 1]; ``features_dc``/``features_rest`` unless ``colors`` is given).
            viewmats: World-to-camera transforms (OpenCV convention, :func:`get_viewmat`) on the model's device.
                [C, 4, 4]
            Ks: Pinhole intrinsics in pixels at ``width`` x ``height``, on the model's device. [C, 3, 3]
            width: Image width in pixels.
            height: Image height in pixels.
            render_mode: gsplat's render mode ("RGB", "RGB+ED", ...).
            colors: Per-Gaussian features composited as given (no SH, no sigmoid) instead of the SH colours, e.g.
                language features. [N, D]
            absgrad: gsplat's ``absgrad`` (AbsGS gradients on ``info["means2d"]``); the training render passes the
                strategy's, since only its ``info`` feeds the strategy.

        Returns:
            gsplat's ``(render [C, H, W, X], alpha [C, H, W, 1], info)``. The SH colours' degree follows splatfacto's
            schedule (``sh_degree_interval``); with ``sh_degree`` 0 they are the sigmoid of the DC term.
        """
        sh_degree: Optional[int] = None
        if colors is None:
            colors = torch.cat((params["features_dc"][:, None, :], params["features_rest"]), dim=1)
            if self.config.sh_degree > 0:
                sh_degree = min(self.step // self.config.sh_degree_interval, self.config.sh_degree)
            else:
                colors = torch.sigmoid(colors).squeeze(1)
        return rasterize(
            means=params["means"], quats=params["quats"], scales=torch.exp(params["scales"]),
            opacities=torch.sigmoid(params["opacities"]).squeeze(-1), colors=colors,
            viewmats=viewmats, Ks=Ks, width=width, height=height, near_plane=0.01, far_plane=1e10,
            render_mode=render_mode, sh_degree=sh_degree, absgrad=absgrad, rasterize_mode=self.config.rasterize_mode,
        )

    def _rasterize(
        self,
        params: Dict[str, Tensor],
        camera: Cameras,
        camera_to_world: Tensor,  # [1, 3, 4]
        render_mode: str = "RGB",
        colors: Optional[Tensor] = None,  # [N, D]
        resolution: Union[float, Tuple[int, int]] = 1.0,
    ) -> Tuple[Tensor, Tensor, Dict]:
        """:meth:`_rasterize_projected` (same ``params``, ``render_mode``, ``colors``) for one camera at a resolution.

        Args:
            camera: One camera; its intrinsics and size are scaled, the object is left unchanged.
            camera_to_world: Its pose (OpenGL, camera optimiser applied or not). [1, 3, 4]
            resolution: Fraction of the camera's size at splatfacto's current training resolution (1 / the
                downscale factor of its schedule; the full size in eval), or an exact ``(height, width)``.

        Returns:
            gsplat's ``(render [1, H, W, X], alpha [1, H, W, 1], info)``; ``absgrad`` follows the strategy for the SH
            colours (only that render feeds it) and is off for ``colors``.
        """
        K, width, height = self._intrinsics_at(camera, resolution)
        viewmats = get_viewmat(camera_to_world).to(self.device)
        return self._rasterize_projected(
            params, viewmats, K, width, height, render_mode, colors=colors,
            absgrad=self.strategy.absgrad if colors is None else False,
        )

    def _intrinsics_at(
        self, camera: Cameras, resolution: Union[float, Tuple[int, int]] = 1.0
    ) -> Tuple[Tensor, int, int]:
        """Intrinsics ``[1, 3, 3]`` (pixels, on the model's device) and width, height (pixels, at least 1) of one
        camera at ``resolution`` (as :meth:`_rasterize`'s argument), without mutating the camera."""
        K = camera.get_intrinsics_matrices().to(self.device)  # [1, 3, 3]
        if isinstance(resolution, tuple):
            height, width = resolution
            sx, sy = width / float(camera.width.item()), height / float(camera.height.item())
        else:
            sx = sy = resolution / self._get_downscale_factor()
            # Cameras.rescale_output_resolution's rounding (truncation)
            width, height = int(camera.width.item() * sx), int(camera.height.item() * sy)
        K = K.clone()
        K[:, 0, :] *= sx  # fx, cx
        K[:, 1, :] *= sy  # fy, cy
        return K, max(width, 1), max(height, 1)

    @torch.no_grad()
    def score_views(self, num_views: int) -> Dict[str, Tensor]:
        """FastGS multi-view scores from ``num_views`` random training views
        (:func:`splat_core.view_scoring.score_views`; the strategy's hook calls this).

        Returns:
            ``{"densify_score": [N], "prune_score": [N]}`` for the current Gaussians.

        Raises:
            RuntimeError: if the training views are unknown (the model was not set up by a nerfstudio trainer).
        """
        if self._train_views is None:
            raise RuntimeError("FastGS needs the training views: set up the model through a nerfstudio Trainer")
        return view_scoring.score_views(self, self._train_views, num_views)

    def _crop_mask(self) -> Optional[Tensor]:
        """[N] bool of the Gaussians inside the viewer's crop box, or None when every Gaussian counts (no crop box, or
        training)."""
        if self.crop_box is None or self.training:
            return None
        return self.crop_box.within(self.means).reshape(-1)

    def _cropped_params(self) -> Optional[Dict[str, Tensor]]:
        """Per-Gaussian tensors inside the viewer's crop box (all of them when training), None if it is empty."""
        names = ("means", "scales", "quats", "features_dc", "features_rest", "opacities")
        inside = self._crop_mask()
        if inside is None:
            return {k: self.gauss_params[k] for k in names}
        if not bool(inside.any()):
            return None
        return {k: self.gauss_params[k][inside] for k in names}

    # ------------------------------------------------------------------ losses
    def get_metrics_dict(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Splatfacto's metrics (``psnr``, ``gaussian_count``, camera-optimiser metrics), or ``{}`` when training and
        :attr:`train_metrics_due` is False (the trainer writes training metrics only on its logging steps)."""
        if self.training and not self.train_metrics_due:
            return {}
        return super().get_metrics_dict(outputs, batch)

    def get_loss_dict(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor], metrics_dict: Optional[Dict] = None
    ) -> Dict[str, Tensor]:
        """Splatfacto's losses without a host synchronisation.

        ``main_loss = (1 - ssim_lambda) * L1 + ssim_lambda * (1 - SSIM)`` (:class:`splat_core.losses.PhotometricLoss`,
        CUDA graphs on CUDA when ``cuda_graph_loss``) over the image composited on the step's background (masked to
        black where ``batch["mask"]`` is 0, as splatfacto), plus splatfacto's ``scale_reg`` (every 10th step, when
        ``use_scale_regularization``), the camera optimiser's regulariser and the bilateral grid's TV loss when those
        are on. Splatfacto builds its zero ``scale_reg`` with ``torch.tensor(0.0).to(device)``,
        a blocking copy that waits for the GPU every step; here it is left out when scale regularisation is off and
        made on the device otherwise.

        Args:
            outputs: :meth:`get_outputs` (``rgb`` [H,W,3], ``background`` [3]).
            batch: the datamanager's ``image`` [H,W,3|4] (uint8 or float), optionally ``mask`` [H,W,1].
            metrics_dict: unused (nerfstudio's signature).

        Returns:
            Scalar losses, summed by the trainer.
        """
        gt_img = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred_img = outputs["rgb"]
        if "mask" in batch:
            mask = self._downscale_if_required(batch["mask"]).to(self.device)
            assert mask.shape[:2] == gt_img.shape[:2] == pred_img.shape[:2]
            gt_img, pred_img = gt_img * mask, pred_img * mask
        loss_dict = {"main_loss": self.photometric_loss(pred_img, gt_img)}
        if self.config.use_scale_regularization:
            if self.step % 10 == 0:
                scale_exp = torch.exp(self.scales)
                ratio = scale_exp.amax(dim=-1) / scale_exp.amin(dim=-1)
                loss_dict["scale_reg"] = 0.1 * (ratio.clamp_min(self.config.max_gauss_ratio)
                                                - self.config.max_gauss_ratio).mean()
            else:
                loss_dict["scale_reg"] = torch.zeros((), device=self.device)
        if self.training:
            self.camera_optimizer.get_loss_dict(loss_dict)
            if self.config.use_bilateral_grid:
                loss_dict["tv_loss"] = 10 * total_variation_loss(self.bil_grids.grids)
        return loss_dict

    # ------------------------------------------------------------------ evaluation
    def get_image_metrics_and_images(
        self, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, torch.Tensor]]:
        """PSNR, SSIM, LPIPS (left out when its weights are unavailable) and the side-by-side image, as splatfacto,
        plus ``coverage``: the fraction of pixels with mean absolute RGB error below 0.1
        (:func:`~splat_core.metrics.pixel_coverage`)."""
        gt = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        pred = outputs["rgb"]
        gt_b, pred_b = gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None]
        metrics: Dict[str, float] = {
            "psnr": float(self.psnr(gt_b, pred_b).item()),
            "ssim": float(self.ssim(gt_b, pred_b)),
            "coverage": pixel_coverage(pred, gt),
            "num_gaussians": float(self.num_points),
        }
        lpips = self.lpips(gt_b, pred_b)
        if lpips is not None:
            metrics["lpips"] = float(lpips)
        if self.config.color_corrected_metrics:
            cc = color_correct(pred, gt).permute(2, 0, 1)[None]
            metrics.update(cc_psnr=float(self.psnr(gt_b, cc).item()), cc_ssim=float(self.ssim(gt_b, cc)))
        return metrics, {"img": torch.cat([gt, pred], dim=1)}
