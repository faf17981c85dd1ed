"""Fixes for running nerfstudio 1.1.5 offline and with current torch, kept in one place.

- LPIPS: torchmetrics' ``LearnedPerceptualImagePatchSimilarity`` downloads torchvision's AlexNet weights when it is
  constructed, and splatfacto constructs it in ``populate_modules``: offline that raises and no model can even be
  built (so neither training nor ns-eval runs). :class:`OptionalLPIPS` builds it when it can, otherwise logs one line
  and reports LPIPS as unavailable.
- Checkpoints: torch >= 2.6 loads with ``weights_only=True`` by default, which rejects nerfstudio 1.1.5 checkpoints
  (ns-eval, ns-viewer, ns-render, resume). nerfstudio calls ``torch.load`` itself, so the types its checkpoints hold are
  allow-listed with torch's own mechanism when this package is imported (which every nerfstudio entry point does
  before loading: the method registry or the saved ``config.yml`` imports it).
- Checkpoint errors: nerfstudio's loaders fail on a missing, truncated or foreign checkpoint with an ``IndexError``,
  ``OSError`` or an ``UnpicklingError`` that advises ``weights_only=False``. :func:`load_checkpoint_file` and
  :func:`find_checkpoint` turn each into one line naming the file (:class:`CheckpointError`);
  :func:`install_checkpoint_errors` puts them under ns-eval / ns-viewer / ns-render, the trainer uses them to resume.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

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


class CheckpointError(SystemExit):
    """A checkpoint that cannot be found or read: exits with status 1 and this one line (no traceback) when uncaught.

    A ``SystemExit`` for the same reason as :class:`~splat_core.data.scene_dataparser.SceneDataError`: ns-train,
    ns-eval, ns-viewer and ns-render are nerfstudio's entry points, not ours.
    """

    def __init__(self, message: str):
        super().__init__(f"error: {' '.join(message.split())}")


def find_checkpoint(load_dir: Path, load_step: Optional[int] = None) -> Path:
    """The ``step-XXXXXXXXX.ckpt`` file of ``load_step`` in ``load_dir``, or its latest one (nerfstudio's names).

    Raises:
        CheckpointError: the folder does not exist or is not a folder, holds no checkpoint, or has none of that step.
    """
    load_dir = Path(load_dir)
    if not load_dir.is_dir():
        what = "is not a folder" if load_dir.exists() else "does not exist"
        raise CheckpointError(f"checkpoint folder {load_dir} {what}; checkpoints are written to "
                              "<run>/nerfstudio_models every --steps-per-save steps")
    steps = {}
    for path in load_dir.glob("step-*.ckpt"):
        try:
            steps[int(path.stem[len("step-"):])] = path
        except ValueError:  # a user's own file that merely looks like one
            continue
    if not steps:
        raise CheckpointError(f"checkpoint folder {load_dir} holds no step-*.ckpt file (was the run stopped before "
                              "its first save?)")
    if load_step is None:
        return steps[max(steps)]
    if load_step not in steps:
        raise CheckpointError(f"{load_dir} has no checkpoint of step {load_step}; it has steps {sorted(steps)}")
    return steps[load_step]


def load_checkpoint_file(path: Path) -> Dict[str, Any]:
    """``torch.load(path, map_location="cpu")`` (``weights_only`` left at torch's default) of a nerfstudio checkpoint.

    Returns:
        The checkpoint dict, with at least ``step`` (int) and ``pipeline`` (state dict).

    Raises:
        CheckpointError: one line naming ``path`` when it is missing, empty, truncated, not a checkpoint, holds a
            type ``weights_only`` loading refuses (named, never with advice to turn ``weights_only`` off), or lacks
            ``step``/``pipeline``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); the save that wrote it did not finish")
    try:
        state = torch.load(path, map_location="cpu")
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if refused:
            raise CheckpointError(f"checkpoint {path} holds the type {refused.group(1)}, which safe loading "
                                  "(torch.load weights_only=True) does not allow; it was not written by this "
                                  "plugin's nerfstudio") from None
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is not a torch checkpoint (corrupt or another "
                              "kind of file)") from None
    except Exception as err:  # torch raises RuntimeError/OSError/EOFError/KeyError/IndexError on damaged files
        raise CheckpointError(f"checkpoint {path} ({size} bytes) is truncated or corrupt and cannot be read "
                              f"({type(err).__name__}); use an earlier checkpoint of the run") from None
    if not isinstance(state, dict) or "pipeline" not in state or "step" not in state:
        raise CheckpointError(f"checkpoint {path} is a torch file but not a nerfstudio checkpoint (no 'step' and "
                              "'pipeline' entries)")
    return state


def eval_load_checkpoint(config, pipeline) -> Tuple[Path, int]:
    """nerfstudio's ``eval_utils.eval_load_checkpoint`` (same arguments and result) with one-line errors.

    Args:
        config: the run's ``TrainerConfig``; ``load_dir`` (and optionally ``load_step``) name the checkpoint.
        pipeline: the pipeline to load it into.

    Returns:
        ``(checkpoint path, its step)``.

    Raises:
        CheckpointError: see :func:`find_checkpoint` and :func:`load_checkpoint_file`.
    """
    path = find_checkpoint(config.load_dir, config.load_step)
    state = load_checkpoint_file(path)
    pipeline.load_pipeline(state["pipeline"], state["step"])
    CONSOLE.print(f":white_check_mark: Done loading checkpoint from {path}")
    return path, int(state["step"])


def install_checkpoint_errors() -> None:
    """Make ns-eval, ns-viewer and ns-render load checkpoints through :func:`eval_load_checkpoint`.

    They call ``nerfstudio.utils.eval_utils.eval_load_checkpoint`` by its module-global name right after building
    the pipeline, so swapping that name is enough. It has to happen once that module is fully imported: it imports
    the method registry, which imports this package, so at this package's import it may be half-built. Hence the
    model calls this when it is built. A no-op when ``eval_utils`` is not imported (ns-train).
    """
    eval_utils = sys.modules.get("nerfstudio.utils.eval_utils")
    if eval_utils is not None and hasattr(eval_utils, "eval_setup"):
        eval_utils.eval_load_checkpoint = eval_load_checkpoint
