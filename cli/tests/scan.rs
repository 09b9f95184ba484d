//! `kseal scan` against what kubectl, kustomize and Helm actually deploy: every shape of a
//! plaintext Secret the third security review found the guard missed (N3), and those it
//! already caught, each checked first with the real tool (`kubectl kustomize`, a server
//! dry run of `kubectl apply` on the real control plane, `helm template`) to hold the
//! plaintext, then scanned: the guard must fail, name the file, and print no value.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;
use kseal_tests::cluster::{ControlPlane, Options};

/// How the real tool deploys a shape.
enum Deploy {
    /// `kubectl kustomize DIR`.
    Kustomize,
    /// `kubectl apply --dry-run=server -f FILE` on the real control plane.
    Apply(&'static str),
    /// `helm template DIR`.
    Helm,
}

struct Shape {
    name: &'static str,
    /// Files of the directory, as bytes.
    files: Vec<(&'static str, Vec<u8>)>,
    deploy: Deploy,
    /// The file the guard must name.
    names: &'static str,
}

fn secret(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: {value}\n"
    )
}

fn resources(file: &str) -> Vec<u8> {
    format!("resources:\n- {file}\n").into_bytes()
}

/// The value each shape hides, distinct per shape so no output can mix them up.
fn plain(shape: &str) -> String {
    format!("PLAIN-{shape}-hunter2")
}

fn shapes() -> Vec<Shape> {
    let utf16 = {
        let mut bytes = vec![0xff, 0xfe];
        for unit in secret(&plain("utf16")).encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        bytes
    };
    let mut latin1 = b"# caf\xe9\n".to_vec();
    latin1.extend(secret(&plain("latin1-byte-in-a-comment")).into_bytes());
    let mut bom_later =
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n\xef\xbb\xbf".to_vec();
    bom_later.extend(secret(&plain("bom-on-a-later-document")).into_bytes());
    vec![
        // The shapes the review found missed.
        Shape {
            name: "helm-template-source",
            files: vec![
                ("Chart.yaml", b"apiVersion: v2\nname: shop\nversion: 0.1.0\n".to_vec()),
                (
                    "templates/secret.yaml",
                    format!(
                        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{{{ .Release.Name }}}}-db\n{{{{- if .Values.labels }}}}\n  labels:\n    app: shop\n{{{{- end }}}}\nstringData:\n  password: {}\n  user: {{{{ .Values.user | quote }}}}\n",
                        plain("helm-template-source")
                    )
                    .into_bytes(),
                ),
            ],
            deploy: Deploy::Helm,
            names: "templates/secret.yaml",
        },
        Shape {
            name: "bom-on-a-later-document",
            files: vec![("s.yaml", bom_later), ("kustomization.yaml", resources("s.yaml"))],
            deploy: Deploy::Kustomize,
            names: "s.yaml",
        },
        Shape {
            name: "duplicate-key",
            files: vec![(
                "s.yaml",
                format!("{}metadata:\n  name: s2\n", secret(&plain("duplicate-key"))).into_bytes(),
            )],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "latin1-byte-in-a-comment",
            files: vec![("s.yaml", latin1)],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "secret-then-a-duplicate-key",
            files: vec![(
                "s.yaml",
                format!(
                    "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata: {{a: b}}\ndata: {{a: c}}\n",
                    secret(&plain("secret-then-a-duplicate-key"))
                )
                .into_bytes(),
            )],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "utf16",
            files: vec![("s.yaml", utf16), ("kustomization.yaml", resources("s.yaml"))],
            deploy: Deploy::Kustomize,
            names: "s.yaml",
        },
        Shape {
            name: "hidden-file",
            files: vec![
                (".x.yaml", secret(&plain("hidden-file")).into_bytes()),
                ("kustomization.yaml", resources(".x.yaml")),
            ],
            deploy: Deploy::Kustomize,
            names: ".x.yaml",
        },
        Shape {
            name: "hidden-directory",
            files: vec![
                (".k8s/s.yaml", secret(&plain("hidden-directory")).into_bytes()),
                (".k8s/kustomization.yaml", resources("s.yaml")),
                ("kustomization.yaml", resources(".k8s")),
            ],
            deploy: Deploy::Kustomize,
            names: ".k8s/s.yaml",
        },
        Shape {
            name: "component-secret-generator",
            files: vec![
                (
                    "comp/kustomization.yaml",
                    format!(
                        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nsecretGenerator:\n- name: s\n  literals:\n  - password={}\n",
                        plain("component-secret-generator")
                    )
                    .into_bytes(),
                ),
                ("kustomization.yaml", b"components:\n- comp\n".to_vec()),
            ],
            deploy: Deploy::Kustomize,
            names: "comp/kustomization.yaml",
        },
        Shape {
            name: "inline-patch",
            files: vec![
                ("s.yaml", b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ntype: Opaque\n".to_vec()),
                (
                    "kustomization.yaml",
                    format!(
                        "resources:\n- s.yaml\npatches:\n- patch: |-\n    apiVersion: v1\n    kind: Secret\n    metadata:\n      name: s\n    stringData:\n      password: {}\n",
                        plain("inline-patch")
                    )
                    .into_bytes(),
                ),
            ],
            deploy: Deploy::Kustomize,
            names: "kustomization.yaml",
        },
        Shape {
            name: "inline-json-patch",
            files: vec![
                ("s.yaml", b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ntype: Opaque\n".to_vec()),
                (
                    "kustomization.yaml",
                    format!(
                        "resources:\n- s.yaml\npatches:\n- target:\n    kind: Secret\n    name: s\n  patch: |-\n    - op: add\n      path: /stringData\n      value:\n        password: {}\n",
                        plain("inline-json-patch")
                    )
                    .into_bytes(),
                ),
            ],
            deploy: Deploy::Kustomize,
            names: "kustomization.yaml",
        },
        Shape {
            name: "generators-secret-generator",
            files: vec![
                (
                    "gen.yaml",
                    format!(
                        "apiVersion: builtin\nkind: SecretGenerator\nmetadata:\n  name: s\nliterals:\n- password={}\n",
                        plain("generators-secret-generator")
                    )
                    .into_bytes(),
                ),
                ("kustomization.yaml", b"generators:\n- gen.yaml\n".to_vec()),
            ],
            deploy: Deploy::Kustomize,
            names: "gen.yaml",
        },
        Shape {
            name: "resource-with-another-extension",
            files: vec![
                ("secret.txt", secret(&plain("resource-with-another-extension")).into_bytes()),
                ("kustomization.yaml", resources("secret.txt")),
            ],
            deploy: Deploy::Kustomize,
            names: "secret.txt",
        },
        Shape {
            name: "flow-document",
            files: vec![
                (
                    "s.yaml",
                    format!(
                        "{{apiVersion: v1, kind: Secret, metadata: {{name: s}}, stringData: {{password: {}}}}}\n",
                        plain("flow-document")
                    )
                    .into_bytes(),
                ),
                ("kustomization.yaml", resources("s.yaml")),
            ],
            deploy: Deploy::Kustomize,
            names: "s.yaml",
        },
        // The shapes it caught before.
        Shape {
            name: "plain-secret",
            files: vec![("s.yaml", secret(&plain("plain-secret")).into_bytes())],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "data-base64",
            files: vec![(
                "s.yaml",
                format!(
                    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: {}\n",
                    base64::engine::general_purpose::STANDARD.encode(plain("data-base64"))
                )
                .into_bytes(),
            )],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "json",
            files: vec![(
                "s.json",
                serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                    "stringData": {"password": plain("json")}})
                .to_string()
                .into_bytes(),
            )],
            deploy: Deploy::Apply("s.json"),
            names: "s.json",
        },
        Shape {
            name: "list",
            files: vec![(
                "s.yaml",
                format!(
                    "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: s\n  stringData:\n    password: {}\n",
                    plain("list")
                )
                .into_bytes(),
            )],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "second-document",
            files: vec![(
                "s.yaml",
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n---\n{}",
                    secret(&plain("second-document"))
                )
                .into_bytes(),
            )],
            deploy: Deploy::Apply("s.yaml"),
            names: "s.yaml",
        },
        Shape {
            name: "secret-generator-literals",
            files: vec![(
                "kustomization.yaml",
                format!(
                    "secretGenerator:\n- name: s\n  literals:\n  - password={}\n",
                    plain("secret-generator-literals")
                )
                .into_bytes(),
            )],
            deploy: Deploy::Kustomize,
            names: "kustomization.yaml",
        },
        Shape {
            name: "secret-generator-files",
            files: vec![
                ("password.txt", plain("secret-generator-files").into_bytes()),
                (
                    "kustomization.yaml",
                    b"secretGenerator:\n- name: s\n  files:\n  - password.txt\n".to_vec(),
                ),
            ],
            deploy: Deploy::Kustomize,
            names: "kustomization.yaml",
        },
        Shape {
            name: "secret-generator-envs",
            files: vec![
                ("app.env", format!("PASSWORD={}\n", plain("secret-generator-envs")).into_bytes()),
                (
                    "kustomization.yaml",
                    b"secretGenerator:\n- name: s\n  envs:\n  - app.env\n".to_vec(),
                ),
            ],
            deploy: Deploy::Kustomize,
            names: "kustomization.yaml",
        },
        Shape {
            name: "kustomize-resource",
            files: vec![
                ("s.yaml", secret(&plain("kustomize-resource")).into_bytes()),
                ("kustomization.yaml", resources("s.yaml")),
            ],
            deploy: Deploy::Kustomize,
            names: "s.yaml",
        },
    ]
}

