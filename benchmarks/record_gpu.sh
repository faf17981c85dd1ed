#!/usr/bin/env bash
# The GPU records of docs/benchmarks/desk_vr_2x_guided (VLM phases) and docs/benchmarks/fmgs_desk_vr (language field),
# one stage per device call (each well under 10 minutes on an H200):
#
#   source benchmarks/gpu_env.sh && bash benchmarks/record_gpu.sh STAGE OUT
#
# STAGE: masks | unguided | image-evidence | vlm | splatfacto | fmgs (docs/benchmarks/desk_vr_2x_guided, fmgs_desk_vr);
# seeds | sweep | profile | early-window | early-window-sweep (docs/benchmarks/desk_vr_2x_seeds, desk_vr_2x_sweep,
# profile_lean, desk_vr_2x_early_window; 2026-12-01); beer-can | speed | steering (prepared for the records the open
# issues still need; not run yet). Stages that may outlast a call run under `bounded`: eval points measured before a
# cut stay in OUT/<record>/partial/. The scene is $SCENE (default .scenes/desk_vr:
# images_2/ + sparse/0 copied from ../shared/data/desk_vr). Run folders go to .runs/ (git-ignored), so the fmgs stage
# reuses the unguided stage's checkpoint when both run on the same machine. Results land in OUT (JSON, Markdown and a
# few packed guidance records), ready to copy under docs/benchmarks.
set -euo pipefail
stage=$1
out=$2
scene=${SCENE:-.scenes/desk_vr}
mkdir -p "$out"
bench=(python benchmarks/compare_methods.py --data "$scene" --downscale 2 --iterations 20000 --num-random 100
       --seed 42 --out "$out/desk_vr_2x_guided" --runs-dir .runs/desk_vr_2x)

