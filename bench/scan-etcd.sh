#!/usr/bin/env bash
# Benchmark: `kseal at-rest scan-etcd` over N Secrets (default 100,000) beside
# `etcdctl get <prefix> --prefix` reading the same keys and values, in the same run,
# against one real etcd (Debian's etcd-server and etcd-client).
#
#   bash bench/scan-etcd.sh [COUNT] [RUNS]
#
# Prints the median wall time of each over RUNS alternating runs, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-100000}
runs=${2:-5}

for tool in etcd etcdctl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool missing (apt-get install etcd-server etcd-client)" >&2; exit 1; }
done
cargo build --release --locked -q -p kseal-cli --bin kseal -p kseal-tests --bin fill-etcd
kseal=target/release/kseal
fill=target/release/fill-etcd

dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
endpoint="http://127.0.0.1:$port"
etcd --name bench --data-dir "$dir/data" \
  --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
  --listen-peer-urls "http://127.0.0.1:$((port + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
  --initial-cluster "bench=http://127.0.0.1:$((port + 1))" \
  --quota-backend-bytes 8589934592 --log-level error >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
# Keep the script's own exit status: etcd's (killed: 143) is not the benchmark's.
trap 'status=$?; kill $etcd_pid 2>/dev/null; wait $etcd_pid 2>/dev/null; rm -rf "$dir"; exit $status' EXIT
echo "endpoint $endpoint"
for _ in $(seq 100); do
  ETCDCTL_API=3 etcdctl --endpoints "$endpoint" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done

"$fill" --endpoint "$endpoint" --count "$count"
bytes=$(ETCDCTL_API=3 etcdctl --endpoints "$endpoint" get /registry/secrets/ --prefix --print-value-only | wc -c)
echo "etcd holds $count Secrets, $((bytes / 1024 / 1024)) MiB of values"

# Wall time of one command, in milliseconds.
ms() {
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

etcdctl_times=()
kseal_times=()
# One warm-up of each, then alternate so both see the same cache state.
ms env ETCDCTL_API=3 etcdctl --endpoints "$endpoint" get /registry/secrets/ --prefix >/dev/null
set +e
ms "$kseal" at-rest scan-etcd --endpoints "$endpoint" >/dev/null
set -e
for _ in $(seq "$runs"); do
  etcdctl_times+=("$(ms env ETCDCTL_API=3 etcdctl --endpoints "$endpoint" get /registry/secrets/ --prefix)")
  set +e # scan-etcd exits 3: the corpus holds plaintext Secrets on purpose
  kseal_times+=("$(ms "$kseal" at-rest scan-etcd --endpoints "$endpoint")")
  set -e
done
e=$(printf '%s\n' "${etcdctl_times[@]}" | median)
k=$(printf '%s\n' "${kseal_times[@]}" | median)
echo "etcdctl get --prefix:       median ${e} ms  (runs: ${etcdctl_times[*]})"
echo "kseal at-rest scan-etcd:    median ${k} ms  (runs: ${kseal_times[*]})"
awk -v k="$k" -v e="$e" 'BEGIN { printf "ratio kseal/etcdctl: %.2fx (target <= 1.5x)\n", k / e }'
"$kseal" at-rest scan-etcd --endpoints "$endpoint" | head -8 || true