fn run(program: &Path, args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn every_deployable_plaintext_shape_is_reported() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let plane = runtime
        .block_on(ControlPlane::start(Options::default()))
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    let kubeconfig = root.path().join("kubeconfig");
    plane
        .write_kubeconfig(&kubeconfig, &plane.admin, "default")
        .unwrap();
    let helm = kseal_tests::cluster::helm().unwrap();
    let shapes = shapes();
    let (mut reported, mut missed) = (0, Vec::new());
    for shape in &shapes {
        let dir = root.path().join(shape.name);
        for (file, bytes) in &shape.files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        let value = plain(shape.name);
        // The real tool deploys the plaintext.
        let deployed = match shape.deploy {
            Deploy::Kustomize => run(Path::new("kubectl"), &["kustomize", "."], &dir, &[]),
            Deploy::Apply(file) => run(
                Path::new("kubectl"),
                &["apply", "--dry-run=server", "-o", "yaml", "-f", file],
                &dir,
                &[("KUBECONFIG", &kubeconfig)],
            ),
            Deploy::Helm => run(&helm, &["template", "release", "."], &dir, &[]),
        };
        let out = String::from_utf8_lossy(&deployed.stdout);
        let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
        assert!(
            deployed.status.success() && (out.contains(&value) || out.contains(&encoded)),
            "{}: the real tool does not deploy the plaintext: {out}{}",
            shape.name,
            String::from_utf8_lossy(&deployed.stderr)
        );
        // The guard refuses it, names the file, and prints no value.
        let scanned = run_in(&dir, &["scan", "."], b"");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&scanned.stdout),
            String::from_utf8_lossy(&scanned.stderr)
        );
        assert!(
            !said.contains(&value) && !said.contains(&encoded),
            "{}: a value was printed: {said}",
            shape.name
        );
        if scanned.status.success() || !said.contains(shape.names) {
            missed.push(format!("{}: {}", shape.name, said.trim()));
        } else {
            reported += 1;
        }
    }
    assert!(
        missed.is_empty(),
        "{} of {} deployable shapes missed:\n{}",
        missed.len(),
        shapes.len(),
        missed.join("\n")
    );
    assert_eq!(reported, shapes.len());
    eprintln!("{reported} deployable plaintext shapes, each reported by kseal scan");
}

