#!/usr/bin/env python3
"""Render kseal's install manifests and check them, as CI does.

1. `kubectl kustomize manifests/` (the base) and `manifests/components/key-rotation`; the
   base with the custody components, against the chart's custody settings;
   `components/argocd-health` merged into a stand-in argocd-cm.
2. The Helm chart `manifests/helm/kseal`, rendered by Helm itself (`helm template`, the
   helm binary `tests/cluster/build.sh` builds from helm.sh/helm/v4, or $HELM), with
   default values and with every option on.
3. The chart's default render (templates + crds/) must equal the kustomize base, object
   by object; the all-options render must show each option.
4. Writes every render to OUT_DIR for kubernetes-validate and checkov (see .ci/run).

Usage: scripts/check-manifests.py OUT_DIR
"""

import subprocess
import sys
from pathlib import Path

import json
import os
import tempfile

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "manifests" / "helm" / "kseal"


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def key(obj):
    meta = obj.get("metadata", {})
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def kustomize(path):
    return subprocess.run(
        ["kubectl", "kustomize", str(path)], check=True, capture_output=True, text=True
    ).stdout


def helm():
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    built = subprocess.run(
        ["bash", str(ROOT / "tests" / "cluster" / "build.sh")],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    return str(Path(built) / "helm")


def helm_render(values):
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(values or {}, f)
        f.flush()
        rendered = subprocess.run(
            [helm(), "template", "kseal", str(CHART), "--namespace", "kseal-system", "-f", f.name],
            check=True, capture_output=True, text=True,
        ).stdout
    out = docs(rendered)
    for crd in sorted((CHART / "crds").glob("*.yaml")):
        out.extend(docs(crd.read_text()))
    return out


def dump(path, objs):
    path.write_text(yaml.safe_dump_all(objs, sort_keys=True))


def pod_of(objs, kind="Deployment"):
    for o in objs:
        if o["kind"] == kind:
            spec = o["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else o["spec"]
            return spec["template"]["spec"]
    return {"containers": [{}]}


def env_of(objs, kind="Deployment"):
    container = pod_of(objs, kind)["containers"][0]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def custody_of(objs, kind):
    """What a custody install gives the controller's (or rotate-key's) container: its
    KSEAL_CUSTODY* environment, and its mounts with the volumes behind them (the PIN's
    Secret is named by the user, in either)."""
    pod = pod_of(objs, kind)
    container = pod["containers"][0]
    volumes = {}
    for v in pod.get("volumes", []):
        v = yaml.safe_load(yaml.safe_dump(v))
        v.get("secret", {}).pop("secretName", None)
        volumes[v.pop("name")] = v
    return {
        "env": {k: v for k, v in env_of(objs, kind).items() if k.startswith("KSEAL_CUSTODY")},
        "mounts": {
            m["mountPath"]: (m["name"], m.get("readOnly", False), volumes.get(m["name"]))
            for m in container.get("volumeMounts", [])
        },
    }


def base_with_component(*names):
    """The kustomize base with manifests/components/NAME..., in that order, through a
    kustomization in a directory under target/ (kustomize refuses a root inside one it
    loads)."""
    (ROOT / "target").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        manifests = os.path.relpath(ROOT / "manifests", tmp)
        (Path(tmp) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{manifests}]\ncomponents: [{', '.join(f'{manifests}/components/{n}' for n in names)}]\n"
        )
        return docs(kustomize(tmp))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    failures = []

    base = docs(kustomize(ROOT / "manifests"))
    rotation = docs(kustomize(ROOT / "manifests" / "components" / "key-rotation"))
    # The Bitnami component applies to the base.
    with_bitnami = base_with_component("bitnami")
    # The Argo CD health check component merges one key into the argocd-cm of the
    # kustomization that installs Argo CD: rendered over a stand-in argocd-cm, it must
    # hold health.lua exactly and keep the ConfigMap's other keys.
    argocd_health = ROOT / "manifests" / "components" / "argocd-health"
    with tempfile.TemporaryDirectory(dir=ROOT / "target") as tmp:
        (Path(tmp) / "argocd-cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n"
            "data:\n  url: https://argocd.example.com\n"
        )
        (Path(tmp) / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "namespace: argocd\nresources: [argocd-cm.yaml]\n"
            f"components: [{os.path.relpath(argocd_health, tmp)}]\n"
        )
        argocd = docs(kustomize(tmp))
    argocd_key = "resource.customizations.health.kseal.dev_SealedSecret"
    if [o["metadata"]["name"] for o in argocd] != ["argocd-cm"] or argocd[0]["data"] != {
        "url": "https://argocd.example.com",
        argocd_key: (argocd_health / "health.lua").read_text(),
    }:
        failures.append("components/argocd-health does not merge health.lua into argocd-cm")
    # Monitoring: the component (over the base) and the chart carry the same rules and
    # dashboard, and the chart's files are the component's.
    monitoring = ROOT / "manifests" / "components" / "monitoring"
    chart_files = ROOT / "manifests" / "helm" / "kseal" / "files"
    for name in ["kseal.rules.yaml", "dashboard.json"]:
        if (monitoring / name).read_bytes() != (chart_files / name).read_bytes():
            failures.append(f"manifests/helm/kseal/files/{name} differs from components/monitoring/{name}")
    rules = yaml.safe_load((monitoring / "kseal.rules.yaml").read_text())
    dashboard = (monitoring / "dashboard.json").read_text()
    json.loads(dashboard)
    with_monitoring = base_with_component("monitoring")
    default = helm_render(None)
    everything = helm_render(
        {
            "replicas": 3,
            "watchNamespaces": ["shop", "web"],
            "keyRotationPeriod": "7d",
            "keyCutoff": "2026-01-01T00:00:00Z",
            "atRest": {"policy": "enforce", "interval": "5m"},
            "image": {"digest": "sha256:" + "0" * 64},
            "keyRotationCronJob": {"enabled": True},
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "resources": {"requests": {"cpu": "100m", "memory": "96Mi"}, "limits": {"cpu": "2", "memory": "256Mi"}},
            "bitnami": {"keysNamespace": "kube-system", "dropIn": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
            "grafanaDashboard": {"enabled": True},
        }
    )

    # Key custody, each custodian: the environment, the socket's emptyDir and the plugin
    # as a sidecar (a native one in the rotation job), the token's PIN from a Secret, the
    # rotation job's cluster-identity rule.
    secure = {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
        "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }
    kms_plugin = {
        "name": "kms-plugin", "image": "registry.example/kms-plugin@sha256:" + "1" * 64,
        "imagePullPolicy": "Always", "args": ["--listen=/var/run/kseal-kms/kms.sock"],
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        "securityContext": secure,
        "livenessProbe": {"exec": {"command": ["/bin/true"]}},
        "readinessProbe": {"exec": {"command": ["/bin/true"]}},
    }
    custody_kms = helm_render(
        {
            "image": {"digest": "sha256:" + "0" * 64},
            "keyRotationCronJob": {"enabled": True},
            "custody": {"kind": "kms-v2", "kms": {"sidecar": kms_plugin}},
        }
    )
    custody_pkcs11 = helm_render(
        {
            "image": {"digest": "sha256:" + "0" * 64},
            "custody": {
                "kind": "pkcs11",
                "pkcs11": {"module": "/hsm/lib/libhsm.so", "token": "kseal", "key": "kek-1", "pinSecret": {"name": "hsm-pin"}},
                "extraVolumes": [{"name": "hsm", "configMap": {"name": "hsm-client"}}],
                "extraVolumeMounts": [{"name": "hsm", "mountPath": "/hsm/etc", "readOnly": True}],
            },
        }
    )
    for name, objs, want in [("kms-v2", custody_kms, "KSEAL_CUSTODY_KMS_SOCKET"), ("pkcs11", custody_pkcs11, "KSEAL_CUSTODY_PKCS11_TOKEN")]:
        if env_of(objs).get("KSEAL_CUSTODY") != name or want not in env_of(objs):
            failures.append(f"the chart's custody {name} settings are not in the controller's environment")
    if "KSEAL_CUSTODY" not in {
        e["name"]
        for o in custody_kms if o["kind"] == "CronJob"
        for e in o["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }:
        failures.append("the chart's rotation job does not get the custody settings")

    # The kustomize components give the same settings as the chart, to the controller and
    # to the rotation job; the PKCS#11 module, token and key labels are the site's own (a
    # patch of the user's, as docs/operations.md shows), and the chart's extra volumes.
    custody_kustomize = {
        "kms-v2": base_with_component("key-rotation", "custody-kms"),
        "pkcs11": base_with_component("key-rotation", "custody-pkcs11"),
    }
    site = {f"KSEAL_CUSTODY_PKCS11_{k}" for k in ("MODULE", "TOKEN", "KEY")}
    for name, chart in [("kms-v2", custody_kms), ("pkcs11", custody_pkcs11)]:
        component = "custody-kms" if name == "kms-v2" else "custody-pkcs11"
        want = custody_of(chart, "Deployment")
        want["env"] = {k: v for k, v in want["env"].items() if k not in site}
        want["mounts"] = {p: m for p, m in want["mounts"].items() if not p.startswith("/hsm/")}
        for kind in ["Deployment", "CronJob"]:
            got = custody_of(custody_kustomize[name], kind)
            if got != want:
                failures.append(f"components/{component} gives the {kind} {got}, the chart {want}")

    by_key = {key(o): o for o in base}
    helm_by_key = {key(o): o for o in default}
    if set(by_key) != set(helm_by_key):
        failures.append(
            "chart defaults and kustomize base hold different objects: only in the base "
            f"{sorted(set(by_key) - set(helm_by_key))}, only in the chart "
            f"{sorted(set(helm_by_key) - set(by_key))}"
        )
    for k in sorted(set(by_key) & set(helm_by_key)):
        if by_key[k] != helm_by_key[k]:
            failures.append(f"{k}: the chart's default render differs from the kustomize base")

    env = env_of(everything)
    expect = {
        "KSEAL_WATCH_NAMESPACES": "shop,web",
        "KSEAL_KEY_ROTATION_PERIOD": "7d",
        "KSEAL_KEY_CUTOFF": "2026-01-01T00:00:00Z",
        "KSEAL_REQUIRE_ENCRYPTION_AT_REST": "enforce",
        "KSEAL_AT_REST_INTERVAL": "5m",
        "KSEAL_BITNAMI_KEYS_NAMESPACE": "kube-system",
        "KSEAL_BITNAMI_DROP_IN": "true",
    }
    for name, value in expect.items():
        if env.get(name) != value:
            failures.append(f"values: {name} is {env.get(name)!r}, expected {value!r}")
    kinds = {o["kind"] for o in everything}
    for kind in ["CronJob", "ServiceMonitor", "PrometheusRule"]:
        if kind not in kinds:
            failures.append(f"values: enabling it did not render a {kind}")
    for source, objs in [("components/monitoring", with_monitoring), ("the chart", everything)]:
        rule = [o for o in objs if o["kind"] == "PrometheusRule"]
        board = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kseal-dashboard"]
        if len(rule) != 1 or rule[0]["spec"] != rules or rule[0]["metadata"]["namespace"] != "kseal-system":
            failures.append(f"{source}: its PrometheusRule does not hold kseal.rules.yaml's groups in kseal-system")
        if len(board) != 1 or board[0]["data"]["kseal.json"].rstrip() != dashboard.rstrip() \
                or board[0]["metadata"]["labels"].get("grafana_dashboard") != "1":
            failures.append(f"{source}: its dashboard ConfigMap does not hold dashboard.json with grafana_dashboard: \"1\"")
    deployment = next(o for o in everything if o["kind"] == "Deployment")
    if deployment["spec"]["replicas"] != 3:
        failures.append("values: replicas not applied")
    if not deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith("@sha256:" + "0" * 64):
        failures.append("values: image.digest not applied")
    helm_cron = next(o for o in everything if o["kind"] == "CronJob")
    kustomize_cron = next(o for o in rotation if o["kind"] == "CronJob")
    helm_cron_spec = yaml.safe_load(yaml.safe_dump(helm_cron["spec"]))
    helm_cron_spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"] = kustomize_cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"]
    if helm_cron_spec != kustomize_cron["spec"]:
        failures.append("the chart's CronJob differs from components/key-rotation")
    # The rotation job's own ServiceAccount, Role and RoleBinding: the same in both.
    for kind in ["ServiceAccount", "Role", "RoleBinding"]:
        pick = lambda objs: [
            {k: v for k, v in o.items() if k in ("rules", "roleRef", "subjects")} | {"name": o["metadata"]["name"]}
            for o in objs
            if o["kind"] == kind and o["metadata"]["name"] == "kseal-rotate-key"
        ]
        if not pick(rotation) or pick(everything) != pick(rotation):
            failures.append(f"the chart's rotate-key {kind} differs from components/key-rotation")

    # The Bitnami drop-in: the same environment and RBAC from the component and the chart.
    bitnami_env = {k: v for k, v in env_of(with_bitnami).items() if "BITNAMI" in k}
    if bitnami_env != {k: v for k, v in env.items() if "BITNAMI" in k}:
        failures.append(f"the chart's Bitnami settings differ from components/bitnami: {bitnami_env}")
    for kind in ["ClusterRole", "ClusterRoleBinding"]:
        pick = lambda objs: [
            {k: v for k, v in o.items() if k in ("rules", "roleRef", "subjects")}
            for o in objs
            if o["kind"] == kind and o["metadata"]["name"] == "kseal-controller-bitnami"
        ]
        if not pick(with_bitnami) or pick(everything) != pick(with_bitnami):
            failures.append(f"the chart's Bitnami {kind} differs from components/bitnami")

    dump(out / "kustomize-base.yaml", base)
    dump(out / "kustomize-bitnami.yaml", with_bitnami)
    dump(out / "kustomize-key-rotation.yaml", rotation)
    dump(out / "kustomize-custody-kms.yaml", custody_kustomize["kms-v2"])
    dump(out / "kustomize-custody-pkcs11.yaml", custody_kustomize["pkcs11"])
    dump(out / "helm-default.yaml", default)
    # ServiceMonitor is prometheus-operator's CRD, not a Kubernetes schema: validated apart.
    dump(out / "helm-all-options.yaml", [o for o in everything if o["kind"] not in ("ServiceMonitor", "PrometheusRule")])
    dump(out / "helm-custody-kms.yaml", custody_kms)
    dump(out / "helm-custody-pkcs11.yaml", custody_pkcs11)
    dump(out / "helm-servicemonitor.yaml", [o for o in everything if o["kind"] == "ServiceMonitor"])
    dump(out / "helm-prometheusrule.yaml", [o for o in everything if o["kind"] == "PrometheusRule"])

    print(f"kustomize base: {len(base)} objects; key-rotation component: {len(rotation)}; argocd-health merges {argocd_key}")
    version = subprocess.run([helm(), "version", "--short"], check=True, capture_output=True, text=True).stdout.strip()
    print(f"helm {version}: defaults {len(default)} objects, all options {len(everything)}")
    if failures:
        for f in failures:
            print(f"FAIL {f}", file=sys.stderr)
        sys.exit(1)
    print("the chart's defaults render the kustomize base exactly")


if __name__ == "__main__":
    main()
