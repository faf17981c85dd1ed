"""Guidance off the training loop's critical path: snapshots in, boxes out, on a background thread.

The training thread renders a few views at a query step and hands a :class:`GuidanceJob` (uint8 CPU images, the
cameras, the step, the view ids and optional evidence) to :class:`GuidanceWorker`. The worker answers it with a
handler (the guidance source plus record writing, :func:`~vlm_instruct_gs.guidance.answering.answer_job`) and
keeps the :class:`GuidanceResult` until the training thread collects it at a refinement or final-prune step, where
the boxes are mapped onto the then-current Gaussians (:mod:`~vlm_instruct_gs.guidance.applying`). Jobs and results are immutable and hold CPU tensors only, so nothing
the worker touches is shared with training.

``asynchronous=False`` runs the handler inside :meth:`GuidanceWorker.submit` (deterministic; for tests and
debugging). ``collect(wait=True)`` blocks until every submitted job is answered, which makes an asynchronous run
apply exactly what a synchronous one would; ``collect(wait=True, due=...)`` takes (and waits for) only the jobs due
at a step, and ``block_when_full`` makes a full queue wait instead of dropping: the deterministic mode's apply delay.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import UInt8
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from vlm_instruct_gs.guidance.boxes import Box
from vlm_instruct_gs.guidance.mask_rule import PhaseRegions

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuidanceView:
    """One image sent to the guidance source.

    Args:
        view_id (str): e.g. ``"train_0003"`` or ``"novel_01_near_0003"``.
        camera (Cameras): the single camera ([1]) the image was taken from, on CPU.
        image (Tensor): what the source sees, uint8 0-255. [H, W, 3]
        evidence (dict): extra per-view inputs for weights-free sources, CPU tensors (``reference`` [H, W, 3] uint8,
            ``valid`` [H, W] bool, ``depth`` [H, W] float). Default is empty.
        image_name (str): file name of the training image of a training view (``frame_00001.jpg``); of the nearest
            training view for a novel view. Default is "" (unknown).
        train_index (int): index of that training view in the training cameras, -1 when unknown. Default is -1.
    """

    view_id: str
    camera: Cameras
    image: UInt8[Tensor, "H W 3"]
    evidence: Dict[str, Tensor] = field(default_factory=dict)
    image_name: str = ""
    train_index: int = -1


@dataclass(frozen=True)
class GuidanceJob:
    """A query: ``phase`` asked about ``views`` rendered at training ``step``."""

    phase: str
    step: int
    views: Tuple[GuidanceView, ...]


@dataclass(frozen=True)
class GuidanceResult:
    """The answer to a :class:`GuidanceJob`.

    Args:
        job (GuidanceJob): the query.
        boxes (tuple): one tuple of normalised 0-1000 :class:`Box` per view (empty when nothing was found or the
            answer was garbage).
        answers (tuple): raw model answer per view (None for weights-free sources).
        prompt (str | None): the prompt sent (None for weights-free sources).
        seconds (float): wall time of the source call, in seconds.
        error (str | None): ``"Type: message"`` when the source raised; the boxes are then empty.
        regions (tuple): per view, the boxes' :class:`~vlm_instruct_gs.guidance.mask_rule.PhaseRegions` at the
            view image's size, computed once by the handler for the records, the overlays and the mapping.
            Default is empty (not computed).
    """

    job: GuidanceJob
    boxes: Tuple[Tuple[Box, ...], ...]
    answers: Tuple[Optional[str], ...]
    prompt: Optional[str] = None
    seconds: float = 0.0
    error: Optional[str] = None
    regions: Tuple[PhaseRegions, ...] = ()

    @property
    def num_boxes(self) -> int:
        """Boxes over all views."""
        return sum(len(b) for b in self.boxes)


Handler = Callable[[GuidanceJob], GuidanceResult]


class GuidanceWorker:
    """Runs a handler on submitted jobs, on one background thread (or inline), and keeps the results.

    Args:
        handler: turns a job into a result; exceptions it raises are logged and the job is dropped.
        asynchronous (bool): run on a daemon thread started at the first submit; False runs inline. Default True.
        max_pending (int): most jobs queued or running at once; a job submitted beyond it is dropped with a
            warning (the source is slower than the query interval). Default is 4.
        cuda_side_stream (bool): on CUDA machines, run the handler on its own CUDA stream so its kernels can
            overlap training's. Default is True.
        block_when_full (bool): a job submitted beyond ``max_pending`` waits for a free slot instead of being
            dropped (deterministic runs: what is asked never depends on timing). Default is False.
    """

    def __init__(
        self, handler: Handler, asynchronous: bool = True, max_pending: int = 4, cuda_side_stream: bool = True,
        block_when_full: bool = False,
    ) -> None:
        self.handler = handler
        self.block_when_full = block_when_full
        self.asynchronous = asynchronous
        self.max_pending = max(1, max_pending)
        self.cuda_side_stream = cuda_side_stream
        self._jobs: "queue.Queue[Optional[GuidanceJob]]" = queue.Queue()
        self._done: List[GuidanceResult] = []
        self._pending = 0
        self._outstanding: List[GuidanceJob] = []  # queued or running, in submission order (for checkpoints)
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self.busy_seconds = 0.0
        """Total handler wall time, in seconds (on the worker thread when asynchronous)."""
        self.dropped = 0
        """Jobs refused because ``max_pending`` were outstanding."""

    @property
    def pending(self) -> int:
        """Jobs submitted and not yet answered."""
        with self._cond:
            return self._pending

    def submit(self, job: GuidanceJob) -> bool:
        """Queue ``job`` (or run it now when synchronous). Returns False if it was dropped (too many pending)."""
        if not self.asynchronous:
            self._run(job)
            return True
        with self._cond:
            if self.block_when_full:
                self._cond.wait_for(lambda: self._pending < self.max_pending)
            if self._pending >= self.max_pending:
                self.dropped += 1
                logger.warning(
                    "guidance: %d queries still pending, dropping the %s query of step %d",
                    self._pending, job.phase, job.step,
                )
                return False
            self._pending += 1
            self._outstanding.append(job)
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="vlm-guidance", daemon=True)
            self._thread.start()
        self._jobs.put(job)
        return True

    def collect(
        self, wait: bool = False, timeout: Optional[float] = None, due: Optional[Callable[[GuidanceJob], bool]] = None
    ) -> List[GuidanceResult]:
        """Take the finished results (sorted by job step, then phase); ``wait`` first blocks until none is pending
        (at most ``timeout`` seconds).

        With ``due``, only results of jobs for which ``due(job)`` holds are taken (the others stay), and ``wait``
        blocks until no due job is outstanding, so the set taken never depends on the worker's speed.
        """
        with self._cond:
            if wait:
                if due is None:
                    self._cond.wait_for(lambda: self._pending == 0, timeout=timeout)
                else:
                    self._cond.wait_for(lambda: not any(due(j) for j in self._outstanding), timeout=timeout)
            if due is None:
                done, self._done = self._done, []
            else:
                done = [r for r in self._done if due(r.job)]
                self._done = [r for r in self._done if not due(r.job)]
        return sorted(done, key=lambda r: (r.job.step, r.job.phase))

    def peek(self) -> Tuple[List[GuidanceJob], List[GuidanceResult]]:
        """``(jobs submitted and not yet answered, results not yet collected)``, read together under the worker's
        lock and left in place (what a checkpoint saves)."""
        with self._cond:
            return list(self._outstanding), list(self._done)

    def restore(self, results: Sequence[GuidanceResult]) -> None:
        """Put results back as answered and not yet collected (a resumed run), next to any answered since."""
        with self._cond:
            self._done.extend(results)
            self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after the jobs already queued (waiting at most ``timeout`` seconds)."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)
        self._thread = None

    def _loop(self) -> None:
        stream = None
        if self.cuda_side_stream and torch.cuda.is_available():
            stream = torch.cuda.Stream()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                self._run(job)
            if stream is not None:
                stream.synchronize()

    def _run(self, job: GuidanceJob) -> None:
        start = time.perf_counter()
        result: Optional[GuidanceResult] = None
        try:
            result = self.handler(job)
        except Exception:  # a guidance failure must never stop training
            logger.warning("guidance: the %s query of step %d failed", job.phase, job.step, exc_info=True)
        with self._cond:
            self.busy_seconds += time.perf_counter() - start
            if result is not None:
                self._done.append(result)
            if self.asynchronous:
                self._pending -= 1
                self._outstanding = [j for j in self._outstanding if j is not job]  # by identity: views hold tensors
            self._cond.notify_all()


__all__ = ["GuidanceJob", "GuidanceResult", "GuidanceView", "GuidanceWorker"]
