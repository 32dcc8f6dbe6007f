#!/usr/bin/env bash
# Builds the addon against the LibTorch inside a PyPI torch wheel (default 2.11.0, the GPU machine's version) and
# runs the test suite with it on the CPU. CI builds against Debian's LibTorch 1.13; this checks that the same
# sources compile and behave on 2.x (scaled_dot_product_attention, the 2.x allocator interface, MKL) without a
# GPU. The build goes through the real install path (scripts/install.mjs, CMake, the wheel's TorchConfig) with
# LLAMAPRO_CPU_ONLY=1: the Linux wheels are CUDA builds, and only their CPU half (torch_cpu, c10) can load without
# cuBLAS, cuDNN and NCCL. That CPU library still needs libcudart (from the nvidia-cuda-runtime wheel) and libcupti
# (replaced here by a stub whose profiling entry points are never called without a GPU). The CUDA half is
# compiled and linked by scripts/check-cuda-build.sh.
#
# usage: scripts/check-libtorch-wheel.sh [torch version] [work dir]     (needs pip access to PyPI, ~1 GB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-wheel.sh
version="${1:-2.11.0}"
work="${2:-/tmp/llamapro-libtorch-$version}"
fetch_torch_wheel "$version" "$work"
site="$work/site-packages"
lib="$site/torch/lib"

stub="$work/stub"
rm -rf "$stub" && mkdir -p "$stub"
cp "$(find "$site/nvidia" -name 'libcudart.so.*' | head -n 1)" "$stub/"
objdump -T "$lib/libtorch_cpu.so" | awk '/\(libcupti\.so\.[0-9]+\)/ { print $NF }' | sort -u > "$stub/symbols"
soname=$(objdump -T "$lib/libtorch_cpu.so" | grep -o 'libcupti\.so\.[0-9]*' | head -n 1)
{ echo '/* never called without a GPU */'; sed 's/.*/int &(void) { return 1; }/' "$stub/symbols"; } > "$stub/cupti.c"
echo "$soname { global: *; };" > "$stub/version.map"
gcc -shared -fPIC -o "$stub/$soname" "$stub/cupti.c" -Wl,--version-script="$stub/version.map" -Wl,-soname,"$soname"

# A copy of the checkout with its own build/ (node_modules and .venv are shared), built by the install script.
copy_checkout "$work/repo"
cd "$work/repo"
LIBTORCH="$site/torch" LLAMAPRO_CPU_ONLY=1 node scripts/install.mjs
export LD_LIBRARY_PATH="$stub:$lib"
npx tsc -p tsconfig.build.json
node dist/cli/main.js info
# package.test.ts is left out: it packs and installs against the LibTorch the checkout was built with
npx tap --disable-coverage $(ls test/*.test.ts | grep -v package.test.ts)
