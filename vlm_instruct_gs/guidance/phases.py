"""The guidance phases and their schedule: which phases exist, when each is active and when the guidance source is
queried, as pure functions of step.

Under the 20k-step budget the phases are (defaults; every boundary is a field of :class:`GuidanceSchedule`):

- ``detail`` (phase 1, steps 500-8000, a query every 500): render a few training views, ask where texture detail is
  emerging and densify the Gaussians there first (a budget of them grows whatever their multi-view score).
- ``subject`` (phase 2, steps 8000-14000, a query every 1000): ask for the main subject in training views, densify
  the background (the complement of the subject box) and spawn new Gaussians where it holds too few.
- ``artifacts`` (phase 3, steps 10000-15000, a query every 1000): render viewpoints that are not training views, ask
  where they look wrong, densify (and spawn into) the under-reconstructed regions and mark floaters for pruning.
- ``refinement`` (after the last window): no queries; FastGS's own pruning (refinement until its
  ``refine_stop_iter`` = 15000, final pruning passes after ``final_prune_start_iter``) finishes the model.

Windows are half-open, ``[start, stop)``, and may overlap. A query due in the first steps after an opacity reset
waits until the opacities have been re-learned (:func:`settled_query_phases`). A query at step ``s`` snapshots the
model after that step's refinement; its result is applied at the first later step on which the strategy refines or
prunes, in deterministic mode the first at least ``apply_delay`` steps later (see :func:`unapplied_queries`). Nothing
here holds state: the phase after a checkpoint resume is the phase of the step.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Dict, List, Literal, Optional, Tuple

Phase = Literal["detail", "subject", "artifacts"]
"""Guidance phases: 1 ``detail`` (emerging texture), 2 ``subject`` (main subject), 3 ``artifacts`` (novel view)."""
PHASES: Tuple[str, ...] = ("detail", "subject", "artifacts")


def check_phase(phase: str) -> str:
    """Return ``phase`` if it is one of :data:`PHASES`; raise ValueError otherwise."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
    return phase


@dataclass(frozen=True)
class GuidanceSchedule:
    """Phase windows ``[start, stop)`` and query intervals, in training steps (immutable).

    A phase is queried at ``start, start + every, ...`` while the step is below ``stop``. ``every <= 0`` or
    ``stop <= start`` switches a phase off.
    """

    detail_start: int = 500
    """First step of phase 1 (emerging texture detail), in steps."""
    detail_stop: int = 8000
    """End of phase 1 (exclusive), in steps."""
    detail_every: int = 500
    """Phase 1 query interval, in steps (0 disables the phase)."""
    subject_start: int = 8000
    """First step of phase 2 (main subject; the background is densified), in steps."""
    subject_stop: int = 14000
    """End of phase 2 (exclusive), in steps."""
    subject_every: int = 1000
    """Phase 2 query interval, in steps (0 disables the phase)."""
    artifacts_start: int = 10000
    """First step of phase 3 (artefacts in novel views), in steps."""
    artifacts_stop: int = 15000
    """End of phase 3 (exclusive), in steps; FastGS stops densifying at its refine_stop_iter (15000)."""
    artifacts_every: int = 1000
    """Phase 3 query interval, in steps (0 disables the phase)."""

    def window(self, phase: str) -> Tuple[int, int, int]:
        """``(start, stop, every)`` of ``phase``. Raises ValueError for an unknown phase."""
        check_phase(phase)
        return getattr(self, f"{phase}_start"), getattr(self, f"{phase}_stop"), getattr(self, f"{phase}_every")


def phase_enabled(schedule: GuidanceSchedule, phase: str) -> bool:
    """Whether ``phase`` has at least one query step (``every > 0`` and ``stop > start``)."""
    start, stop, every = schedule.window(phase)
    return every > 0 and stop > start


def active_phases(schedule: GuidanceSchedule, step: int) -> Tuple[str, ...]:
    """Enabled phases whose window ``[start, stop)`` contains ``step``, in phase order (may be empty or several)."""
    out = []
    for phase in PHASES:
        start, stop, _ = schedule.window(phase)
        if phase_enabled(schedule, phase) and start <= step < stop:
            out.append(phase)
    return tuple(out)


