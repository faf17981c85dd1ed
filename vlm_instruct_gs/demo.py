"""``vlm-fastgs-demo``: the whole job on the built-in scene (render it, ``ns-train vlm-fastgs``, ``ns-eval``).

It drives the same command-line tools a user runs, so a green demo means the installed plugin works end to end.
Small enough for a laptop CPU in a few minutes; on a CUDA machine it uses the GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import torch

from vlm_instruct_gs.data.synthetic_scene import write_synthetic_scene


def _run(cmd: List[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd)
    if result.returncode != 0:
        raise SystemExit(f"error: {cmd[0]} failed with exit code {result.returncode}")


def latest_config(run_root: Path) -> Path:
    """Newest ``config.yml`` under ``run_root`` (ns-train writes ``<root>/<method>/<timestamp>/config.yml``)."""
    configs = sorted(run_root.glob("*/*/config.yml"), key=lambda p: p.stat().st_mtime)
    if not configs:
        raise SystemExit(f"error: no config.yml under {run_root}; did ns-train run?")
    return configs[-1]


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="vlm-fastgs-demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="folder for the scene, run and eval")
    parser.add_argument("--iterations", type=int, default=1500, help="training steps")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    args = parser.parse_args(argv)

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    scene = args.out / "scene"
    if not (scene / "transforms.json").exists():
        print(f"Rendering the built-in scene into {scene}", flush=True)
        write_synthetic_scene(scene)
    runs = args.out / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    steps = str(args.iterations)
    _run([
        "ns-train", "vlm-fastgs", "--data", str(scene), "--output-dir", str(runs),
        "--machine.device-type", device, "--max-num-iterations", steps, "--vis", "tensorboard",
        "--steps-per-save", steps, "--steps-per-eval-image", steps, "--steps-per-eval-all-images", "1000000",
        "--pipeline.model.num-downscales", "0", "--pipeline.model.sh-degree-interval", str(max(args.iterations // 4, 1)),
        "--logging.local-writer.max-log-size", "0",
    ])
    config = latest_config(runs)
    eval_json = args.out / "eval.json"
    _run(["ns-eval", "--load-config", str(config), "--output-path", str(eval_json)])
    results = json.loads(eval_json.read_text())["results"]
    print(json.dumps(results, indent=2))
    print(f"Done. View it with: ns-viewer --load-config {config}")


if __name__ == "__main__":
    sys.exit(main())
