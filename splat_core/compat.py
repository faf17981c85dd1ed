"""Fixes for running nerfstudio 1.1.5 offline and with current torch, kept in one place.

- LPIPS: torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` downloads torchvision's AlexNet weights when it is
  constructed, and splatfacto constructs it in ``populate_modules``: offline that raises and no model can even be
  built (so neither training nor ns-eval runs). :class:`OptionalLPIPS` builds it when it can, otherwise logs one line
  and reports LPIPS as unavailable.
- Checkpoints: torch >= 2.6 loads with ``weights_only=True`` by default, which rejects nerfstudio 1.1.5 checkpoints
  (ns-eval, ns-viewer, ns-render, resume). nerfstudio calls ``torch.load`` itself, so the types its checkpoints hold are
  allow-listed with torch's own mechanism when this package is imported (which every nerfstudio entry point does
  before loading: the method registry or the saved ``config.yml`` imports it).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity


class OptionalLPIPS:
    """LPIPS (AlexNet, inputs in [0, 1]) when its weights can be had, else ``None`` results and one log line.

    Deliberately not an ``nn.Module``: the fixed, pretrained AlexNet stays out of checkpoints, so a checkpoint loads
    the same whether or not the weights were cached where it was trained. The metric follows the input's device.
    """

    _warned = False

    def __init__(self, normalize: bool = True, **kwargs) -> None:
        self.metric: Optional[torch.nn.Module]
        try:
            self.metric = LearnedPerceptualImagePatchSimilarity(normalize=normalize, **kwargs)
        except Exception as err:  # torchvision raises URLError/OSError/RuntimeError depending on how it fails
            self.metric = None
            if not OptionalLPIPS._warned:
                OptionalLPIPS._warned = True
                CONSOLE.log(
                    "[yellow]LPIPS unavailable: torchvision's AlexNet weights are not cached and could not be "
                    f"downloaded ({type(err).__name__}); PSNR and SSIM are still reported."
                )

    @property
    def available(self) -> bool:
        return self.metric is not None

    def __call__(
        self, pred: Float[Tensor, "B 3 H W"], target: Float[Tensor, "B 3 H W"]
    ) -> Optional[Float[Tensor, ""]]:
        """LPIPS between two image batches in [0, 1] (channels first), or ``None`` when unavailable."""
        if self.metric is None:
            return None
        self.metric = self.metric.to(pred.device)
        return self.metric(pred.clamp(0, 1), target.clamp(0, 1))

    # splatfacto's populate_modules may call module methods on its metrics; accept the common ones.
    def to(self, *args, **kwargs) -> "OptionalLPIPS":
        return self


@contextlib.contextmanager
def offline_safe_lpips() -> Iterator[None]:
    """Within the block, ``torchmetrics.image.lpip.LearnedPerceptualImagePatchSimilarity`` builds :class:`OptionalLPIPS`.

    Used around splatfacto's ``populate_modules``, which imports and constructs the metric itself; patching that one
    name for that one call is the least invasive way to keep the rest of its set-up.
    """
    import torchmetrics.image.lpip as lpip_module

    lpip_module.LearnedPerceptualImagePatchSimilarity = OptionalLPIPS
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = LearnedPerceptualImagePatchSimilarity


def allow_nerfstudio_checkpoints() -> None:
    """Allow-list the non-tensor types in nerfstudio 1.1.5 checkpoints for ``torch.load(weights_only=True)``.

    Safe to call repeatedly; a no-op on torch versions without ``add_safe_globals``.
    """
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:
        return
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray
    dtypes = [type(np.dtype(name)) for name in ("float32", "float64", "int64", "int32", "uint8", "bool")]
    add([np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct, *dtypes])
    # A checkpoint pickles numpy's module path of the machine that saved it (numpy 2: numpy._core, 1.x: numpy.core), so
    # a run trained on one machine and evaluated on another needs both spellings; (object, name) pairs need torch 2.6.
    try:
        add([(obj, f"{module}.{obj.__name__}") for module in ("numpy.core.multiarray", "numpy._core.multiarray")
             for obj in (multiarray.scalar, multiarray._reconstruct)])
    except (TypeError, AttributeError, ValueError):  # older torch: only this numpy's own spelling is allowed
        pass
