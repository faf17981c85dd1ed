#!/usr/bin/env bash
# The GPU records of docs/benchmarks/desk_vr_2x_guided (VLM phases) and docs/benchmarks/fmgs_desk_vr (language field),
# one stage per device call (each well under 10 minutes on an H200):
#
#   source benchmarks/gpu_env.sh &&
#     CALL_DEADLINE=$(($(date +%s) + 580)) RETURN_DIR=$OUT bash benchmarks/record_gpu.sh STAGE /tmp/rec
#
# (CALL_DEADLINE: when the call's limit comes, epoch seconds; RETURN_DIR: where the packed results go.)
# STAGE: masks | unguided | image-evidence | vlm | splatfacto | fmgs (docs/benchmarks/desk_vr_2x_guided, fmgs_desk_vr);
# seeds | sweep | profile | early-window | early-window-sweep (docs/benchmarks/desk_vr_2x_seeds, desk_vr_2x_sweep,
# profile_lean, desk_vr_2x_early_window; 2026-12-01); beer-can | steering | speed (beer_can_4x, desk_vr_2x_steering,
# desk_vr_2x_speed; 2026-12-01, third session); splatfacto-seeds | near-camera (beer_can_4x_near_camera,
# desk_vr_2x_near_camera; fourth session); far-init (not run yet); steering also takes $SCENE / $DOWNSCALE / $BOXES
# (beer_can with configs/guidance/beer_can_subject_boxes.json) and $STEER_METHODS (fifth session); phase-attribution |
# deterministic (desk_vr_2x_phase_attribution, beer_can_4x_deterministic; sixth session, which also ran `profile`'s
# first command (profile_sync_sites), `steering` on beer_can with STEER_METHODS="vlm-fastgs+boxes
# vlm-fastgs@random_far_share=0.3" (beer_can_4x_steering) and `splatfacto-seeds` on beer_can (beer_can_4x_splatfacto));
# lean-step-profile | lean-step (desk_vr_2x_lean_step; seventh session, whose calls ran these commands one at a
# time). Stages that may outlast a call run under `bounded`: eval points measured before a cut stay in
# OUT/<record>/partial/. The scene is $SCENE (default .scenes/desk_vr: images_2/ + sparse/0 copied from
# ../shared/data/desk_vr). Run folders go to .runs/ (git-ignored), so the fmgs stage reuses the unguided stage's
# checkpoint when both run on the same machine. Results land in OUT (JSON, Markdown and a few packed guidance
# records), ready to copy under docs/benchmarks.
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

pack_record() {  # pack_record SRC DEST: the records under SRC as two tarballs in DEST, each under the device's 16 MiB
  # per-file limit (a whole record folder with logs and every run's progress images was 37 MB and did not come back):
  # results.tgz (JSON, Markdown, figures, partial/ eval points) and progress.tgz (seed 42's progress images)
  tar czf "$2/results.tgz" --exclude='*/logs' --exclude='*/progress' --exclude='*/runs' -C "$1" .
  (cd "$1" && find . -path '*/progress/*_s42' -type d -print0 | xargs -0 -r tar czf "$2/progress.tgz") || true
}

bounded() {  # bounded SECONDS CMD...: CMD under a time limit; when the limit cuts it, its --run-one children are stopped
  # too (eval points measured so far stay in OUT/.../partial/: compare_methods.py writes them as they come)
  local limit=$1 rc=0; shift
  if [ "$limit" -le 0 ]; then echo "skipped (no time left): $*" >&2; return 0; fi
  timeout "$limit" "$@" || rc=$?
  if [ "$rc" -eq 124 ]; then echo "stopped after ${limit}s: $*" >&2; pkill -f "compare_methods.py .*--run-one" || true
  elif [ "$rc" -ne 0 ]; then echo "failed ($rc): $*" >&2; fi
}