/// Fail closed: a file the guard cannot read is named and fails the run, as a finding
/// does; a Helm template whose values come from the chart's values is not a finding.
#[test]
fn what_it_cannot_read_fails_and_templated_values_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.yaml"), b"a: [b\n").unwrap();
    let out = run_in(dir.path(), &["scan", "."], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("./broken.yaml: document 1: cannot read"),
        "{stderr}"
    );
    assert!(stderr.contains("1 file or document not read"), "{stderr}");
    let out = run_in(dir.path(), &["scan", "-o", "json", "."], b"");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["unreadable"][0]["file"], "./broken.yaml", "{report}");

    // Counted in words (issue 27: "1 literals").
    let one = tempfile::tempdir().unwrap();
    std::fs::write(
        one.path().join("kustomization.yaml"),
        "secretGenerator:\n- name: s\n  literals:\n  - a=b\n",
    )
    .unwrap();
    let out = run_in(one.path(), &["scan", "."], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(1 literal)"), "{stderr}");

    let chart = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(chart.path().join("templates")).unwrap();
    std::fs::write(
        chart.path().join("Chart.yaml"),
        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart.path().join("templates/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n{{- range $k, $v := .Values.secrets }}\n  {{ $k }}: {{ $v | b64enc }}\n{{- end }}\nstringData:\n  password: {{ .Values.password | quote }}\n",
    )
    .unwrap();
    let out = run_in(chart.path(), &["scan", "."], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
