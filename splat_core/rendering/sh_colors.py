"""View-dependent colours from spherical harmonics, shared by the CUDA and the PyTorch rasterizer.

gsplat's ``rasterization(..., sh_degree=d)`` finds the camera centres with ``torch.inverse(viewmats)``. On CUDA that
one 4x4 inverse took 0.6 ms of host time per training step, far more than its few kernel launches; a host wait on
the factorisation's status is the likely reason (``docs/benchmarks/profile_sync_sites/vlm-fastgs-2x.json``:
``aten::linalg_inv``, 100 calls in 100 steps). World-to-camera transforms are rigid, so the centre is ``-R^T t``
with no inverse. :func:`splat_core.rendering.rasterize.rasterize` therefore evaluates the SH here and hands gsplat
finished colours (``sh_degree=None``); the PyTorch path does the same, so both devices share this code.
"""

from typing import Callable

import torch
from jaxtyping import Float
from torch import Tensor

SHFunction = Callable[[int, Tensor, Tensor], Tensor]
"""``(degree, dirs [..., 3], coeffs [..., K, 3]) -> [..., 3]``: gsplat's ``spherical_harmonics`` (CUDA) or its
PyTorch reference ``gsplat.cuda._torch_impl._spherical_harmonics``; directions need not be normalised."""


def camera_centres(viewmats: Float[Tensor, "C 4 4"]) -> Float[Tensor, "C 3"]:
    """Camera centres in world space of rigid world-to-camera transforms.

    Args:
        viewmats: World-to-camera transforms ``[[R, t], [0, 1]]`` with orthonormal ``R`` (any axis convention:
            the centre does not depend on it). [C, 4, 4]

    Returns:
        ``-R^T t``, the translation of the camera-to-world inverse. [C, 3]
    """
    rotations = viewmats[:, :3, :3]  # [C, 3, 3]
    translations = viewmats[:, :3, 3:]  # [C, 3, 1]
    return -(rotations.transpose(1, 2) @ translations)[..., 0]


def view_colors(
    means: Float[Tensor, "N 3"],
    coeffs: Float[Tensor, "..."],
    viewmats: Float[Tensor, "C 4 4"],
    sh_degree: int,
    sh_function: SHFunction,
) -> Float[Tensor, "C N 3"]:
    """Per-camera RGB of each Gaussian along its viewing direction, as gsplat's ``rasterization`` computes it.

    Args:
        means: Gaussian centres in world space. [N, 3]
        coeffs: SH coefficients, shared by all cameras or per camera. [N, K, 3] or [C, N, K, 3]
        viewmats: Rigid world-to-camera transforms (see :func:`camera_centres`). [C, 4, 4]
        sh_degree: SH degree to evaluate; ``(sh_degree + 1) ** 2 <= K``.
        sh_function: The SH evaluation (see :data:`SHFunction`).

    Returns:
        ``max(SH(dirs) + 0.5, 0)`` with ``dirs = means - centre`` (gsplat's offset and clamp, which match the
        reference 3DGS CUDA backend). [C, N, 3]

    Raises:
        ValueError: If ``coeffs`` does not have a ``[(C,) N, K, 3]`` shape with enough bases for ``sh_degree``.
    """
    C, N = viewmats.shape[0], means.shape[0]
    per_camera = coeffs.dim() == 4 and coeffs.shape[:2] == (C, N)
    if not (per_camera or (coeffs.dim() == 3 and coeffs.shape[0] == N)) or coeffs.shape[-1] != 3:
        raise ValueError(f"SH coefficients must be [N, K, 3] or [C, N, K, 3] with N={N}, C={C}; got {tuple(coeffs.shape)}")
    if (sh_degree + 1) ** 2 > coeffs.shape[-2]:
        raise ValueError(f"SH degree {sh_degree} needs {(sh_degree + 1) ** 2} bases; the coefficients have {coeffs.shape[-2]}")
    dirs = means[None, :, :] - camera_centres(viewmats)[:, None, :]  # [C, N, 3]
    shs = coeffs if per_camera else coeffs.expand(C, -1, -1, -1)  # [C, N, K, 3]
    return torch.clamp_min(sh_function(sh_degree, dirs, shs) + 0.5, 0.0)
