#!/usr/bin/env bash
# Builds the addon against pip's CUDA torch wheel, laid out as `pip install torch` lays it out (torch, the CUDA
# runtime and its headers, cuBLAS/cuSPARSE/cuSOLVER headers, the NCCL wheel: see scripts/torch-wheel.sh), through
# the real install path (scripts/install.mjs: the locator, cmake-js, TorchConfig.cmake), on a machine with no GPU
# and no CUDA toolkit: the usual GPU box has the driver and `pip install torch`, nothing else.
#
#  1. That layout as pip leaves it: the CUDA code (LLAMAPRO_WITH_CUDA) must compile and link against
#     libtorch_cuda. nccl.h is there but ProcessGroupNCCL.hpp cannot compile (pip installs no crt/ or CCCL
#     headers), so the build must leave the NCCL backend out and say which wheel to add: this is where a plain
#     `pip install torch` user's build used to fail (cuda.h not found).
#  2. With the two header wheels a user adds for NCCL (cuda-toolkit[crt,cccl]): the configure step must find the
#     backend usable and native/process_group.cc must compile with it (only that file is rebuilt, to keep CI short;
#     its object must call ProcessGroupNCCL's constructor).
# Nothing is run (no GPU). The tests run against the CPU build as usual. The unpacked wheels are kept under
# ~/.cache/llamapro/cuda-build, the build in a copy of the checkout there (the checkout's build/ is untouched).
#
# usage: scripts/check-cuda-build.sh [torch version, default 2.15.0]   (pip access to PyPI; ~1.5 GB downloaded once)
# env:   LLAMAPRO_CUDA_CACHE (default ~/.cache/llamapro/cuda-build), LLAMAPRO_BUILD_JOBS (default: CPUs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-wheel.sh
version="${1:-2.15.0}"
dir="${LLAMAPRO_CUDA_CACHE:-$HOME/.cache/llamapro/cuda-build}/torch-$version"
fail() { echo "check-cuda-build: $*" >&2; exit 1; }
start=$(date +%s)

fetch_torch_wheel "$version" "$dir"
remove_cuda_header_wheels "$dir"  # as pip leaves it, also after an interrupted earlier run
fetched=$(date +%s)

copy_checkout "$dir/repo"
log="$dir/build.log"
if ! (cd "$dir/repo" && LIBTORCH="$dir/site-packages/torch" LLAMAPRO_CPU_ONLY=0 LLAMAPRO_BUILD_JOBS="${LLAMAPRO_BUILD_JOBS:-$(nproc)}" node scripts/install.mjs) 2>&1 | tee "$log"; then
  fail "the build against torch $version as pip installs it failed (above)"
fi
built=$(date +%s)

addon="$dir/repo/build/Release/llamapro.node"
flags() { cat "$dir/repo/build/build.ninja" "$dir"/repo/build/CMakeFiles/*.dir/flags.make 2>/dev/null || true; }
[ -f "$addon" ] || fail "no addon at $addon"
grep -q 'LLAMAPRO_WITH_CUDA=1' <<< "$(flags)" || fail "the addon was not compiled with LLAMAPRO_WITH_CUDA (the CMake output above says why)"
needed=$(readelf -d "$addon" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p' | tr '\n' ' ')
case "$needed" in *libtorch_cuda.so*) ;; *) fail "the addon does not link libtorch_cuda.so (NEEDED: $needed)" ;; esac
runpath=$(readelf -d "$addon" | sed -nE 's/.*\((RUNPATH|RPATH)\).*\[(.*)\]/\2/p')
case ":$runpath:" in *":$dir/site-packages/torch/lib:"*) ;; *) fail "RUNPATH '$runpath' lacks $dir/site-packages/torch/lib" ;; esac
! grep -q 'LLAMAPRO_WITH_NCCL' <<< "$(flags)" || fail "NCCL was compiled in although pip's layout lacks the crt/ headers"
tr '\n' ' ' < "$log" | tr -s ' ' | grep 'crt/[a-z_]*\.h is missing.*no NCCL backend' > /dev/null ||
  fail "the build did not say why it has no NCCL backend (expected a warning naming the missing crt/ header)"
echo "check-cuda-build: 1/2 OK: torch $version (CUDA) as pip installs it: LLAMAPRO_WITH_CUDA, links: $needed; no NCCL, and the build says why"

add_cuda_header_wheels "$dir"
trap 'remove_cuda_header_wheels "$dir"' EXIT
cmake "$dir/repo/build" > "$log.nccl" 2>&1 || { cat "$log.nccl"; fail "reconfiguring with the crt/CCCL wheels failed"; }
grep -q 'llamapro: c10d NCCL backend' "$log.nccl" || { cat "$log.nccl"; fail "with the crt/CCCL wheels added, NCCL was still not found usable"; }
ninja -C "$dir/repo/build" -j "${LLAMAPRO_BUILD_JOBS:-$(nproc)}" CMakeFiles/llamapro.dir/native/process_group.cc.o >> "$log.nccl" 2>&1 ||
  { tail -n 40 "$log.nccl"; fail "native/process_group.cc does not compile with the NCCL backend"; }
nm -C "$dir/repo/build/CMakeFiles/llamapro.dir/native/process_group.cc.o" | grep 'U c10d::ProcessGroupNCCL::ProcessGroupNCCL' > /dev/null ||
  fail "process_group.cc.o does not construct ProcessGroupNCCL"
nccl=$(date +%s)
echo "check-cuda-build: 2/2 OK: with cuda-toolkit[crt,cccl] added, process_group.cc compiles the NCCL backend"
echo "check-cuda-build: fetch+unzip $((fetched - start))s, build $((built - fetched))s, NCCL compile $((nccl - built))s, total $((nccl - start))s"
