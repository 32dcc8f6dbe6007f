# Sourced by scripts/check-cuda-build.sh and scripts/check-libtorch-wheel.sh: fetch pip's CUDA torch wheel and the
# nvidia wheels `pip install torch` puts beside it that bring headers or libraries a LibTorch build can pick up, and
# lay them out as pip does (site-packages/{torch,nvidia,*.dist-info}). Downloads with pip (PyPI, --no-deps, the
# exact versions torch's METADATA asks for); nothing is installed.
#
# What pip installs for torch 2.15 (Linux, CUDA 13) and what is laid out here:
#   torch                          include/, lib/, share/ (TorchConfig.cmake), its dist-info
#   cuda-toolkit[cudart,cublas,cusparse,cusolver,...]==13.2.2   its dist-info (names the CUDA version)
#     nvidia-cuda-runtime          nvidia/cu13/{include,lib}: cuda.h, cuda_runtime*.h, libcudart (linked)
#     nvidia-cuda-cupti            nvidia/cu13/{include,lib}: libcupti, which libtorch_cpu itself needs to load
#     nvidia-cublas, -cusparse, -cusolver   nvidia/cu13/include only (headers ATen/cuda includes; their libraries,
#                                  ~1.5 GB, are never linked or loaded by a build without a GPU)
#   nvidia-nccl-cu13               nvidia/nccl/{include,lib}: nccl.h, libnccl
# Left out: cuDNN, cuSPARSELt, NVSHMEM, cuFFT, cuFile, nvJitLink, NVRTC, NVTX, triton (no header the build
# includes, no library it links). Not installed by pip (so not laid out): nvidia-cuda-crt and nvidia-cuda-cccl, the
# crt/ and <nv/target> headers ProcessGroupNCCL.hpp needs; add_cuda_header_wheels adds them for the NCCL check.

torch_wheel_pip=(/usr/bin/python3 -m pip download --no-deps --only-binary=:all: --python-version 3.11
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_25_x86_64 --platform manylinux_2_18_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64
  --platform manylinux1_x86_64)

# The wheels of the table above (names without their -cu12/-cu13 suffix).
torch_wheel_wanted='^nvidia-(cuda-runtime|cuda-cupti|nccl|cublas|cusparse|cusolver)(-cu[0-9]+)?$'

# requirements_of <wheel> [extras, comma-separated]: "name==version" of its Linux Requires-Dist (the unconditional
# ones and, for extras, those of these extras), one a line.
requirements_of() {
  local wheel="$1" extras="${2:-}"
  unzip -p "$wheel" '*.dist-info/METADATA' | sed -nE 's/^Requires-Dist: //p' | while IFS= read -r line; do
    local spec="${line%%;*}" marker="" extra
    [[ "$line" == *";"* ]] && marker="${line#*;}"
    if [[ "$marker" == *"extra =="* ]]; then
      extra=$(sed -nE "s/.*extra == '([^']+)'.*/\1/p" <<< "$marker")
      [[ ",$extras," == *",$extra,"* ]] || continue
    elif [ -n "$extras" ]; then continue
    fi
    [[ -z "$marker" || "$marker" == *Linux* || "$marker" == *linux* ]] || continue
    echo "${spec// /}"
  done
}

# torch_cuda_requirements <torch wheel> <scratch dir>: the wanted nvidia wheels, as pip resolves them: named by torch
# directly (CUDA 12 wheels, NCCL) or through the extras of cuda-toolkit==X (CUDA 13). Leaves cuda-toolkit's wheel
# in <scratch>.
torch_cuda_requirements() {
  local wheel="$1" scratch="$2" toolkit extras req name
  toolkit=$(requirements_of "$wheel" | grep -E '^cuda-toolkit\[' | head -n 1)
  {
    requirements_of "$wheel"
    if [ -n "$toolkit" ]; then
      extras=$(sed -nE 's/^cuda-toolkit\[([^]]*)\].*/\1/p' <<< "$toolkit")
      "${torch_wheel_pip[@]}" "cuda-toolkit${toolkit#cuda-toolkit\[$extras\]}" -d "$scratch" >&2
      requirements_of "$(ls "$scratch"/cuda_toolkit-*.whl | head -n 1)" "$extras"
    fi
  } | while IFS= read -r req; do
    name=$(sed -E 's/[=<>~!].*//' <<< "$req")
    if [[ "$name" =~ $torch_wheel_wanted ]]; then echo "$req"; fi
  done | sort -u
}

