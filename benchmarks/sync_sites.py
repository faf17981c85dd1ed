"""Where a training step makes the host wait for the GPU: the ops that synchronise on CUDA, counted per call site.

:class:`SyncTrace` is a ``TorchDispatchMode`` (torch's documented hook for seeing every ATen op, including those
that C++ extensions such as gsplat's call through the dispatcher) that records, for each op that blocks the host on
CUDA, the innermost frame in this project, nerfstudio or gsplat:

- ``item``: ``Tensor.item()`` / ``int(t)`` / ``bool(t)`` (``aten._local_scalar_dense``);
- ``data-dependent shape``: ``nonzero``, ``masked_select``, boolean-mask indexing and ``index_put_``, ``unique``,
  ``repeat_interleave`` without ``output_size`` (the output size has to be read back);
- ``device-to-host copy``: a copy from a CUDA tensor to a CPU one.

The same ops run on CPU, where nothing waits, so a CPU run shows which of our call sites *would* synchronise on the
GPU (the pure-PyTorch rasteriser, which the GPU never runs, is reported under its own file). Host-to-device copies
are listed separately (``host-to-device copy``): from pageable memory they block the host until the copy is staged.
Used by ``benchmarks/profile_step.py --sync-steps N``.
"""

from __future__ import annotations

import traceback
from collections import Counter
from typing import Dict, List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ITEM_OPS = {"aten._local_scalar_dense.default"}
SHAPE_OPS = {"aten.nonzero.default", "aten.masked_select.default", "aten._unique2.default", "aten.unique_dim.default",
             "aten.unique_consecutive.default"}
COPY_OPS = {"aten._to_copy.default", "aten.copy_.default"}
ROOTS = ("splat_core/", "vlm_instruct_gs/", "fmgs_field/", "benchmarks/", "site-packages/nerfstudio/",
         "site-packages/gsplat/")
"""Path fragments of the frames a site is named after (the innermost matching frame)."""


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices)


def sync_kind(name: str, args, kwargs) -> str | None:
    """The kind of host wait ``name`` (an ATen overload, e.g. ``aten.nonzero.default``) causes on CUDA, or None."""
    if name in ITEM_OPS:
        return "item"
    if name in SHAPE_OPS or (name.startswith(("aten.index.Tensor", "aten.index_put")) and _has_bool_index(args)):
        return "data-dependent shape"
    if name == "aten.repeat_interleave.Tensor" and kwargs.get("output_size") is None:
        return "data-dependent shape"
    if name in COPY_OPS:
        src = args[1] if name == "aten.copy_.default" else args[0]
        dst_device = args[0].device if name == "aten.copy_.default" else kwargs.get("device")
        if isinstance(src, torch.Tensor) and dst_device is not None:
            dst = torch.device(dst_device)
            if src.device.type == "cuda" and dst.type == "cpu":
                return "device-to-host copy"
            if src.device.type == "cpu" and dst.type == "cuda":
                return "host-to-device copy"
    return None


def call_site(stack: List[traceback.FrameSummary]) -> str:
    """``path:line function`` of the innermost frame under :data:`ROOTS` (outside this file), else ``"other"``."""
    for frame in reversed(stack):
        path = frame.filename.replace("\\", "/")
        if path.endswith("benchmarks/sync_sites.py"):
            continue
        for root in ROOTS:
            at = path.find(root)
            if at >= 0:
                return f"{path[at:].replace('site-packages/', '')}:{frame.lineno} {frame.name}"
    return "other"


class SyncTrace(TorchDispatchMode):
    """Counts host-blocking ops per ``(kind, call site)`` while active (``with SyncTrace() as trace: ...``).

    ``counts`` is a :class:`collections.Counter` keyed by ``(kind, site)``; :meth:`per_step` divides by a step count.
    Tracing costs a Python stack walk per matching op: use it on a separate window, never on a timed one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = sync_kind(str(func), args, kwargs)
        if kind is not None:
            self.counts[(kind, call_site(traceback.extract_stack(limit=40)))] += 1
        return func(*args, **kwargs)

    def per_step(self, steps: int) -> List[Dict[str, object]]:
        """``[{"kind", "site", "per_step"}]``, most frequent first."""
        return [{"kind": k, "site": s, "per_step": n / max(steps, 1)} for (k, s), n in self.counts.most_common()]

    def totals(self, steps: int) -> Dict[str, float]:
        """Per-step count of each kind, excluding host-to-device copies and the CPU-only rasteriser."""
        out: Dict[str, float] = {}
        for (kind, site), n in self.counts.items():
            if kind != "host-to-device copy" and "torch_rasterizer" not in site:
                out[kind] = out.get(kind, 0.0) + n / max(steps, 1)
        return out


__all__ = ["SyncTrace", "call_site", "sync_kind"]
