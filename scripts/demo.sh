#!/usr/bin/env bash
# kseal end to end with what the repository ships: seal the example Secret to the demo
# cluster key, inspect and validate it offline, then recover it twice: with
# `kseal unseal` and with the stock `age` tool (the documented disaster-recovery path).
set -euo pipefail
cd "$(dirname "$0")/.."

# KSEAL_BIN: a kseal binary already built (CI passes the one its tests built).
kseal=${KSEAL_BIN:-}
if [ -z "$kseal" ]; then
  cargo build --quiet -p kseal-cli
  kseal=target/debug/kseal
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }

step "kseal seal: examples/secret.yaml -> sealed.yaml (to the demo cluster's public key)"
$kseal seal -f examples/secret.yaml --recipients-file examples/demo-cluster.recipients -w "$work/sealed.yaml"
cat "$work/sealed.yaml"

step "kseal inspect (no key needed)"
$kseal inspect "$work/sealed.yaml"

step "kseal validate against the cluster's recipients (what CI runs)"
$kseal validate "$work/sealed.yaml" --recipients-file examples/demo-cluster.recipients

step "kseal unseal with the demo cluster key (disaster recovery)"
$kseal unseal --identity examples/demo-cluster-key.txt -f "$work/sealed.yaml"

step "the same value with stock age and shell tools (docs/recovery.md)"
if ! command -v age >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "(installing Debian's age)"
    apt-get update -qq && apt-get install -y -qq age >/dev/null
  else
    echo "age is not installed: run 'apt-get install age' for this step" >&2
    exit 1
  fi
fi
# The command exactly as docs/recovery.md gives it (between its markers, without the fence).
recover=$(sed -n '/recovery-command: begin/,/recovery-command: end/p' docs/recovery.md | sed '1,2d' | head -n -2)
ITEM=password FILE="$work/sealed.yaml" KEY=examples/demo-cluster-key.txt bash -c "$recover"
echo
