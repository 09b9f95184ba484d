#!/usr/bin/env bash
# Packages the static kseal binary as the krew archive (kubectl-kseal) and
# writes the krew manifest with the archive's sha256.
#
#   bash scripts/krew-package.sh DIST_DIR    (DIST_DIR holds kseal, from build-dist.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
dist=${1:-target/dist-static}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$dist/kseal" "$work/kubectl-kseal"
archive="$dist/kubectl-kseal-linux-amd64.tar.gz"
tar -C "$work" --owner=0 --group=0 --mtime='2026-01-01' -czf "$archive" kubectl-kseal
sha=$(sha256sum "$archive" | cut -d' ' -f1)
sed -e "s/@VERSION@/$version/g" -e "s/@SHA256@/$sha/" packaging/krew/kseal.yaml > "$dist/kseal.krew.yaml"
# The plugin runs as kubectl kseal (it names itself so in --help).
"$work/kubectl-kseal" --help | grep -q "Usage: kubectl kseal"
echo "krew: $archive ($(stat -c %s "$archive") bytes, sha256 $sha), manifest $dist/kseal.krew.yaml"