# A call's limit (the device tool's limit_s) can be shorter than the device time left: starting the machine counts
# too. With little time left, write results under $OUT as they come (e.g. --out $OUT/...), not only at the end: a
# call cut before its final copy returns nothing (seen 2026-12-01, fourth session).
# Never name bounded's pkill pattern on the device command line itself: `pkill -f` then matches that shell and kills
# the call (seen 2026-12-01; the results survived only because the machine was still warm).
# Seconds left before the device call's limit ($CALL_DEADLINE, epoch seconds; default 540 s from now), less a margin.
deadline=${CALL_DEADLINE:-$(($(date +%s) + 540))}
left() { echo $((deadline - $(date +%s) - $1)); }
eval_steps=(--eval-steps 1000 2000 4000 6000 8000 11000 14000 17000 20000)

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
  beer-can)  # beer_can 4x (180x320, 71 views): legacy, new defaults and image-evidence, 3 seeds each, 9 at a time
    # (docs/benchmarks/beer_can_4x: 373 s on a warm machine); splatfacto's seeds run in their own call (splatfacto-seeds)
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "${SCENE:-.scenes/beer_can}" \
      --downscale 4 --iterations 20000 --num-random 100 --reference vlm-fastgs:legacy --out "$out/beer_can_4x" \
      --runs-dir .runs/beer_can_4x "${eval_steps[@]}" --seeds 42 7 123 --jobs 9 \
      --methods vlm-fastgs:legacy vlm-fastgs vlm-fastgs+image-evidence ;;
  splatfacto-seeds)  # splatfacto alone, $SEEDS (default 42 7 123) at once on $SCENE at $DOWNSCALE (default 2): beside
    # five vlm-fastgs runs it took 62 ms per step and reached only 6k steps in a call (docs/benchmarks/desk_vr_2x_speed)
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" \
      --downscale "${DOWNSCALE:-2}" --iterations 20000 --num-random 100 --reference splatfacto \
      --out "$out/splatfacto_${DOWNSCALE:-2}x" --runs-dir .runs/splatfacto "${eval_steps[@]}" --seeds ${SEEDS:-42 7 123} \
      --jobs 3 --methods splatfacto ;;
  near-camera)  # the near-camera prune (FastGSStrategy.prune_near_camera, 0.25 by default since
    # docs/benchmarks/beer_can_4x_near_camera) against the defaults without it, 3 seeds on $SCENE at $DOWNSCALE
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" \
      --downscale "${DOWNSCALE:-2}" --iterations 20000 --num-random 100 --reference vlm-fastgs \
      --out "$out/near_camera_${DOWNSCALE:-2}x" --runs-dir .runs/near_camera "${eval_steps[@]}" --seeds 42 7 123 \
      --jobs 6 --methods vlm-fastgs@prune_near_camera=0 vlm-fastgs ;;
  far-init)  # random initial points beyond the subject (SceneDataParserConfig.random_far_share, off by default;
    # docs/benchmarks/beer_can_4x_cpu_far_init) against the defaults, 3 seeds on $SCENE at $DOWNSCALE (not run yet)
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" \
      --downscale "${DOWNSCALE:-2}" --iterations 20000 --num-random 100 --reference vlm-fastgs \
      --out "$out/far_init_${DOWNSCALE:-2}x" --runs-dir .runs/far_init "${eval_steps[@]}" --seeds 42 7 123 \
      --jobs 6 --methods vlm-fastgs vlm-fastgs@random_far_share=0.3 ;;
  phase-attribution)  # image-evidence with phase 1 (detail formation) off, and the hand-drawn background boxes, 3 seeds
    # on desk_vr 2x without an unguided run (docs/benchmarks/desk_vr_2x_phase_attribution, which ran this command
    # with --out .../phase_attr_2x; its unguided rows come from near-camera): the steering stage below, so set here
    STEER_BASE="" STEER_METHODS=${STEER_METHODS:-"vlm-fastgs+image-evidence@detail_every=0 vlm-fastgs+boxes"} ;&
  steering)  # unguided vs image-evidence vs hand-drawn boxes, 3 seeds, with test PSNR inside / outside the boxes on
    # the eval curve: desk_vr 2x with its background boxes by default; $SCENE, $DOWNSCALE and $BOXES (e.g.
    # .scenes/beer_can, 4, configs/guidance/beer_can_subject_boxes.json) for another scene; $STEER_METHODS replaces the
    # guided methods (e.g. "vlm-fastgs+image-evidence vlm-fastgs+image-evidence@guidance_grow_mode=swap");
    # $STEER_BASE the unguided reference run (empty: none)
    boxes=${BOXES:-configs/guidance/desk_vr_background_boxes.json}
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" \
      --downscale "${DOWNSCALE:-2}" --iterations 20000 --num-random 100 --reference vlm-fastgs \
      --out "$out/steering_$(basename "$scene")_${DOWNSCALE:-2}x" --runs-dir .runs/steering "${eval_steps[@]}" \
      --seeds 42 7 123 --jobs 9 --boxes-file "$boxes" --region-boxes "$boxes" \
      --methods ${STEER_BASE-vlm-fastgs} ${STEER_METHODS:-vlm-fastgs+image-evidence vlm-fastgs+boxes} ;;
  deterministic)  # GuidanceConfig.deterministic on (default) and off, image-evidence, $SEEDS (default 42) on $SCENE at
    # $DOWNSCALE: the wall time deterministic mode costs (docs/benchmarks/beer_can_4x_deterministic)
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" \
      --downscale "${DOWNSCALE:-2}" --iterations 20000 --num-random 100 --reference vlm-fastgs+image-evidence \
      --out "$out/deterministic_${DOWNSCALE:-2}x" --runs-dir .runs/det "${eval_steps[@]}" --seeds ${SEEDS:-42} --jobs 2 \
      --methods vlm-fastgs+image-evidence vlm-fastgs+image-evidence@deterministic=false ;;
  speed)  # the speed issue's same-call record: splatfacto beside vlm-fastgs (3 seeds) and the tiny VLM (plumbing and
    # overhead, seed 42), desk_vr 2x; then the step alone at 2x and 1x (profile_step, $scene/images needed for 1x)
    python -m vlm_instruct_gs.testing.tiny_vlm .runs/tiny_vlm >/dev/null
    common=(env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" --downscale 2 --iterations 20000
            --num-random 100 --reference vlm-fastgs --out "$out/desk_vr_2x_speed" --runs-dir .runs/speed "${eval_steps[@]}")
    bounded "$(left 120)" "${common[@]}" --seeds 42 7 123 --jobs 6 --methods splatfacto vlm-fastgs &
    bounded "$(left 120)" "${common[@]}" --seeds 42 --jobs 1 --methods vlm-fastgs+vlm --vlm-model-path .runs/tiny_vlm &
    wait
    for ds in 2 1; do
      bounded "$(left 15)" python benchmarks/profile_step.py --data "$scene" --downscale $ds --method vlm-fastgs \
        --start 3000 --steps 300 --profile-steps 50 --label "vlm-fastgs-${ds}x" --out "$out/profile_scale"
    done ;;
  lean-step-profile)  # docs/benchmarks/desk_vr_2x_lean_step (seventh session): the step alone, after / before
    # alternated at 3k, then at 8k (before: $BEFORE_SRC, a folder holding an older commit's splat_core, vlm_instruct_gs
    # and fmgs_field, e.g. `git archive 7299703 splat_core vlm_instruct_gs fmgs_field | tar -x -C gpu_before`; skipped
    # when unset); about 7 minutes, a call of its own
    for run in after_3k_a before_3k_a after_3k_b before_3k_b after_8k before_8k; do
      case $run in before*) [ -n "${BEFORE_SRC:-}" ] || continue; pp=$BEFORE_SRC:${PYTHONPATH:-} ;; *) pp=${PYTHONPATH:-} ;; esac
      start=${run#*_}; start=${start%%k*}000  # after_3k_a -> 3000, before_8k -> 8000
      PYTHONPATH=$pp bounded "$(left 15)" python benchmarks/profile_step.py --data "$scene" --downscale 2 \
        --method vlm-fastgs --start "$start" --steps 1000 --profile-steps 30 --label "$run" --out "$out/profile"
    done ;;
  lean-step)  # its training batch: unguided and image-evidence, 3 seeds each, six at once (about 6 minutes)
    bounded "$(left 30)" env OMP_NUM_THREADS=1 python benchmarks/compare_methods.py --data "$scene" --downscale 2 \
      --iterations 20000 --num-random 100 --reference vlm-fastgs --out "$out/desk_vr_2x_lean_step" \
      --runs-dir .runs/lean_step "${eval_steps[@]}" --seeds 42 7 123 --jobs 6 \
      --methods vlm-fastgs vlm-fastgs+image-evidence ;;
  profile)
    python benchmarks/profile_step.py --data "$scene" --downscale 2 --method vlm-fastgs --start 3000 --steps 300 \
      --profile-steps 100 --sync-steps 100 --out "$out/profile_after"  # sync_sites: who makes the host wait
    python benchmarks/profile_step.py --data "$scene" --downscale 2 --method vlm-fastgs --start 3000 --steps 300 \
      --profile-steps 50 --baseline step ssim adam --out "$out/profile_ablation" ;;
  *) echo "error: unknown stage $stage (masks | unguided | image-evidence | vlm | splatfacto | fmgs | seeds | sweep | profile | early-window | early-window-sweep | beer-can | splatfacto-seeds | near-camera | far-init | speed | steering | phase-attribution | deterministic | lean-step-profile | lean-step)" >&2; exit 2 ;;
esac
if [ -n "${RETURN_DIR:-}" ]; then pack_record "$out" "$RETURN_DIR"; fi
