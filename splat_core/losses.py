"""Splatfacto's photometric training loss, replayed on CUDA as one CUDA graph per image size.

``(1 - lambda) * L1 + lambda * (1 - SSIM)`` (splatfacto's ``main_loss``; SSIM as :class:`splat_core.ssim.FastSSIM`)
is about 40 small ops forward and 25 backward: two convolutions and a chain of elementwise terms on one image.
On the GPU the splatting step is host-bound (``docs/benchmarks/profile_sync_sites``: 1.8 ms of kernels in a 9.6 ms
step), so those ops cost their Python dispatch and kernel launches, not their arithmetic. The image size is fixed
for long stretches (splatfacto's resolution schedule has three sizes), so :class:`PhotometricLoss` captures forward
and backward once per size with torch's ``torch.cuda.make_graphed_callables`` and then replays each as one launch.
The graphs run the same kernels on the same values, so the loss and its gradient are those of the eager code
(``tests/test_losses.py`` compares them on CUDA). On the CPU, and whenever capture is not possible, it runs eagerly.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, Optional, Tuple

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from splat_core.ssim import FastSSIM

MAX_GRAPHS = 8
"""Image sizes kept captured at once (each holds its intermediate buffers); past that, new sizes run eagerly."""


def photometric_loss(
    pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"], ssim: FastSSIM, ssim_lambda: float
) -> Float[Tensor, ""]:
    """Splatfacto's ``main_loss``: ``(1 - ssim_lambda) * mean|gt - pred| + ssim_lambda * (1 - SSIM(gt, pred))``.

    Args:
        pred: Rendered image, RGB in [0, 1]. [H, W, 3]
        gt: Target image on the same background, RGB in [0, 1]. [H, W, 3]
        ssim: The SSIM (11x11 Gaussian window, sigma 1.5, as pytorch_msssim).
        ssim_lambda: Weight of the SSIM term (splatfacto's ``ssim_lambda``, 0.2).

    Returns:
        The scalar loss.
    """
    l1 = torch.abs(gt - pred).mean()
    sim_loss = 1 - ssim(gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None])
    return (1 - ssim_lambda) * l1 + ssim_lambda * sim_loss


class PhotometricLoss:
    """:func:`photometric_loss`, as CUDA graphs on CUDA (module docstring).

    Args:
        ssim: The SSIM module (its window is captured by address: a graph is kept per device).
        ssim_lambda: Weight of the SSIM term.
        cuda_graphs: Capture on CUDA (False: always eager).
    """

    def __init__(self, ssim: FastSSIM, ssim_lambda: float, cuda_graphs: bool = True) -> None:
        self.ssim = ssim
        self.ssim_lambda = float(ssim_lambda)
        self.cuda_graphs = cuda_graphs
        self._graphs: Dict[Tuple, Callable[[Tensor, Tensor], Tensor]] = {}

    def _eager(self, pred: Tensor, gt: Tensor) -> Tensor:
        return photometric_loss(pred, gt, self.ssim, self.ssim_lambda)

    def __call__(self, pred: Float[Tensor, "H W 3"], gt: Float[Tensor, "H W 3"]) -> Float[Tensor, ""]:
        """The loss of ``pred`` against ``gt`` (see :func:`photometric_loss`); differentiable in ``pred``.

        A graph is used when both are float32 CUDA tensors of one shape (any strides: the graph copies its inputs
        in, and splatfacto's downscaled targets are permuted views), ``pred`` requires a gradient under grad mode
        and ``gt`` does not; the first call at a size captures it (three warm-up runs, then the capture).
        """
        graphable = (self.cuda_graphs and pred.is_cuda and pred.requires_grad and torch.is_grad_enabled()
                     and not gt.requires_grad and pred.dtype == gt.dtype == torch.float32 and pred.shape == gt.shape)
        if not graphable:
            return self._eager(pred, gt)
        key = (tuple(pred.shape), pred.device)
        graphed = self._graphs.get(key)
        if graphed is None:
            if len(self._graphs) >= MAX_GRAPHS:
                return self._eager(pred, gt)
            graphed = self._capture(pred, gt)
            if graphed is None:
                return self._eager(pred, gt)
            self._graphs[key] = graphed
        return graphed(pred, gt)

    def _capture(self, pred: Tensor, gt: Tensor) -> Optional[Callable[[Tensor, Tensor], Tensor]]:
        """A graphed loss for ``pred``'s size, or None (with a log line, and no more captures) if capture fails."""
        samples = (pred.detach().clone().requires_grad_(True), gt.detach().clone())
        try:
            with warnings.catch_warnings():
                # torch warns that the sample input's AccumulateGrad node was made on the warm-up stream and is used
                # again on the capture stream; both are make_graphed_callables' own side streams, and the sample is
                # never trained (seen once per process on the H200 with torch 2.11)
                warnings.filterwarnings("ignore", message="The AccumulateGrad node's stream does not match")
                return torch.cuda.make_graphed_callables(self._eager, samples)
        except RuntimeError as err:  # e.g. a kernel that cannot be captured on this GPU or torch build
            CONSOLE.log(f"[yellow]training loss runs without CUDA graphs at {tuple(pred.shape)} "
                        f"({type(err).__name__}: {str(err).splitlines()[0]})")
            self.cuda_graphs = False
            return None

    @property
    def captured_sizes(self) -> list:
        """The ``(H, W, 3)`` image sizes that have a captured graph (for benchmark records)."""
        return [list(shape) for shape, _ in self._graphs]


__all__ = ["MAX_GRAPHS", "PhotometricLoss", "photometric_loss"]
