#!/usr/bin/env bash
# Packages the static kseal binary as the krew archive (kubectl-kseal) and
# writes the krew manifest with the archive's sha256.
#
#   KSEAL_RELEASE_URL=https://…/releases/download/vX.Y.Z bash scripts/krew-package.sh DIST_DIR
#
# DIST_DIR holds kseal, from build-dist.sh. KSEAL_RELEASE_URL is where the archive will
# be published; without it (CI, a local build) the manifest points at the archive on
# this machine (file://), which `kubectl krew install --manifest … --archive …` accepts
# for a trial, and nothing else should. Only linux/amd64 is built here (the static gnu
# target); other platforms need their own builds and entries.
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
release_url=${KSEAL_RELEASE_URL:-file://$(realpath "$dist")}
sed -e "s/@VERSION@/$version/g" -e "s/@SHA256@/$sha/" -e "s|@RELEASE_URL@|${release_url%/}|" \
  packaging/krew/kseal.yaml > "$dist/kseal.krew.yaml"
grep -q '@' "$dist/kseal.krew.yaml" && { echo "krew manifest: a placeholder is left" >&2; exit 1; }
# The plugin runs as kubectl kseal (it names itself so in --help).
"$work/kubectl-kseal" --help | grep -q "Usage: kubectl kseal"
[ -n "${KSEAL_RELEASE_URL:-}" ] || echo "krew: no KSEAL_RELEASE_URL, so the manifest points at $release_url (a local trial only)"
echo "krew: $archive ($(stat -c %s "$archive") bytes, sha256 $sha), manifest $dist/kseal.krew.yaml"
