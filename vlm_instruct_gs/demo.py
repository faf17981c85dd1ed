"""``vlm-fastgs-demo``: the whole job on the built-in scene (render it, ``ns-train vlm-fastgs``, ``ns-eval``).

It drives the same command-line tools a user runs, so a green demo means the installed plugin works end to end.
Small enough for a laptop CPU in a few minutes; on a CUDA machine it uses the GPU.

It runs offline: guidance comes from the weights-free image-evidence source (``--pipeline.guidance.source
image-evidence``) instead of the default Qwen3-VL, whose weights a fresh machine does not have. The FastGS and guidance
schedules are compressed from 20k steps to ``--iterations`` (1500 by default), so all three phases fire; guidance
records land in ``<run>/guidance``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Literal, Optional, Sequence

import torch
import tyro

from splat_core.data.synthetic_scene import write_synthetic_scene


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


# vlm-fastgs's 20k-step schedule (FastGS strategy, then guidance phases), scaled to a shorter demo run.
_FASTGS_STEPS = {"refine-start-iter": 500, "refine-every": 500, "refine-stop-iter": 15000, "reset-every": 3000,
                 "final-prune-start-iter": 15000, "final-prune-stop-iter": 20000, "final-prune-every": 3000}
_GUIDANCE_STEPS = {f"{phase}-{key}": value for phase, (start, stop, every) in
                   {"detail": (500, 8000, 500), "subject": (8000, 14000, 1000), "artifacts": (10000, 15000, 1000)}.items()
                   for key, value in (("start", start), ("stop", stop), ("every", every))}


def scaled_schedule(iterations: int, full: int = 20000) -> List[str]:
    """ns-train flags that compress the FastGS and guidance schedules from ``full`` steps to ``iterations`` steps."""
    scale = iterations / full
    flags: List[str] = []
    for name, steps in _FASTGS_STEPS.items():
        flags += [f"--pipeline.model.fastgs.{name}", str(max(1, round(steps * scale)))]
    for name, steps in _GUIDANCE_STEPS.items():
        flags += [f"--pipeline.guidance.schedule.{name}", str(max(1, round(steps * scale)))]
    flags += ["--pipeline.guidance.settle-after-reset", str(round(250 * scale))]
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
