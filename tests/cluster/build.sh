#!/usr/bin/env bash
# Builds kseal-cluster (etcd, kube-apiserver, kube-controller-manager and the kstatus
# checker, from the pinned go.mod beside this script) once per content of go.mod, go.sum
# and the Go sources: target/cluster/<key>/kseal-cluster. Prints the binary's path.
# A warm run finds it and builds nothing. Go's module and build caches live under
# target/go, so even a changed go.sum rebuilds only what changed. Concurrent callers
# (parallel test processes) wait for one build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
mkdir -p "$target/cluster"
target=$(cd "$target" && pwd)
key=$(cd "$here" && cat go.mod go.sum $(find cmd -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
bin=$target/cluster/$key/kseal-cluster
if [ ! -x "$bin" ]; then
  exec 9>"$target/cluster/build.lock"
  flock 9
  if [ ! -x "$bin" ]; then
    echo "kseal-cluster: building the control plane from tests/cluster/go.mod (once per go.sum; minutes on 2 cores)" >&2
    mkdir -p "$(dirname "$bin")"
    version=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")
    minor=$(echo "$version" | cut -d. -f2)
    (
      cd "$here"
      export GOFLAGS="-mod=readonly -modcacherw" GOCACHE="$target/go/cache" GOMODCACHE="$target/go/mod" CGO_ENABLED=0
      go build -trimpath -o "$bin.tmp" -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$version \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor" ./cmd/kseal-cluster
    ) >&2
    mv "$bin.tmp" "$bin"
  fi
fi
echo "$bin"
