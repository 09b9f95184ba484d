#!/usr/bin/env bash
# The security review's hostile inputs (an 800-stanza sealed value, a 1 MB YAML body with
# 62 aliases) sent to a real controller over and over: how fast each is refused, /healthz
# latency meanwhile, and the controller's peak RSS. Figures on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p kseal-controller --bench hostile
