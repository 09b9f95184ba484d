#!/usr/bin/env bash
# Builds the real components kseal's tests run, from the pinned go.mod beside this
# script, in one `go build` (one module graph, one compile of what they share):
#   kseal-cluster  etcd, kube-apiserver, kube-controller-manager, the kstatus checker
#                  and a KMS v2 plugin (cmd/kseal-cluster)
#   helm           Helm v4 (the go.mod's `tool helm.sh/helm/v4/cmd/helm`)
#   sealed-secrets-controller, kubeseal
#                  Bitnami sealed-secrets, the peer kseal migrates from and is measured
#                  beside, from bitnami/go.mod (its own module: it pins client-go 0.35,
#                  which one module graph with Kubernetes 1.37 would raise)
#   age, age-keygen
#                  Go age v1.3, the reference age with post-quantum recipients, from
#                  age/go.mod (its own module too)
#   source-controller, kustomize-controller, flux-crds/
#                  Flux's two controllers a GitRepository and a Kustomization need, and
#                  their CRDs, from flux/go.mod (its own module: Flux pins client-go 0.36)
#   argocd/bitnami.com/SealedSecret/
#                  the health check Argo CD ships for Bitnami's SealedSecret, with Argo
#                  CD's own test cases for it, from the argo-cd module (pinned below by
#                  version and hash; nothing of it is compiled)
# into target/cluster/<key>/, where the key hashes this script, go.mod, go.sum and the
# Go sources: a
# warm run finds them and builds nothing. Go's module and build caches live under
# target/go, so a changed go.sum rebuilds only what changed. Concurrent callers
# (parallel test processes) wait for one build. Prints the directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/../../target}
mkdir -p "$target/cluster"
target=$(cd "$target" && pwd)
key=$(cd "$here" && cat build.sh go.mod go.sum bitnami/go.mod bitnami/go.sum age/go.mod age/go.sum flux/go.mod flux/go.sum $(find cmd internal -name '*.go' | LC_ALL=C sort) | sha256sum | cut -c1-16)
out=$target/cluster/$key
built() { [ -x "$out/kseal-cluster" ] && [ -x "$out/helm" ] && [ -x "$out/kubeseal" ] && [ -x "$out/sealed-secrets-controller" ] && [ -x "$out/age" ] && [ -x "$out/age-keygen" ] && [ -x "$out/kustomize-controller" ] && [ -f "$out/argocd/bitnami.com/SealedSecret/health.lua" ]; }
# Argo CD's module: its go.mod needs no newer Go than this one, and its zip's hash is the
# one the checksum database records for the version.
argocd_version=v3.5.8
argocd_hash=h1:RJYooz62wX0S1A7LpgwQ2unap5doaWxvtrpyfh81P3c=
if ! built; then
  exec 9>"$target/cluster/build.lock"
  flock 9
  if ! built; then
    echo "tests/cluster: building kube-apiserver, kube-controller-manager, etcd and helm from go.mod (once per go.sum; minutes on 2 cores)" >&2
    version=$(sed -n 's/^\tk8s.io\/kubernetes \(v[0-9.]*\)$/\1/p' "$here/go.mod")
    helm_version=$(sed -n 's/^\thelm.sh\/helm\/v4 \(v[0-9.]*\).*$/\1/p' "$here/go.mod")
    minor=$(echo "$version" | cut -d. -f2)
    tmp=$out.tmp
    rm -rf "$tmp" && mkdir -p "$tmp"
    (
      cd "$here"
      export GOFLAGS="-mod=readonly -modcacherw" GOCACHE="$target/go/cache" GOMODCACHE="$target/go/mod" CGO_ENABLED=0
      go build -trimpath -o "$tmp/" -ldflags "-s -w \
        -X k8s.io/component-base/version.gitVersion=$version \
        -X k8s.io/component-base/version.gitMajor=1 \
        -X k8s.io/component-base/version.gitMinor=$minor \
        -X helm.sh/helm/v4/internal/version.version=$helm_version" \
        ./cmd/kseal-cluster helm.sh/helm/v4/cmd/helm
      cd bitnami
      bitnami_version=$(sed -n 's/^\tgithub.com\/bitnami-labs\/sealed-secrets \(v[0-9.]*\).*$/\1/p' go.mod)
      go build -trimpath -o "$tmp/kubeseal" -ldflags "-s -w -X main.VERSION=$bitnami_version" \
        github.com/bitnami-labs/sealed-secrets/cmd/kubeseal
      go build -trimpath -o "$tmp/sealed-secrets-controller" -ldflags "-s -w -X main.VERSION=$bitnami_version" \
        github.com/bitnami-labs/sealed-secrets/cmd/controller
      cp "$GOMODCACHE/github.com/bitnami-labs/sealed-secrets@$bitnami_version/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml" "$tmp/"
      cd ../age
      age_version=$(sed -n 's/^\tfilippo.io\/age \(v[0-9.]*\).*$/\1/p' go.mod)
      go build -trimpath -o "$tmp/" -ldflags "-s -w -X main.Version=$age_version" \
        filippo.io/age/cmd/age filippo.io/age/cmd/age-keygen
      cd ../flux
      mkdir -p "$tmp/flux-crds"
      for controller in source-controller kustomize-controller; do
        version=$(sed -n "s/^\tgithub.com\/fluxcd\/$controller \(v[0-9.]*\).*$/\1/p" go.mod)
        go build -trimpath -o "$tmp/$controller" -ldflags "-s -w" "github.com/fluxcd/$controller"
        cp "$GOMODCACHE/github.com/fluxcd/$controller@$version"/config/crd/bases/*.yaml "$tmp/flux-crds/"
      done
      cd ..
      argocd=$(go mod download -json "github.com/argoproj/argo-cd/v3@$argocd_version")
      field() { echo "$argocd" | sed -n "s/^\t\"$1\": \"\(.*\)\",*$/\1/p"; }
      if [ "$(field Sum)" != "$argocd_hash" ]; then
        echo "github.com/argoproj/argo-cd/v3@$argocd_version: hash $(field Sum), expected $argocd_hash" >&2
        exit 1
      fi
      mkdir -p "$tmp/argocd/bitnami.com"
      cp -r "$(field Dir)/resource_customizations/bitnami.com/SealedSecret" "$tmp/argocd/bitnami.com/"
    ) >&2
    rm -rf "$out" && mv "$tmp" "$out"
  fi
fi
echo "$out"
