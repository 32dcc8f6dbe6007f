#!/usr/bin/env bash
# Builds the addon against the LibTorch inside a PyPI torch wheel (default 2.11.0, the GPU machine's version) and
# runs the test suite with it on the CPU. CI builds against Debian's LibTorch 1.13; this checks that the same
# sources compile and behave on 2.x (scaled_dot_product_attention, the 2.x allocator interface, MKL) without a
# GPU. The Linux wheels are CUDA builds: their CPU library needs libcudart (from the nvidia-cuda-runtime wheel) and
# libcupti (replaced here by a stub whose profiling entry points are never called without a GPU).
#
# usage: scripts/check-libtorch-wheel.sh [torch version] [work dir]     (needs pip access to PyPI, ~1 GB of disk)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${1:-2.11.0}"
work="${2:-/tmp/llamapro-libtorch-$version}"
pip=(/usr/bin/python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64)
mkdir -p "$work"/{wheel,cudart,stub,obj,repo}

if [ ! -d "$work/wheel/torch/lib" ]; then
  "${pip[@]}" "torch==$version" -d "$work/wheel"
  (cd "$work/wheel" && unzip -q -o torch-*.whl 'torch/include/*' 'torch/lib/*' 'torch/share/*')
fi
if [ ! -d "$work/cudart/nvidia" ]; then
  "${pip[@]}" nvidia-cuda-runtime -d "$work/cudart"
  (cd "$work/cudart" && unzip -q -o ./*.whl)
fi
include="$work/wheel/torch/include"
lib="$work/wheel/torch/lib"
cp "$(find "$work/cudart" -name 'libcudart.so.*' | head -n 1)" "$work/stub/"
objdump -T "$lib/libtorch_cpu.so" | awk '/\(libcupti\.so\.[0-9]+\)/ { print $NF }' | sort -u > "$work/stub/symbols"
soname=$(objdump -T "$lib/libtorch_cpu.so" | grep -o 'libcupti\.so\.[0-9]*' | head -n 1)
{ echo '/* never called without a GPU */'; sed 's/.*/int &(void) { return 1; }/' "$work/stub/symbols"; } > "$work/stub/cupti.c"
echo "$soname { global: *; };" > "$work/stub/version.map"
gcc -shared -fPIC -o "$work/stub/$soname" "$work/stub/cupti.c" -Wl,--version-script="$work/stub/version.map" -Wl,-soname,"$soname"

flags=(-O2 -std=c++17 -fPIC -fvisibility=hidden -D_GLIBCXX_USE_CXX11_ABI=1 -DNAPI_VERSION=8 -DNODE_ADDON_API_CPP_EXCEPTIONS
  -DNODE_ADDON_API_CPP_EXCEPTIONS_ALL -DNODE_ADDON_API_DISABLE_DEPRECATED "-DLLAMAPRO_TORCH_CMAKE_DIR=\"$work/wheel/torch/share/cmake/Torch\""
  -I"$include" -I"$include/torch/csrc/api/include" -Inode_modules/node-api-headers/include -Inode_modules/node-addon-api)
echo "compiling native/ against LibTorch $version headers"
jobs=()
for source in native/*.cc; do
  g++ "${flags[@]}" -c "$source" -o "$work/obj/$(basename "$source" .cc).o" &
  jobs+=("$!")
  if [ "${#jobs[@]}" -ge "$(nproc)" ]; then wait "${jobs[0]}"; jobs=("${jobs[@]:1}"); fi
done
for job in "${jobs[@]}"; do wait "$job"; done
g++ -shared -o "$work/obj/llamapro.node" "$work"/obj/*.o -L"$lib" -ltorch_cpu -lc10 -Wl,-rpath,"$lib"

# A copy of the checkout whose build/Release holds this addon; node_modules and .venv are shared.
rm -rf "$work/repo" && mkdir -p "$work/repo/build/Release"
git ls-files -z | xargs -0 -I{} cp --parents {} "$work/repo/"
cp -r lib test bench native scripts "$work/repo/"
ln -s "$PWD/node_modules" "$work/repo/node_modules"
if [ -d .venv ]; then ln -s "$PWD/.venv" "$work/repo/.venv"; fi
cp "$work/obj/llamapro.node" "$work/repo/build/Release/"
cd "$work/repo"
export LD_LIBRARY_PATH="$work/stub:$lib"
npx tsc -p tsconfig.build.json
node dist/cli/main.js info
# package.test.ts is left out: it packs and installs against the LibTorch the checkout was built with
npx tap --disable-coverage $(ls test/*.test.ts | grep -v package.test.ts)
