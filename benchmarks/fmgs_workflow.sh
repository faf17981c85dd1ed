#!/usr/bin/env bash
# The fmgs workflow of the README on a real scene, offline: language-field training on an existing vlm-fastgs
# checkpoint (Gaussians frozen) through ns-train, then ns-eval and fmgs-query. No CLIP/DINO weights can be downloaded
# where the records are made, so the teachers are tiny random models of the real widths (CLIP 512, DINO 384) written
# by fmgs_field.testing.tiny: timings of the field are representative, feature meaning is not.
#
#   bash benchmarks/fmgs_workflow.sh SCENE CKPT RUNS OUT [STEPS]
#
# SCENE and CKPT must match (same --data, downscale 2, eval every 8th image, as benchmarks/record_gpu.sh trains it).
# DEVICE=cpu runs it without a GPU (a smoke test with a few STEPS). Writes OUT/workflow.json (train wall time, ns-eval metrics, exported file counts) and OUT/eval.json.
set -euo pipefail
scene=$1
ckpt=$2
runs=$3
out=$4
steps=${5:-4200}
start_step=$(($(basename "$ckpt" .ckpt | sed 's/^step-0*//') + 1))
mkdir -p "$runs" "$out"
python -c "from fmgs_field.testing.tiny import write_tiny_teachers as w; w('$runs/teachers', 512, 384)"
t=$runs/teachers
begin=$(date +%s.%N)
ns-train fmgs --data "$scene" --output-dir "$runs" --vis tensorboard --machine.device-type "${DEVICE:-cuda}" --load-checkpoint "$ckpt" \
  --max-num-iterations "$steps" --steps-per-save "$steps" --pipeline.model.feature-start-step "$start_step" \
  --optimizers.fmgs-field.scheduler.warmup-steps "$start_step" \
  --optimizers.fmgs-field.scheduler.max-steps $((start_step + 10000)) \
  --pipeline.datamanager.clip.model-name fmgs-tiny-clip-512 \
  --pipeline.datamanager.clip.model-config-file "$t/fmgs-tiny-clip-512.json" \
  --pipeline.datamanager.clip.pretrained "$t/tiny_clip.pt" \
  --pipeline.datamanager.dino.backend transformers --pipeline.datamanager.dino.pretrained "$t/tiny_dino" \
  --pipeline.datamanager.dino.layer -1 --pipeline.datamanager.dino.load-size 64 \
  colmap --downscale-factor 2 --eval-mode interval --eval-interval 8
train_s=$(python -c "print($(date +%s.%N) - $begin)")
config=$(ls -t "$runs"/*/fmgs/*/config.yml | head -1)
ns-eval --load-config "$config" --output-path "$out/eval.json"
fmgs-query --load-config "$config" --query "a mug;a keyboard" --output-dir "$runs/query"
fmgs-query --load-config "$config" --export-gaussian-features
python - "$out" "$train_s" "$steps" "$config" "$runs/query" <<'PY'
import json, sys
from pathlib import Path
out, train_s, steps, config, query = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]), Path(sys.argv[5])
import torch
record = {
    "command": "bash benchmarks/fmgs_workflow.sh " + " ".join(sys.argv[1:]),
    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    "teachers": "tiny random (CLIP 512-d, DINO 384-d), fmgs_field.testing.tiny",
    "feature_steps": steps,
    "ns_train_wall_s": train_s,
    "ns_eval": json.loads((out / "eval.json").read_text())["results"],
    "query_heatmaps": sorted(str(p.relative_to(query)) for p in query.rglob("*.png"))[:4] + ["..."],
    "num_query_heatmaps": len(list(query.rglob("*.png"))),
    "gaussian_feature_exports": [p.name for p in config.parent.glob("fmgs_gaussian_features-*.pt")],
}
(out / "workflow.json").write_text(json.dumps(record, indent=1))
print(json.dumps(record, indent=1))
PY