pack_guidance() {  # the run's guidance records: every JSON, plus the images and masks of a few query steps
  local run_dir
  run_dir=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['config'].rsplit('/', 1)[0])" "$1")
  (cd "$run_dir/guidance" && tar czf - applied.jsonl ./*.json step_04000_* step_08000_* step_12000_*) \
    >"$out/guidance_$2.tar.gz" || true
}

bounded() {  # bounded SECONDS CMD...: CMD under a time limit, its --run-one children stopped with it; eval points
  # measured so far stay in OUT/.../partial/ (compare_methods.py writes them as they come)
  local limit=$1; shift
  timeout "$limit" "$@" || echo "stopped after ${limit}s (or failed): $*" >&2
  pkill -f "compare_methods.py .*--run-one" || true
}

# Parallel runs would race on gsplat's JIT build; build it once first.
if command -v nvidia-smi >/dev/null; then python -c "from gsplat.cuda._backend import _C" || true; fi

case $stage in
  masks)
    for layout in "" --per-axis; do
      python benchmarks/bench_masks.py --gaussians 1000000 --views 4 $layout | tee -a "$out/bench_masks.jsonl"
    done ;;
  unguided) "${bench[@]}" --run-one vlm-fastgs ;;
  image-evidence)
    "${bench[@]}" --run-one vlm-fastgs+image-evidence
    pack_guidance "$out/desk_vr_2x_guided/vlm-fastgs-image-evidence_s42.json" image-evidence ;;
  vlm)
    python -m vlm_instruct_gs.testing.tiny_vlm .runs/tiny_vlm
    "${bench[@]}" --run-one vlm-fastgs+vlm --vlm-model-path .runs/tiny_vlm
    pack_guidance "$out/desk_vr_2x_guided/vlm-fastgs-vlm_s42.json" vlm ;;
  splatfacto) "${bench[@]}" --run-one splatfacto ;;
  fmgs)
    # Geometry: $CKPT, by default the unguided stage's vlm-fastgs checkpoint in this machine's .runs, frozen.
    ckpt=${CKPT:-$(ls .runs/desk_vr_2x/desk_vr/vlm-fastgs/*/nerfstudio_models/step-000019999.ckpt | tail -1)}
    python benchmarks/bench_fmgs.py --data "$scene" --downscale 2 --geometry-ckpt "$ckpt" --steps 300 \
      --out "$out/fmgs_desk_vr"
    bash benchmarks/fmgs_workflow.sh "$scene" "$ckpt" .runs/fmgs "$out/fmgs_desk_vr" 3000 ;;
  seeds)  # two invocations at once: 8 training processes on one GPU
    ev=(--eval-steps 1000 2000 3000 4000 5000 6000 7000 8000 11000 14000 17000 20000)
    common=(python benchmarks/compare_methods.py --data "$scene" --downscale 2 --iterations 20000 --num-random 100
            --reference vlm-fastgs:legacy --out "$out/desk_vr_2x" --runs-dir .runs/desk_vr_2x "${ev[@]}")
    OMP_NUM_THREADS=2 "${common[@]}" --seeds 42 7 123 --jobs 6 --methods vlm-fastgs:legacy vlm-fastgs &
    OMP_NUM_THREADS=2 "${common[@]}" --seeds 42 --jobs 2 --methods splatfacto vlm-fastgs+image-evidence &
    wait
    "${common[@]}" --seeds 42 7 123 --methods splatfacto vlm-fastgs:legacy vlm-fastgs vlm-fastgs+image-evidence \
      --report-only ;;
  sweep)
    OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "$scene" --downscale 2 --iterations 20000 \
      --num-random 100 --reference vlm-fastgs:legacy --out "$out/sweep" --runs-dir .runs/sweep \
      --eval-steps 2000 4000 6000 8000 11000 14000 17000 20000 --seeds 42 7 123 --jobs 6 \
      --methods vlm-fastgs@score_footprint=box vlm-fastgs@densify_min_count=1 ;;
  early-window)  # docs/benchmarks/desk_vr_2x_early_window: the previous and the new end of the early-growth window
    OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "$scene" --downscale 2 --iterations 20000 \
      --num-random 100 --reference vlm-fastgs:legacy --out "$out/final" --runs-dir .runs/final \
      --eval-steps 2000 4000 6000 8000 11000 14000 17000 20000 --seeds 42 7 123 --jobs 6 \
      --methods vlm-fastgs@early_refine_stop_iter=3000 vlm-fastgs ;;
  early-window-sweep)  # its sweep_to_11k: stopped after the 11k eval by the call's time limit (OUT/sweep3/partial)
    bounded 335 env OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "$scene" --downscale 2 \
      --iterations 20000 --num-random 100 --reference vlm-fastgs:legacy --out "$out/sweep3" --runs-dir .runs/sweep3 \
      --eval-steps 2000 4000 6000 8000 11000 20000 --seeds 42 123 --jobs 8 \
      --methods vlm-fastgs@early_refine_stop_iter=3000,num_downscales=0 vlm-fastgs@early_refine_stop_iter=3000,refine_every=250 \
      vlm-fastgs@early_refine_stop_iter=1500 vlm-fastgs@early_refine_stop_iter=3000,sh_degree_interval=2500 ;;
  beer-can)  # the densifier issue's beer_can record: legacy vs new defaults vs image-evidence, 3 seeds ($SCENE: beer_can)
    bounded 540 env OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "${SCENE:-.scenes/beer_can}" \
      --downscale 2 --iterations 20000 --num-random 100 --reference vlm-fastgs:legacy --out "$out/beer_can_2x" \
      --runs-dir .runs/beer_can_2x --eval-steps 2000 4000 6000 8000 11000 14000 17000 20000 --seeds 42 7 123 \
      --jobs 9 --methods vlm-fastgs:legacy vlm-fastgs vlm-fastgs+image-evidence ;;
  speed)  # the speed issue's same-record wall-time ratio: splatfacto beside vlm-fastgs, 3 seeds (not run yet: sized
    # from splatfacto's ~7 ms of GPU work per step when 8 runs shared the GPU, docs/benchmarks/desk_vr_2x_seeds)
    bounded 540 env OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "$scene" --downscale 2 \
      --iterations 20000 --num-random 100 --reference vlm-fastgs:legacy --out "$out/speed_2x" --runs-dir .runs/speed \
      --eval-steps 4000 8000 14000 20000 --seeds 42 7 123 --jobs 6 --methods splatfacto vlm-fastgs ;;
  steering)  # the steering issue's desk_vr record: unguided vs image-evidence vs hand-drawn background boxes, 3 seeds,
    # with test PSNR inside / outside those boxes on the eval curve (not run yet)
    boxes=configs/guidance/desk_vr_background_boxes.json
    bounded 540 env OMP_NUM_THREADS=2 python benchmarks/compare_methods.py --data "$scene" --downscale 2 \
      --iterations 20000 --num-random 100 --reference vlm-fastgs --out "$out/desk_vr_2x_steering" \
      --runs-dir .runs/steering --eval-steps 2000 4000 6000 8000 11000 14000 15000 17000 20000 --seeds 42 7 123 \
      --jobs 9 --boxes-file $boxes --region-boxes $boxes \
      --methods vlm-fastgs vlm-fastgs+image-evidence vlm-fastgs+boxes ;;
  profile)
    python benchmarks/profile_step.py --data "$scene" --downscale 2 --method vlm-fastgs --start 3000 --steps 300 \
      --profile-steps 100 --out "$out/profile_after"
    python benchmarks/profile_step.py --data "$scene" --downscale 2 --method vlm-fastgs --start 3000 --steps 300 \
      --profile-steps 50 --baseline step ssim adam --out "$out/profile_ablation" ;;
  *) echo "error: unknown stage $stage (masks | unguided | image-evidence | vlm | splatfacto | fmgs | seeds | sweep | profile | early-window | early-window-sweep | beer-can | speed | steering)" >&2; exit 2 ;;
esac
