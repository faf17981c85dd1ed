"""``vlm-fastgs-demo``: the whole job on the built-in scene (render it, ``ns-train vlm-fastgs``, ``ns-eval``).

It drives the same command-line tools a user runs, so a green demo means the installed plugin works end to end.
Small enough for a laptop CPU in a few minutes; on a CUDA machine it uses the GPU.

It runs offline: guidance comes from the weights-free image-evidence source (``--pipeline.guidance.source
image-evidence``) instead of the default Qwen3-VL, whose weights a fresh machine does not have. Every step count of the FastGS and
guidance schedules (refinement, early growth, opacity resets, final pruning, phase windows, the deterministic apply
delay) is compressed from 20k steps to ``--iterations`` (1500 by default), so all three phases fire and their answers
are applied; guidance records land in ``<run>/guidance``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence

import torch
import tyro

from splat_core.data.synthetic_scene import write_synthetic_scene
from vlm_instruct_gs.vlm_fastgs_config import vlm_fastgs


def _tool(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (works in an unactivated virtualenv), else PATH's."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def _run(cmd: List[str]) -> None:
    cmd = [_tool(cmd[0]), *cmd[1:]]
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"error: {cmd[0]} failed with exit code {result.returncode}")


GUIDANCE_STEP_FIELDS = ("apply_delay", "settle_after_reset")
"""``GuidanceConfig`` fields counted in steps beside its schedule."""


def schedule_steps(pipeline=None) -> Dict[str, int]:
    """vlm-fastgs's step counts as ``{ns-train flag: value}``: every FastGS strategy field named ``*_iter`` (a step)
    or ``*_every`` (an interval; the early-growth and final-prune ones included), every guidance schedule field and
    :data:`GUIDANCE_STEP_FIELDS`, read from ``pipeline`` (a vlm-fastgs pipeline config; default: the registered
    method's, so the demo follows its defaults)."""
    pipeline = pipeline if pipeline is not None else vlm_fastgs.config.pipeline
    strategy, guidance = pipeline.model.fastgs, pipeline.guidance
    steps = {f"--pipeline.model.fastgs.{f.name}": getattr(strategy, f.name) for f in fields(strategy)
             if f.name.endswith(("_iter", "_every"))}
    steps.update({f"--pipeline.guidance.schedule.{f.name}": getattr(guidance.schedule, f.name)
                  for f in fields(guidance.schedule)})
    steps.update({f"--pipeline.guidance.{name}": getattr(guidance, name) for name in GUIDANCE_STEP_FIELDS})
    return {flag.replace("_", "-"): int(value) for flag, value in steps.items()}


def scale_steps(steps: int, scale: float) -> int:
    """A step count or interval scaled by ``scale`` and rounded, at least 1; a 0 (a switched-off cadence) stays 0."""
    return max(1, round(steps * scale)) if steps > 0 else steps


def scaled_schedule(iterations: int, full: Optional[int] = None) -> List[str]:
    """ns-train flags that compress vlm-fastgs's schedule (:func:`schedule_steps`) from ``full`` steps (default: the
    method's ``max_num_iterations``) to ``iterations`` steps, each count by :func:`scale_steps`."""
    scale = iterations / (full if full is not None else vlm_fastgs.config.max_num_iterations)
    flags: List[str] = []
    for flag, steps in schedule_steps().items():
        flags += [flag, str(scale_steps(steps, scale))]
    return flags


def latest_config(run_root: Path) -> Path:
    """Newest ``config.yml`` under ``run_root`` (ns-train writes ``<root>/<experiment>/<method>/<timestamp>/``)."""
    configs = sorted(run_root.glob("**/config.yml"), key=lambda p: p.stat().st_mtime)
    if not configs:
        raise SystemExit(f"error: no config.yml under {run_root}; did ns-train run?")
    return configs[-1]


@dataclass
class Demo:
    """Render the built-in scene, train vlm-fastgs on it with weights-free guidance, evaluate it."""

    out: Path = Path("outputs/demo")
    """Folder for the scene, run and eval."""
    iterations: int = 1500
    """Training steps."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Training device; auto is cuda when available."""

    def run(self) -> None:
        """The whole job; a failing tool stops it with one ``error:`` line."""
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        scene = self.out / "scene"
        if not (scene / "transforms.json").exists():
            print(f"Rendering the built-in scene into {scene}", flush=True)
            write_synthetic_scene(scene)
        print("Guidance: weights-free image evidence (no VLM download); pass a Qwen3-VL to ns-train for VLM guidance")
        runs = self.out / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        steps = str(self.iterations)
        _run([
            "ns-train", "vlm-fastgs", "--data", str(scene), "--output-dir", str(runs),
            "--machine.device-type", device, "--max-num-iterations", steps, "--vis", "tensorboard",
            "--steps-per-save", steps, "--steps-per-eval-image", steps, "--steps-per-eval-all-images", "1000000",
            "--pipeline.model.num-downscales", "0",
            "--pipeline.model.sh-degree-interval", str(max(self.iterations // 4, 1)),
            "--logging.local-writer.max-log-size", "0",
            "--pipeline.guidance.source", "image-evidence",  # offline: no VLM weights needed
            *scaled_schedule(self.iterations),
        ])
        config = latest_config(runs)
        eval_json = self.out / "eval.json"
        _run(["ns-eval", "--load-config", str(config), "--output-path", str(eval_json)])
        results = json.loads(eval_json.read_text())["results"]
        print(json.dumps(results, indent=2))
        print(f"Done. View it with: ns-viewer --load-config {config}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Console entry point (``vlm-fastgs-demo``); ``argv`` for tests."""
    tyro.cli(Demo, args=argv, prog="vlm-fastgs-demo", description=__doc__).run()


if __name__ == "__main__":
    sys.exit(main())
