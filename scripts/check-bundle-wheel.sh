#!/usr/bin/env bash
# `llamapro bundle` against pip's LibTorch (torch 2.15 laid out as `pip install torch` lays it out, see
# scripts/torch-wheel.sh): builds the addon with LLAMAPRO_CPU_ONLY=1 (the wheel's CPU half; no GPU here), bundles
# it, then moves that LibTorch away (the site-packages folder is renamed for the rest of the run and put back at
# the end), copies the bundle to a new path with spaces, and checks in fresh processes with no LD_LIBRARY_PATH:
# readelf shows RUNPATH $ORIGIN and no absolute path, ldd of every file resolves inside the bundle or to the system,
# test/helpers/bundle-probe.mjs runs a forward pass and a training step with the same numbers as from the build
# folder (run before the move), every LibTorch file mapped is the bundle's, and a bundle missing libc10.so gives
# the named error. Prints the bundle's size and the load time from the bundle and from the build folder.
# test/bundle.test.ts does the same against Debian's LibTorch in the test suite; this script is not part of CI
# (it builds the addon a second time).
#
# usage: scripts/check-bundle-wheel.sh [torch version, default 2.15.0]     (pip access to PyPI, ~1.5 GB once)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-wheel.sh
version="${1:-2.15.0}"
dir="${LLAMAPRO_CUDA_CACHE:-$HOME/.cache/llamapro/cuda-build}/torch-$version"
fail() { echo "check-bundle-wheel: FAIL: $*" >&2; exit 1; }
start=$(date +%s)

fetch_torch_wheel "$version" "$dir"
remove_cuda_header_wheels "$dir"
copy_checkout "$dir/repo-cpu"
cd "$dir/repo-cpu"
unset LD_LIBRARY_PATH
LIBTORCH="$dir/site-packages/torch" LLAMAPRO_CPU_ONLY=1 LLAMAPRO_BUILD_JOBS="${LLAMAPRO_BUILD_JOBS:-$(nproc)}" node scripts/install.mjs > "$dir/repo-cpu.build.log" 2>&1 ||
  { tail -n 30 "$dir/repo-cpu.build.log"; fail "the CPU-only build against torch $version failed"; }
npx tsc -p tsconfig.build.json
built=$(date +%s)

work=$(mktemp -d /tmp/llamapro-bundle-wheel.XXXXXX)
node dist/cli/main.js bundle "$work/made"
before=$(node test/helpers/bundle-probe.mjs)

# Load time, same run, alternated: the build folder (LibTorch in site-packages) and the bundle (its copy).
load_ms() { local t0 t1; t0=$(date +%s%N); env "$@" node -e "import('./dist/index.js').then((m) => m.info())"; t1=$(date +%s%N); echo $(((t1 - t0) / 1000000)); }
build_times=() bundle_times=()
for _ in 1 2 3 4 5; do
  build_times+=("$(load_ms LLAMAPRO_ADDON_DIR=)")
  bundle_times+=("$(load_ms LLAMAPRO_ADDON_DIR="$work/made")")
done

mv "$dir/site-packages" "$dir/site-packages.moved-away"
trap 'mv "$dir/site-packages.moved-away" "$dir/site-packages"; rm -rf "$work"' EXIT
moved="$work/My App/resources/llamapro bundle"
mkdir -p "$(dirname "$moved")" && cp -a "$work/made" "$moved"

bad=0 files=0
for file in "$moved"/*; do
  case "$file" in *manifest.json) continue ;; esac
  files=$((files + 1))
  paths=$(readelf -d -W "$file" | grep -E '\((RUNPATH|RPATH)\)' || true)
  if [ "$(echo "$paths" | wc -l)" -ne 1 ] || ! grep -q '(RUNPATH) *Library runpath: \[\$ORIGIN\]$' <<< "$paths"; then echo "bad RUNPATH: $file: $paths"; bad=1; fi
  while IFS= read -r line; do
    [[ "$line" == *" => "* ]] || continue
    name=$(sed -E 's/^[[:space:]]*//; s/ => .*//' <<< "$line")
    path=$(sed -E 's/.* => //; s/ \(0x[0-9a-f]+\)$//' <<< "$line")  # the path may hold spaces
    if [ "$path" = "not found" ]; then echo "$file: $name not found"; bad=1
    elif [[ "$path" != "$moved/"* ]] && ! [[ "$name" =~ ^(ld-linux-x86-64\.so\.2|lib(c|m|pthread|dl|rt|resolv|util)\.so\.[0-9]+|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$ ]]; then
      echo "$file: $name from $path, outside the bundle"; bad=1
    fi
  done < <(LD_LIBRARY_PATH= ldd "$file")
done
[ "$bad" -eq 0 ] || fail "readelf/ldd (above)"
echo "check-bundle-wheel: $files files: RUNPATH \$ORIGIN only; ldd resolves inside the bundle or to glibc/libstdc++/libgcc_s"
[ ! -e "$dir/site-packages" ] || fail "the LibTorch folder is still there"

after=$(LLAMAPRO_ADDON_DIR="$moved" node test/helpers/bundle-probe.mjs) || fail "the moved bundle does not run"
node -e '
const [a, b, moved] = [JSON.parse(process.argv[1]), JSON.parse(process.argv[2]), process.argv[3]]
const keys = ["logitsSha256", "lossBefore", "stepLoss", "gradNorm", "lossAfter"]
const differ = keys.filter((k) => a[k] !== b[k])
if (differ.length) throw new Error("bundle and build folder differ in " + differ.join(", "))
const outside = b.torchLibraries.filter((p) => !p.startsWith(moved + "/"))
if (outside.length || b.torchLibraries.length < 2) throw new Error("LibTorch mapped from outside the bundle: " + outside)
if (!(Math.abs(b.lossFromLogits - b.lossBefore) < 1e-5 && b.lossAfter < b.lossBefore - 0.1)) throw new Error("wrong numbers: " + JSON.stringify(b))
console.log(`check-bundle-wheel: LibTorch ${b.libtorch} from the moved bundle (${b.torchLibraries.length} files mapped from it): loss ${b.lossBefore.toFixed(6)} -> ${b.lossAfter.toFixed(6)} after one AdamW step, bit for bit the build folder'"'"'s`)
' "$before" "$after" "$moved"

cp -al "$moved" "$work/damaged"
rm "$work/damaged"/libc10.so
set +e
damaged=$(LLAMAPRO_ADDON_DIR="$work/damaged" node dist/cli/main.js info 2>&1); code=$?
set -e
[ "$code" -eq 1 ] && grep -q 'libc10.so is missing (its manifest.json lists it' <<< "$damaged" || fail "damaged bundle: exit $code: $damaged"
echo "check-bundle-wheel: a bundle without libc10.so: exit 1, \"${damaged:0:160}...\""

echo "check-bundle-wheel: bundle $(du -sb "$moved" | cut -f1) bytes ($(du -sh "$moved" | cut -f1)), $files files; largest: $(ls -S "$moved" | head -n 4 | tr '\n' ' ')"
echo "check-bundle-wheel: load + info() ms, alternated: build folder ${build_times[*]}; bundle ${bundle_times[*]}"
echo "check-bundle-wheel: OK (build $((built - start))s, total $(($(date +%s) - start))s)"