def query_phases(schedule: GuidanceSchedule, step: int) -> Tuple[str, ...]:
    """Phases to query at ``step``: active and on their interval (``(step - start) % every == 0``)."""
    out = []
    for phase in active_phases(schedule, step):
        start, _, every = schedule.window(phase)
        if (step - start) % every == 0:
            out.append(phase)
    return tuple(out)


def settled_query_phases(
    schedule: GuidanceSchedule, step: int, last_reset: Optional[int], settle_steps: int
) -> Tuple[str, ...]:
    """:func:`query_phases` with the queries that fall in ``[last_reset, last_reset + settle_steps)`` moved to
    ``last_reset + settle_steps``.

    Right after an opacity reset every Gaussian is nearly transparent, so a render shows an almost empty scene: a VLM
    would call all of it under-reconstructed and the image evidence finds nothing. Queries wait until the opacities
    have been re-learned; several queries of one phase in that window become one. ``settle_steps`` must be shorter
    than the interval between resets. Pure function of the step, so a resumed run defers the same queries.

    Args:
        schedule: the phase schedule.
        step: training step.
        last_reset: the latest opacity-reset step ``<= step`` of the strategy, or None.
        settle_steps: steps after a reset before renders are shown to the source (0 disables the deferral).

    Returns:
        Phases to query at ``step``, in phase order.
    """
    if last_reset is None or settle_steps <= 0:
        return query_phases(schedule, step)
    settled = last_reset + settle_steps
    if last_reset <= step < settled:
        return ()
    due = set(query_phases(schedule, step))
    if step == settled:
        due.update(p for q in range(last_reset, settled) for p in query_phases(schedule, q))
    return tuple(p for p in PHASES if p in due)


def is_query_step(schedule: GuidanceSchedule, step: int) -> bool:
    """Whether any phase is queried at ``step``."""
    return bool(query_phases(schedule, step))


def query_steps(schedule: GuidanceSchedule, phase: str) -> List[int]:
    """All query steps of ``phase`` in increasing order (empty when disabled)."""
    if not phase_enabled(schedule, phase):
        return []
    start, stop, every = schedule.window(phase)
    return list(range(start, stop, every))


def phase_name(schedule: GuidanceSchedule, step: int) -> str:
    """Human-readable stage at ``step``: active phases joined by ``+``, else ``warm-up`` before the first window,
    ``refinement`` after the last one, ``between phases`` in a gap. ``off`` when no phase is enabled."""
    active = active_phases(schedule, step)
    if active:
        return "+".join(active)
    windows = [schedule.window(p)[:2] for p in PHASES if phase_enabled(schedule, p)]
    if not windows:
        return "off"
    if step < min(start for start, _ in windows):
        return "warm-up"
    if step >= max(stop for _, stop in windows):
        return "refinement"
    return "between phases"


def unapplied_queries(
    schedule: GuidanceSchedule, is_apply_step: Callable[[int], bool], max_steps: int, min_delay: int = 1
) -> Dict[str, List[int]]:
    """Query steps below ``max_steps`` whose result could never be applied.

    A result of a query at step ``s`` is applied at the first step ``t`` with ``s + min_delay <= t < max_steps`` for
    which ``is_apply_step(t)`` holds (for FastGS: a refine step, or a final prune step for prune guidance;
    ``min_delay`` is 1, or the deterministic mode's ``apply_delay``).

    Args:
        schedule: the schedule to check.
        is_apply_step: predicate on steps, e.g. ``lambda t: s.is_refine_step(t) or s.is_final_prune_step(t)``.
        max_steps: training length in steps.

    Returns:
        ``{phase: [query steps with no apply step after them]}`` for the phases that have any; empty when the
        schedule lines up with the strategy.
    """
    apply_steps = [t for t in range(max_steps) if is_apply_step(t)]
    out: Dict[str, List[int]] = {}
    for phase in PHASES:
        lost = [s for s in query_steps(schedule, phase) if s < max_steps]
        lost = [s for s in lost if bisect.bisect_left(apply_steps, s + max(min_delay, 1)) == len(apply_steps)]
        if lost:
            out[phase] = lost
    return out


__all__ = [
    "PHASES",
    "GuidanceSchedule",
    "Phase",
    "check_phase",
    "active_phases",
    "is_query_step",
    "phase_enabled",
    "phase_name",
    "query_phases",
    "query_steps",
    "settled_query_phases",
    "unapplied_queries",
]
