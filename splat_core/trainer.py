"""The trainer both methods run under: nerfstudio's ``Trainer``, reached through the method's ``TrainerConfig``.

A subclass so that what the methods need of the training loop (reliability: resume, divergence, Ctrl-C; speed: the
lean step) lives in one named place instead of being patched into nerfstudio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig


@dataclass
class SplatTrainerConfig(TrainerConfig):
    """nerfstudio's ``TrainerConfig`` (every ``ns-train`` flag still applies) for :class:`SplatTrainer`."""

    _target: Type = field(default_factory=lambda: SplatTrainer)


class SplatTrainer(Trainer):
    """nerfstudio's ``Trainer`` for the splatting methods. See the module docstring."""

    config: SplatTrainerConfig
