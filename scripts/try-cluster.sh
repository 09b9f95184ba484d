#!/usr/bin/env bash
# kseal by hand on the real control plane the tests use (docs/test-cluster.md): etcd,
# kube-apiserver and kube-controller-manager on loopback, the manifests applied, the
# controller run on loopback ports (no kubelet runs pods here), a Secret sealed and
# unsealed, the key rotated and the file resealed, then the controller restarted with the
# Bitnami flags to unseal a Bitnami SealedSecret (the frozen vectors the real kubeseal
# made) and migrate it through the controller. Stops everything it started.
#
# KSEAL_BIN_DIR: where kseal, kseal-controller and kseal-test-cluster are (default: built
# into target/debug). KSEAL_TRY_PORT, KSEAL_TRY_METRICS_PORT: the controller's HTTP and
# metrics ports on 127.0.0.1 (default 28080, 28081). KSEAL_TRY_KEEP=1: keep it all
# running at the end until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${KSEAL_BIN_DIR:-}
if [ -z "$bin" ]; then
  cargo build --quiet --bin kseal --bin kseal-controller --bin kseal-test-cluster
  bin=target/debug
fi
bin=$(cd "$bin" && pwd)
port=${KSEAL_TRY_PORT:-28080}
metrics_port=${KSEAL_TRY_METRICS_PORT:-28081}
work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT
export KUBECONFIG=$work/kubeconfig KUBECACHEDIR=$work/cache
kseal() { "$bin/kseal" "$@"; }

step() { printf '\n== %s\n' "$*"; }
# Waits up to 60 s for a command to succeed.
until_ok() {
  for _ in $(seq 600); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "gave up waiting for: $*" >&2
  return 1
}
controller() {
  "$bin/kseal-controller" --kubeconfig "$KUBECONFIG" --identity local \
    --listen-addr "127.0.0.1:$port" --metrics-addr "127.0.0.1:$metrics_port" \
    "$@" >"$work/controller.log" 2>&1 &
  pids+=($!)
  controller_pid=$!
}

step "the control plane, on loopback (builds it the first time: about 15 minutes)"
"$bin/kseal-test-cluster" --kubeconfig "$KUBECONFIG" >"$work/cluster.log" 2>&1 &
pids+=($!)
until grep -q "ready at" "$work/cluster.log"; do
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
cat "$work/cluster.log"

step "install: the manifests (their Deployment makes no pod here), and the controller run by hand"
kubectl apply -k manifests/ >/dev/null
controller
until_ok kseal recipients
kseal status

step "seal a Secret with the cluster's key, apply it, read the Secret the controller wrote"
kubectl create namespace shop >/dev/null
kubectl create secret generic db -n shop --from-literal=password=s3cret \
  --dry-run=client -o yaml | kseal seal -w "$work/db.yaml"
kubectl apply -f "$work/db.yaml"
kubectl wait -n shop kss/db --for=condition=Ready --timeout=60s
test "$(kubectl get secret -n shop db -o jsonpath='{.data.password}' | base64 -d)" = s3cret
echo "shop/db holds the value sealed"

step "rotate the key (as the CronJob does; no exec into a pod), then reseal the file through the controller"
"$bin/kseal-controller" rotate-key --kubeconfig "$KUBECONFIG"
until_ok bash -c "'$bin/kseal' status -o json | grep -c '\"fingerprint\"' | grep -qx 2"
kseal reseal "$work/db.yaml"
kubectl apply -f "$work/db.yaml"
kubectl wait -n shop kss/db --for=condition=Ready --timeout=60s

step "restart with the Bitnami flags: import its keys from kube-system, unseal its SealedSecrets too"
kill "$controller_pid"
wait "$controller_pid" 2>/dev/null || true
kubectl apply -f "$(ls target/cluster/*/bitnami.com_sealedsecrets.yaml | head -1)" >/dev/null
kubectl wait --for=condition=established crd/sealedsecrets.bitnami.com >/dev/null
kubectl apply -f tests/vectors/bitnami/keys.yaml >/dev/null
kubectl apply -f tests/vectors/bitnami/db-credentials.yaml
controller --bitnami-keys-namespace kube-system --bitnami-drop-in
until_ok kubectl get secret -n shop db-credentials
kseal status

step "migrate the Bitnami file through the controller (the keys never leave the cluster)"
cp tests/vectors/bitnami/db-credentials.yaml "$work/"
kseal migrate --via-controller "$work/db-credentials.yaml"
kseal inspect "$work/db-credentials.yaml"

if [ -n "${KSEAL_TRY_KEEP:-}" ]; then
  step "running until Ctrl-C: export KUBECONFIG=$KUBECONFIG"
  wait "${pids[0]}"
fi
