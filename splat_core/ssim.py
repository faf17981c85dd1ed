"""SSIM as ``pytorch_msssim.SSIM`` computes it, in two convolutions instead of ten.

Splatfacto's training loss uses ``pytorch_msssim.SSIM(data_range=1.0, size_average=True, channel=3)`` (Wang et al.,
"Image quality assessment: from error visibility to structural similarity", TIP 2004; 11x11 Gaussian window with
sigma 1.5, valid padding, K = (0.01, 0.03)). pytorch_msssim blurs ``X``, ``Y``, ``X*X``, ``Y*Y`` and ``X*Y`` one
after the other, each with two separable grouped convolutions (``pytorch_msssim/ssim.py``, ``_ssim`` and
``gaussian_filter``). :class:`FastSSIM` stacks the five maps along the channel axis and blurs them with one grouped
convolution per axis, so a forward pass launches 2 convolutions instead of 10 (and the backward pass 2 instead of
10), with the same window, the same order of the two passes (height, then width) and the same formula, hence the same
values to float32 rounding (``tests/test_ssim.py`` compares values and gradients with pytorch_msssim).

No library does this in pure torch: torchmetrics' ``StructuralSimilarityIndexMeasure`` pads by reflection (other
values at the border) and convolves 2-D windows; ``fused-ssim`` (Mallick et al., Taming 3DGS) is a CUDA extension
with its own compiler requirement. ``torch.compile`` is left out: CI has no C++ compiler for its CPU backend.
"""

from __future__ import annotations

import warnings
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor


def gaussian_window(size: int = 11, sigma: float = 1.5) -> Float[Tensor, " size"]:
    """Normalised 1-D Gaussian window centred on the middle tap, as pytorch_msssim's ``_fspecial_gauss_1d``.

    Args:
        size: number of taps (odd).
        sigma: standard deviation, in pixels.

    Returns:
        float32 weights summing to 1. [size]
    """
    coords = torch.arange(size, dtype=torch.float) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(
    X: Float[Tensor, "B C H W"],
    Y: Float[Tensor, "B C H W"],
    window: Float[Tensor, " S"],
    data_range: float = 1.0,
    size_average: bool = True,
    K: Tuple[float, float] = (0.01, 0.03),
) -> Tensor:
    """Mean SSIM of ``X`` against ``Y`` (Gaussian-weighted local statistics, valid padding).

    Args:
        X: images, any float dtype (the window is cast to it). [B, C, H, W]
        Y: images of the same shape and dtype. [B, C, H, W]
        window: 1-D Gaussian window (:func:`gaussian_window`), applied along the height and then the width; an axis
            shorter than the window is not blurred (with a warning), as pytorch_msssim does. [S]
        data_range: value range of the images (1.0 for colours in [0, 1]).
        size_average: True: the mean over batch and channels, a scalar []; False: the mean over channels per image [B].
        K: SSIM's stabilising constants (K1, K2); C1 = (K1 * data_range)^2, C2 = (K2 * data_range)^2.

    Returns:
        SSIM, 1 for identical images; [] if ``size_average`` else [B].

    Raises:
        ValueError: ``X`` and ``Y`` differ in shape, are not 4-D, or the window size is even.
    """
    if X.shape != Y.shape:
        raise ValueError(f"Input images should have the same dimensions, but got {X.shape} and {Y.shape}.")
    if X.dim() != 4:
        raise ValueError(f"Input images should be 4-d tensors [B, C, H, W], but got {X.shape}")
    size = window.shape[-1]
    if size % 2 != 1:
        raise ValueError("Window size should be odd.")
    C = X.shape[1]
    stacked = torch.cat((X, Y, X * X, Y * Y, X * Y), dim=1)  # [B, 5C, H, W]
    blurred = _blur(stacked, window.to(device=X.device, dtype=X.dtype))
    mu1, mu2, xx, yy, xy = blurred.split(C, dim=1)  # each [B, C, H', W']

    C1 = (K[0] * data_range) ** 2
    C2 = (K[1] * data_range) ** 2
    mu1_sq = mu1.pow(2)
    mu2_sq = mu2.pow(2)
    mu1_mu2 = mu1 * mu2
    # pytorch_msssim's formula term by term (compensation 1.0), so that rounding matches too
    sigma1_sq = xx - mu1_sq
    sigma2_sq = yy - mu2_sq
    sigma12 = xy - mu1_mu2
    cs_map = (2 * sigma12 + C2) / (sigma1_sq + sigma2_sq + C2)
    ssim_map = ((2 * mu1_mu2 + C1) / (mu1_sq + mu2_sq + C1)) * cs_map
    per_channel = torch.flatten(ssim_map, 2).mean(-1)  # [B, C]
    return per_channel.mean() if size_average else per_channel.mean(1)


def _blur(x: Tensor, window: Tensor) -> Tensor:  # [B, D, H, W], [S] -> [B, D, H', W']
    """Separable Gaussian blur of every channel, valid padding: one grouped convolution per axis."""
    D, size = x.shape[1], window.shape[-1]
    for axis, extent in ((2, x.shape[2]), (3, x.shape[3])):
        if extent < size:
            warnings.warn(f"Skipping Gaussian Smoothing at dimension {axis} for input: {x.shape} and win size: {size}")
            continue
        shape = (D, 1, size, 1) if axis == 2 else (D, 1, 1, size)
        x = F.conv2d(x, window.reshape(1, 1, *shape[2:]).expand(shape), groups=D)
    return x


class FastSSIM(torch.nn.Module):
    """Drop-in for ``pytorch_msssim.SSIM`` (same constructor arguments for 2-D images, same call, same values):
    ``FastSSIM(data_range=1.0, size_average=True, channel=3)(X, Y)`` with ``X``, ``Y`` [B, C, H, W].

    The window is a non-persistent buffer: it follows ``.to(device)`` and stays out of ``state_dict``, so checkpoints
    of models that used pytorch_msssim load unchanged.

    Args:
        data_range: value range of the images. pytorch_msssim's default is 255; splatfacto passes 1.0.
        size_average: scalar mean (True) or one value per image (False).
        win_size: window taps (odd).
        win_sigma: window standard deviation, in pixels.
        channel: accepted for pytorch_msssim compatibility; any channel count works.
        K: SSIM's stabilising constants (K1, K2).
    """

    window: Tensor

    def __init__(
        self,
        data_range: float = 255,
        size_average: bool = True,
        win_size: int = 11,
        win_sigma: float = 1.5,
        channel: int = 3,
        K: Sequence[float] = (0.01, 0.03),
    ) -> None:
        super().__init__()
        self.data_range = data_range
        self.size_average = size_average
        self.K = (float(K[0]), float(K[1]))
        self.channel = channel
        self.register_buffer("window", gaussian_window(win_size, win_sigma), persistent=False)
        self._windows: Dict[Tuple[torch.device, torch.dtype], Tensor] = {}

    def forward(self, X: Float[Tensor, "B C H W"], Y: Float[Tensor, "B C H W"]) -> Tensor:
        """SSIM of ``X`` against ``Y`` ([] or [B], see :func:`ssim`)."""
        key = (X.device, X.dtype)
        window = self._windows.get(key)
        if window is None:  # cast once per device and dtype: a per-call .to() of a CPU window would sync a GPU step
            window = self._windows[key] = self.window.to(device=X.device, dtype=X.dtype)
        return ssim(X, Y, window, data_range=self.data_range, size_average=self.size_average, K=self.K)


__all__ = ["FastSSIM", "gaussian_window", "ssim"]
