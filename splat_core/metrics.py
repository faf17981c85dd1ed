"""Image metrics that nerfstudio does not provide.

``coverage`` is the share of pixels a reconstruction gets right, which PSNR (a mean) hides: a model can score well
while a background region is still missing. The VLM phases exist to close such regions, so vlm-fastgs reports it in
``ns-eval`` and the benchmark.
"""

from __future__ import annotations

from jaxtyping import Float
from torch import Tensor

COVERAGE_THRESHOLD = 0.1
"""Default per-pixel error threshold of :func:`pixel_coverage` (mean absolute RGB error, colours in [0, 1])."""


def pixel_coverage(
    pred: Float[Tensor, "*batch H W 3"], gt: Float[Tensor, "*batch H W 3"], threshold: float = COVERAGE_THRESHOLD
) -> float:
    """Fraction of pixels whose error is below ``threshold``.

    The error of a pixel is its mean absolute difference over the RGB channels, with colours in [0, 1] (so 0.1 is
    about 25 of 255 levels). Channels are the last dimension (HWC, as nerfstudio's outputs).

    Args:
        pred: rendered colours in [0, 1], float.
        gt: ground-truth colours in [0, 1], float, same shape as ``pred``.
        threshold: error bound, in [0, 1] colour units.

    Returns:
        Covered fraction in [0, 1]; pixels with a NaN colour count as not covered.

    Raises:
        ValueError: shapes differ or the last dimension is not 3.
    """
    if pred.shape != gt.shape or pred.shape[-1] != 3:
        raise ValueError(f"pixel_coverage needs two [..., H, W, 3] images of one shape, got {tuple(pred.shape)} "
                         f"and {tuple(gt.shape)}")
    error = (pred.float() - gt.float()).abs().mean(dim=-1)
    return float((error < threshold).float().mean())  # NaN < threshold is False: NaN pixels are not covered


__all__ = ["COVERAGE_THRESHOLD", "pixel_coverage"]
