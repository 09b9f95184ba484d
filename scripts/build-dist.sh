#!/usr/bin/env bash
# Builds the release binaries the image ships: kseal-controller and kseal, `dist` profile,
# gnu target linked statically. Checks that each runs and has no dynamic dependencies,
# prints their sizes, and copies them to OUT_DIR (default target/dist-static).
#
#   bash scripts/build-dist.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/dist-static}
target=x86_64-unknown-linux-gnu

RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --locked --profile dist --target "$target" \
  -p kseal-controller -p kseal-cli --bin kseal-controller --bin kseal

mkdir -p "$out"
for bin in kseal-controller kseal; do
  path="target/$target/dist/$bin"
  "$path" --version
  # A static binary: ldd says so, and there is no ELF interpreter.
  if ldd "$path" 2>&1 | grep -q "=>"; then
    echo "build-dist: $bin has dynamic dependencies:" >&2
    ldd "$path" >&2
    exit 1
  fi
  if readelf -l "$path" | grep -q "Requesting program interpreter"; then
    echo "build-dist: $bin has an ELF interpreter: not static" >&2
    exit 1
  fi
  echo "$bin: $(ldd "$path" 2>&1 | head -1 | sed 's/^[[:space:]]*//'); $(stat -c %s "$path") bytes"
  cp "$path" "$out/"
done
