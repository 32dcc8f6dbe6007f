#!/usr/bin/env bash
# Builds the addon against the LibTorch of pip's torch wheel, laid out as `pip install torch` lays it out (torch,
# the CUDA runtime and CUPTI it loads, the NCCL wheel, the CUDA headers: see scripts/torch-wheel.sh), and runs the
# test suite with it on the CPU. CI builds against Debian's LibTorch 1.13; this checks that the same sources
# compile and behave on 2.x (scaled_dot_product_attention, the 2.x allocator interface, MKL) without a GPU. The
# build goes through the real install path (scripts/install.mjs, CMake, the wheel's TorchConfig) with
# LLAMAPRO_CPU_ONLY=1: the Linux wheels are CUDA builds, and only their CPU half (torch_cpu, c10, which need
# libcudart and libcupti from the nvidia wheels, found through the wheel's own RPATH) loads without cuBLAS, cuDNN
# and a driver. Nothing is put on LD_LIBRARY_PATH: the addon finds LibTorch as a user's would, and the Python
# reference the tests run (.venv, Debian's torch 1.13) keeps its own. The CUDA half is compiled and linked by
# scripts/check-cuda-build.sh.
#
# usage: scripts/check-libtorch-wheel.sh [--full | --tests "<files>"] [--venv <python>] [torch version, default 2.15.0]
#   (default)       every test file but test/package.test.ts, which packs the package and builds the addon a
#                   third time in a scratch folder
#   --full          every test file, as `npm test` runs them (package.test.ts builds against the same LibTorch:
#                   LIBTORCH or LLAMAPRO_PYTHON and LLAMAPRO_CPU_ONLY=1 are in its environment)
#   --tests "<files>"  only these test files (space-separated), e.g. to rerun the ones a full run failed
#   --venv <python> instead of the wheels laid out here, the torch of a real `pip install torch` venv
#                   (LLAMAPRO_PYTHON=<python>, the locator's python route); the version argument is then unused
# env: LLAMAPRO_CUDA_CACHE (default ~/.cache/llamapro/cuda-build: the wheels are shared with check-cuda-build.sh),
#      LLAMAPRO_BUILD_JOBS, LLAMAPRO_TAP_TIMEOUT (seconds per test file, default package.json's 300; a loaded machine
#      may need more). Needs pip access to PyPI and ~1.5 GB of disk once.
# Ends with "check-libtorch-wheel: N passed, N failed (...)", the totals of tap's summary, and the wall times.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-wheel.sh
full=0 venv="" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --full) full=1; shift ;;
    --tests) only="${2:?--tests needs the test files}"; shift 2 ;;
    --venv) venv="${2:?--venv needs the python of a venv with torch}"; shift 2 ;;
    -*) echo "check-libtorch-wheel: unknown option $1 (valid: --full, --tests \"<files>\", --venv <python>)" >&2; exit 2 ;;
    *) break ;;
  esac
done
version="${1:-2.15.0}"
cache="${LLAMAPRO_CUDA_CACHE:-$HOME/.cache/llamapro/cuda-build}"
start=$(date +%s)

unset LD_LIBRARY_PATH
if [ -n "$venv" ]; then
  [ -x "$venv" ] || { echo "check-libtorch-wheel: --venv $venv: no such python" >&2; exit 2; }
  torch_env=(LLAMAPRO_PYTHON="$venv")
  repo="$cache/venv-$(echo "$venv" | md5sum | cut -c1-8)/repo-suite"
else
  dir="$cache/torch-$version"
  fetch_torch_wheel "$version" "$dir"
  remove_cuda_header_wheels "$dir"  # as pip leaves it, also after an interrupted check-cuda-build.sh
  torch_env=(LIBTORCH="$dir/site-packages/torch")
  repo="$dir/repo-suite"
fi
export "${torch_env[@]}" LLAMAPRO_CPU_ONLY=1

# A copy of the checkout with its own build/ (node_modules and .venv are shared), built by the install script.
copy_checkout "$repo"
cd "$repo"
LLAMAPRO_BUILD_JOBS="${LLAMAPRO_BUILD_JOBS:-$(nproc)}" node scripts/install.mjs
npx tsc -p tsconfig.build.json
node dist/cli/main.js info
built=$(date +%s)

files=$(ls test/*.test.ts)
[ "$full" -eq 1 ] || files=$(grep -v package.test.ts <<< "$files")
[ -z "$only" ] || files="$only"
log="$repo/../suite.log"
set +e
# shellcheck disable=SC2086  # one word a file
npx tap --disable-coverage --timeout="${LLAMAPRO_TAP_TIMEOUT:-300}" $files 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary=$(grep -E '^# \{ total: [0-9]+' "$log" | tail -n 1)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<< "$summary")
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<< "$summary")
echo "check-libtorch-wheel: ${pass:-0} passed, ${fail:-0} failed ($(wc -w <<< "$files") test files, tap exit $status; " \
  "build $((built - start))s, tests $(($(date +%s) - built))s; log $log)"
exit "$status"
