"""Device dispatch between gsplat's CUDA rasterizer and the pure-PyTorch one."""

from typing import Dict, Tuple

from gsplat import spherical_harmonics
from gsplat.rendering import rasterization
from jaxtyping import Float
from torch import Tensor

from splat_core.rendering.sh_colors import view_colors
from splat_core.rendering.torch_rasterizer import rasterize_torch


def rasterize(
    means: Float[Tensor, "N 3"],  # [N, 3]
    quats: Float[Tensor, "N 4"],  # [N, 4]
    scales: Float[Tensor, "N 3"],  # [N, 3]
    opacities: Float[Tensor, " N"],  # [N]
    colors: Float[Tensor, "..."],  # [(C,) N, D] or [(C,) N, K, 3]
    viewmats: Float[Tensor, "C 4 4"],  # [C, 4, 4]
    Ks: Float[Tensor, "C 3 3"],  # [C, 3, 3]
    width: int,
    height: int,
    **kwargs,
) -> Tuple[Float[Tensor, "C H W X"], Float[Tensor, "C H W 1"], Dict]:
    """Rasterize Gaussians with ``gsplat.rendering.rasterization`` on CUDA and ``rasterize_torch`` elsewhere.

    gsplat's kernels are CUDA-only, so CPU tests and demos render through ``rasterize_torch``, which has the same
    arguments, outputs and ``info`` keys. Both paths run unpacked (``packed=False``, as splatfacto calls gsplat), so
    ``info`` has the same layout (``radii``/``means2d`` indexed ``[C, N]``) whatever the device and the strategy can
    be driven with ``packed=False``.

    Args:
        means: Gaussian centres in world space. [N, 3]
        quats: Rotations as wxyz quaternions, not necessarily normalised. [N, 4]
        scales: Activated scales, in world units. [N, 3]
        opacities: Activated opacities in [0, 1]. [N]
        colors: Features [(C,) N, D], or SH coefficients [(C,) N, K, 3] when ``sh_degree`` is given.
        viewmats: World-to-camera transforms (OpenCV: x right, y down, z forward). [C, 4, 4]
        Ks: Pinhole intrinsics in pixels. [C, 3, 3]
        width: Image width in pixels.
        height: Image height in pixels.
        kwargs: Further keyword arguments of ``gsplat.rendering.rasterization`` (``sh_degree``, ``render_mode``,
            ``backgrounds``, ``absgrad``, ``rasterize_mode``, ...). ``packed=True`` is refused.

    Returns:
        A tuple:

        **render_colors**: Rendered features (depth last in the depth modes). [C, height, width, X]

        **render_alphas**: Accumulated opacities. [C, height, width, 1]

        **info**: gsplat's intermediate results ("means2d", "radii", "depths", "conics", ...).

    .. note::
        The torch path ignores gsplat arguments that do not change the result (``sparse_grad``,
        ``channel_chunk``) and refuses those that would (``camera_model`` other than "pinhole", ``covars``,
        ``radius_clip > 0``); see ``rasterize_torch``. Its own knob ``pairs_per_chunk`` is not a gsplat argument.
    """
    if kwargs.pop("packed", False):
        raise ValueError("rasterize() renders unpacked only (packed=False), so that info has one layout per device.")
    if means.is_cuda:
        sh_degree = kwargs.pop("sh_degree", None)
        if sh_degree is not None:  # gsplat would find the camera centres with a slow torch.inverse (sh_colors)
            colors = view_colors(means, colors, viewmats, sh_degree, spherical_harmonics)
        return rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, packed=False, **kwargs
        )
    return rasterize_torch(means, quats, scales, opacities, colors, viewmats, Ks, width, height, **kwargs)
