#!/usr/bin/env bash
# The flake census: runs the whole test suite N times from one build, with no retries,
# and prints each test that failed at least once, with how many times and its first
# failure message. With --stress, a CPU hog (Debian's stress-ng) holds one of the cores
# for every run, since CI machines are loaded and timing assumptions break there first.
#
#   bash scripts/flake-census.sh 10            # idle
#   bash scripts/flake-census.sh 10 --stress   # one core held
#
# Needs what `.ci/run` installs (cargo-nextest in target/tools, Debian's age, the Go
# components, the pre-commit venv): run `.ci/run` once first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:?usage: flake-census.sh N [--stress]}
stress=${2:-}
export PATH="$PWD/target/tools/bin:$PATH"
# As .ci/run builds: its build is reused, not redone.
export CARGO_INCREMENTAL=0
out=target/flake-census
rm -rf "$out" && mkdir -p "$out"

hog=""
if [ "$stress" = "--stress" ]; then
  command -v stress-ng >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng >/dev/null
  }
  stress-ng --cpu 1 --cpu-load 100 --quiet &
  hog=$!
  trap 'kill "$hog" 2>/dev/null || true' EXIT
  echo "stress-ng holds one core (pid $hog)"
fi

# The build .ci/run makes (clippy-driver as the workspace's rustc): reused, not redone.
linted() {
  RUSTC_WORKSPACE_WRAPPER="$(rustc --print sysroot)/bin/clippy-driver" \
    CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__" "$@"
}
linted cargo nextest run --workspace --locked --no-run >/dev/null
for i in $(seq 1 "$runs"); do
  started=$SECONDS
  status=0
  linted cargo nextest run --workspace --locked --profile census >"$out/run-$i.log" 2>&1 || status=$?
  cp target/nextest/census/junit.xml "$out/junit-$i.xml"
  echo "run $i of $runs: exit $status, $((SECONDS - started)) s"
done

python3 - "$out" "$runs" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
out, runs = sys.argv[1], int(sys.argv[2])
failures, first, total = {}, {}, 0
for path in sorted(glob.glob(f"{out}/junit-*.xml")):
    for case in ET.parse(path).getroot().iter("testcase"):
        total += 1
        failed = case.find("failure")
        if failed is None:
            failed = case.find("error")
        if failed is None:
            continue
        name = f"{case.get('classname')} {case.get('name')}"
        failures[name] = failures.get(name, 0) + 1
        if name not in first:
            text = (failed.get("message") or "") + "\n" + (failed.text or "")
            lines = [l for l in text.splitlines() if "panicked" in l or "assert" in l]
            first[name] = (lines[0] if lines else text.strip().splitlines()[0] if text.strip() else "")[:300]
print(f"{runs} runs, {total} test executions")
if not failures:
    print("no test failed")
for name, count in sorted(failures.items(), key=lambda kv: -kv[1]):
    print(f"{count}/{runs}  {name}\n        {first[name]}")
sys.exit(1 if failures else 0)
PY
