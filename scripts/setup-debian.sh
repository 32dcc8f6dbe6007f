#!/usr/bin/env bash
# Installs what llamapro needs on Debian or Ubuntu (run as root, or with sudo available):
#   - LibTorch for the CPU (libtorch-dev), the Gloo headers its c10d needs for distributed training (libgloo-dev),
#     and OpenBLAS (libopenblas0-pthread): without OpenBLAS, Debian's
#     LibTorch falls back to the reference BLAS and a training step is about 25x slower;
#   - cmake, ninja and g++ to build the addon; patchelf and binutils (readelf) for `llamapro bundle`;
#   - unless --runtime-only: what the tests compare against: Debian's python3-torch (the same LibTorch under
#     Python) and a virtual environment .venv with PyPI's safetensors and tokenizers (and llamafactory, without
#     its dependencies, for its template code), and Debian's chromium for the board's browser test.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_only=0
for arg in "$@"; do
  case "$arg" in
    --runtime-only) runtime_only=1 ;;
    *) echo "usage: scripts/setup-debian.sh [--runtime-only]" >&2; exit 2 ;;
  esac
done

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-debian.sh: apt-get not found. On other systems install LibTorch yourself and point LIBTORCH at it (see docs/install.md)." >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

packages=(libtorch-dev libgloo-dev libopenblas0-pthread cmake ninja-build g++ make patchelf binutils)
# chromium: the board's page is tested in a real browser (test/board-browser.test.ts); clang-format: npm run lint.
if [ "$runtime_only" -eq 0 ]; then packages+=(python3-torch python3-venv python3-pip unzip chromium clang-format); fi

$sudo apt-get update -q
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"

if [ "$runtime_only" -eq 0 ]; then
  # --system-site-packages: the venv sees Debian's torch and numpy (PyPI's numpy 2 would not match torch 1.13).
  if [ ! -x .venv/bin/python ]; then /usr/bin/python3 -m venv --system-site-packages .venv; fi
  .venv/bin/pip install -q --disable-pip-version-check -r bench/reference/requirements.txt
  # LLaMA-Factory's own template code is the reference of test/templates.test.ts; its dependencies are not needed.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r bench/reference/requirements-nodeps.txt
  # SmolLM2-135M-Instruct as GGUF, for the GGUF import tests and the SmolLM2 walkthrough (docs/guides/smollm2.md) (~98 MB, cached).
  bash scripts/fetch-smollm2.sh
  .venv/bin/python -c 'import torch, safetensors, tokenizers; print(f"reference python: torch {torch.__version__}, safetensors {safetensors.__version__}, tokenizers {tokenizers.__version__}")'
fi