# fetch_torch_wheel <torch version> <dir>: fills <dir>/site-packages as the table above says (kept: a second call
# does nothing). A CPU-only torch wheel names no CUDA wheel: an error.
fetch_torch_wheel() {
  local version="$1" dir="$2" site="$2/site-packages" wheels="$2/wheels" req w
  if [ -f "$site/.llamapro-layout-2" ]; then return; fi  # -2: since CUPTI is laid out
  rm -rf "$wheels" "$site" && mkdir -p "$wheels" "$site"
  "${torch_wheel_pip[@]}" "torch==$version" -d "$wheels"
  mapfile -t reqs < <(torch_cuda_requirements "$wheels"/torch-*.whl "$wheels")
  if ! printf '%s\n' "${reqs[@]}" | grep -q '^nvidia-cuda-runtime'; then
    echo "torch $version names no CUDA runtime wheel (a CPU wheel?): ${reqs[*]}" >&2; return 1
  fi
  echo "torch $version: pip would install, among others: ${reqs[*]}"
  for req in "${reqs[@]}"; do
    # "==13.2.86.*" is a valid pin for pip; so is a range (nvidia-nvjitlink<14,>=13.2)
    "${torch_wheel_pip[@]}" "$req" -d "$wheels"
  done
  unzip -q -o "$wheels"/torch-*.whl 'torch/include/*' 'torch/lib/*' 'torch/share/*' 'torch-*.dist-info/*' -d "$site"
  for w in "$wheels"/cuda_toolkit-*.whl; do [ -f "$w" ] && unzip -q -o "$w" -d "$site"; done
  for w in "$wheels"/nvidia_*.whl; do
    case "$(basename "$w")" in
      nvidia_cublas* | nvidia_cusparse* | nvidia_cusolver*) unzip -q -o "$w" 'nvidia/*/include/*' -d "$site" ;;
      *) unzip -q -o "$w" 'nvidia/*' -d "$site" ;;
    esac
  done
  ls "$wheels" > "$site/.llamapro-layout-2"
  # The CUDA header wheels pip does not install are kept (4 MB) for add_cuda_header_wheels; the rest is unpacked.
  find "$wheels" -name '*.whl' ! -name 'cuda_toolkit-*' -delete
}

# add_cuda_header_wheels <dir> / remove_cuda_header_wheels <dir>: put into <dir>/site-packages (or take out again)
# the CUDA header wheels a GPU user adds to build the NCCL backend without a toolkit: the versions of
# cuda-toolkit[crt,cccl] that match the torch wheel (pip install "cuda-toolkit[crt,cccl]==X").
add_cuda_header_wheels() {
  local dir="$1" toolkit req w
  toolkit=$(ls "$dir"/wheels/cuda_toolkit-*.whl 2>/dev/null | head -n 1)
  [ -n "$toolkit" ] || { echo "no cuda-toolkit wheel in $dir/wheels (a CUDA 12 torch?)" >&2; return 1; }
  mkdir -p "$dir/header-wheels"
  for req in $(requirements_of "$toolkit" crt,cccl); do
    ls "$dir"/header-wheels/"$(sed -E 's/[=<>~!].*//; s/-/_/g' <<< "$req")"-*.whl > /dev/null 2>&1 ||
      "${torch_wheel_pip[@]}" "$req" -d "$dir/header-wheels"
  done
  for w in "$dir"/header-wheels/*.whl; do unzip -q -o "$w" 'nvidia/*' -d "$dir/site-packages"; done
}
remove_cuda_header_wheels() {
  local dir="$1" w
  for w in "$dir"/header-wheels/*.whl; do
    [ -f "$w" ] || continue
    unzip -Z1 "$w" 'nvidia/*' | grep -v '/$' | (cd "$dir/site-packages" && xargs -r rm -f)
  done
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
