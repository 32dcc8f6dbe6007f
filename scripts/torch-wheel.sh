# Sourced by scripts/check-cuda-build.sh and scripts/check-libtorch-wheel.sh: fetch pip's CUDA torch wheel and the
# CUDA runtime wheel it depends on, and lay them out as `pip install torch` does (site-packages/{torch,nvidia}),
# downloading with pip (PyPI) and unzipping only what a LibTorch build needs. Nothing is installed.

torch_wheel_pip=(/usr/bin/python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64)

# The CUDA runtime requirement of a torch wheel: CUDA 13 wheels ask for cuda-toolkit[cudart,...]==X, whose
# `cudart` extra names nvidia-cuda-runtime==V.*; CUDA 12 wheels name nvidia-cuda-runtime-cu12==V directly.
cuda_runtime_requirement() {  # <torch wheel> <scratch dir>
  local wheel="$1" scratch="$2" requirement toolkit
  requirement=$(unzip -p "$wheel" '*.dist-info/METADATA' | sed -nE 's/^Requires-Dist: (nvidia-cuda-runtime[a-z0-9-]*==[^;[:space:]]+).*/\1/p' | head -n 1)
  if [ -n "$requirement" ]; then echo "$requirement"; return; fi
  toolkit=$(unzip -p "$wheel" '*.dist-info/METADATA' | sed -nE 's/^Requires-Dist: cuda-toolkit\[[^]]*\]==([^;[:space:]]+).*/\1/p' | head -n 1)
  if [ -z "$toolkit" ]; then echo "torch wheel $wheel names no CUDA runtime (a CPU wheel?)" >&2; return 1; fi
  "${torch_wheel_pip[@]}" "cuda-toolkit==$toolkit" -d "$scratch" >&2
  unzip -p "$scratch"/cuda_toolkit-*.whl '*.dist-info/METADATA' |
    sed -nE "s/^Requires-Dist: (nvidia-cuda-runtime==[^;[:space:]]+).*extra == 'cudart'.*/\1/p" | head -n 1
}

# fetch_torch_wheel <torch version> <dir>: fills <dir>/site-packages (kept: a second call does nothing).
fetch_torch_wheel() {
  local version="$1" dir="$2" site="$2/site-packages" runtime
  if [ -f "$site/torch/share/cmake/Torch/TorchConfig.cmake" ] && [ -d "$site/nvidia" ]; then return; fi
  rm -rf "$dir/wheels" "$site" && mkdir -p "$dir/wheels" "$site"
  "${torch_wheel_pip[@]}" "torch==$version" -d "$dir/wheels"
  runtime=$(cuda_runtime_requirement "$dir"/wheels/torch-*.whl "$dir/wheels")
  echo "torch $version needs $runtime"
  "${torch_wheel_pip[@]}" "$runtime" -d "$dir/wheels"
  unzip -q -o "$dir"/wheels/torch-*.whl 'torch/include/*' 'torch/lib/*' 'torch/share/*' -d "$site"
  unzip -q -o "$dir"/wheels/nvidia_cuda_runtime*.whl 'nvidia/*' -d "$site"
  rm -rf "$dir/wheels"  # the unpacked tree is what is kept
}

# copy_checkout <dir>: this checkout's sources (tracked and new, not ignored) into <dir>, whose build/ is kept
# for incremental rebuilds; node_modules and .venv are linked, not copied.
copy_checkout() {
  local dir="$1" root
  root=$(pwd)
  mkdir -p "$dir"
  find "$dir" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
  git ls-files -z --cached --others --exclude-standard | grep -zvE '^(node_modules|\.venv)$' |
    while IFS= read -r -d '' file; do [ -e "$file" ] && cp -p --parents "$file" "$dir/"; done  # -p: unchanged files keep their mtime, so ninja rebuilds only what changed
  ln -s "$root/node_modules" "$dir/node_modules"
  if [ -d .venv ]; then ln -s "$root/.venv" "$dir/.venv"; fi
}
