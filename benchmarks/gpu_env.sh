# Source this on the offline CUDA machine (see ../shared/gpu/README.md): installs the carried wheels (.whl/) and
# this checkout, then sets gsplat's JIT build variables.  Usage:  source benchmarks/gpu_env.sh
# A machine still warm from an earlier call has them: the install is skipped when the wheel list is unchanged.
if ! ls .whl | cmp -s - /tmp/site/.wheels; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
  ls .whl >/tmp/site/.wheels
fi
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . || return 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
