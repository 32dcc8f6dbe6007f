#!/usr/bin/env bash
# Builds the addon against pip's CUDA torch wheel through the real install path (scripts/install.mjs: the
# locator, cmake-js, TorchConfig.cmake) on a machine with no GPU and no CUDA toolkit: the usual GPU box has the
# driver and `pip install torch`, nothing else. The CUDA code (LLAMAPRO_WITH_CUDA) must compile and link against
# libtorch_cuda; it is not run here (no GPU, and loading it would need the cuBLAS/cuDNN/NCCL wheels, ~3 GB).
# The tests run against the CPU build as usual. The wheels are kept under ~/.cache/llamapro/cuda-build, the build
# in a copy of the checkout there, so the checkout's own build/ is untouched and a rerun is incremental.
#
# usage: scripts/check-cuda-build.sh [torch version, default 2.15.0]   (pip access to PyPI; ~1.1 GB of disk)
# env:   LLAMAPRO_CUDA_CACHE (default ~/.cache/llamapro/cuda-build), LLAMAPRO_BUILD_JOBS (default: CPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-wheel.sh
version="${1:-2.15.0}"
dir="${LLAMAPRO_CUDA_CACHE:-$HOME/.cache/llamapro/cuda-build}/torch-$version"
start=$(date +%s)

fetch_torch_wheel "$version" "$dir"
fetched=$(date +%s)

copy_checkout "$dir/repo"
(cd "$dir/repo" && LIBTORCH="$dir/site-packages/torch" LLAMAPRO_CPU_ONLY=0 LLAMAPRO_BUILD_JOBS="${LLAMAPRO_BUILD_JOBS:-$(nproc)}" node scripts/install.mjs)
built=$(date +%s)

echo "check-cuda-build: fetch+unzip $((fetched - start))s, build $((built - fetched))s, total $((built - start))s"
addon="$dir/repo/build/Release/llamapro.node"
fail() { echo "check-cuda-build: $*" >&2; exit 1; }
[ -f "$addon" ] || fail "no addon at $addon"
grep -q 'LLAMAPRO_WITH_CUDA=1' "$dir/repo/build/build.ninja" "$dir"/repo/build/CMakeFiles/*.dir/flags.make 2>/dev/null ||
  fail "the addon was not compiled with LLAMAPRO_WITH_CUDA (the CMake output above says why)"
needed=$(readelf -d "$addon" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p' | tr '\n' ' ')
case "$needed" in *libtorch_cuda.so*) ;; *) fail "the addon does not link libtorch_cuda.so (NEEDED: $needed)" ;; esac
runpath=$(readelf -d "$addon" | sed -nE 's/.*\((RUNPATH|RPATH)\).*\[(.*)\]/\2/p')
case ":$runpath:" in *":$dir/site-packages/torch/lib:"*) ;; *) fail "RUNPATH '$runpath' lacks $dir/site-packages/torch/lib" ;; esac
echo "check-cuda-build: OK: torch $version (CUDA) addon compiled with LLAMAPRO_WITH_CUDA, links: $needed"
