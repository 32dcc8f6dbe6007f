#!/usr/bin/env bash
# Lint of the C++ addon (native/), as CI runs it: every file formatted as .clang-format says, and none over 700
# lines (issue 31: files of one idea). Each failure names the file and the fix.
#
# usage: scripts/lint-native.sh
# env:   CLANG_FORMAT (default: clang-format). The layout was made with Debian's clang-format 14
#        (apt install clang-format, as scripts/setup-debian.sh does); other major versions may lay out a few
#        lines differently.
set -uo pipefail
cd "$(dirname "$0")/.."

readonly MAX_LINES=700
readonly FIX='clang-format -i native/*.cc native/*.h'
clang_format="${CLANG_FORMAT:-clang-format}"
failed=0

shopt -s nullglob
files=(native/*.cc native/*.h)
if [ ${#files[@]} -eq 0 ]; then
  echo "lint-native: no native/*.cc or native/*.h files under $(pwd)" >&2
  exit 1
fi

if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "lint-native: '$clang_format' was not found: install it (Debian: apt install clang-format, as" \
    "scripts/setup-debian.sh does) or point CLANG_FORMAT at one, then format with: $FIX" >&2
  failed=1
else
  unformatted=()
  for file in "${files[@]}"; do
    if ! "$clang_format" --dry-run --Werror "$file" >/dev/null 2>&1; then
      unformatted+=("$file")
    fi
  done
  if [ ${#unformatted[@]} -gt 0 ]; then
    echo "lint-native: not formatted as .clang-format says ($("$clang_format" --version | head -n 1)):" >&2
    for file in "${unformatted[@]}"; do echo "  $file" >&2; done
    echo "  see the differences: $clang_format --dry-run ${unformatted[*]}" >&2
    echo "  fix: $FIX" >&2
    failed=1
  fi
fi

for file in "${files[@]}"; do
  lines=$(wc -l <"$file")
  if [ "$lines" -gt "$MAX_LINES" ]; then
    echo "lint-native: $file has $lines lines, over the limit of $MAX_LINES: split it into files of one idea each" >&2
    failed=1
  fi
done

if [ "$failed" -eq 0 ]; then
  echo "lint-native: ${#files[@]} files in native/ formatted, none over $MAX_LINES lines"
fi
exit "$failed"
