//! The dashboard and the alerts (`manifests/components/monitoring`) against the real
//! things: Prometheus's own `promtool` checks the rules and runs their unit tests (each
//! alert once firing, once quiet) and parses every dashboard query; and every metric and
//! label they use is in a real scrape of the controller, whose census counts what the
//! cluster holds; and the dashboard is read strictly by Grafana's own schema (the
//! Grafana Foundation SDK, in `kseal-cluster dashboard-check`).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use common::*;

fn monitoring() -> PathBuf {
    repo().join("manifests/components/monitoring")
}

/// Runs Debian's `promtool` (the `prometheus` package); its absence fails the test.
fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("promtool (Debian's prometheus package) is needed: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// Every document of a YAML file, as JSON values.
fn yaml(path: &Path) -> Vec<serde_json::Value> {
    kseal_core::manifest::parse_documents(&std::fs::read(path).unwrap())
        .unwrap()
        .1
}

/// Every alert's name and expression in the rules file.
fn alerts() -> Vec<(String, String)> {
    let rules = yaml(&monitoring().join("kseal.rules.yaml")).remove(0);
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every query of the dashboard, with Grafana's `$__rate_interval` as 5m.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(monitoring().join("dashboard.json")).unwrap())
            .unwrap();
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or_default().to_owned();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                (
                    title.clone(),
                    t["expr"]
                        .as_str()
                        .unwrap()
                        .replace("$__rate_interval", "5m"),
                )
            })
        })
        .collect()
}

/// The metric names (`kseal_…`) and the label names a PromQL expression uses: in
/// matchers, and in `by`, `without`, `on`, `ignoring` and `group_left/right` lists.
fn names(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut metrics, mut labels) = (BTreeSet::new(), BTreeSet::new());
    let bytes = expr.as_bytes();
    let (mut i, mut in_braces, mut in_list, mut last_word) = (0, false, false, String::new());
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1 + usize::from(bytes[i] == b'\\');
            }
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            if in_braces || in_list {
                labels.insert(word.to_owned());
            } else if word.starts_with("kseal_") {
                metrics.insert(word.to_owned());
            }
            last_word = word.to_owned();
            continue;
        }
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            '(' if matches!(
                last_word.as_str(),
                "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
            ) =>
            {
                in_list = true
            }
            ')' => in_list = false,
            _ => {}
        }
        if !c.is_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    (metrics, labels)
}

/// The label names each metric family has in a scrape (`_total`, `_bucket`… folded into
/// the family's name as the rules write it).
fn scraped(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        let labels: BTreeSet<String> = line[name_end..]
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .map(|(inside, _)| {
                inside
                    .split(',')
                    .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        found.entry(name.to_owned()).or_default().extend(labels);
    }
    found
}

#[test]
fn promtool_checks_the_rules_and_every_alert_fires_and_stays_quiet_in_its_tests() {
    let rules = monitoring().join("kseal.rules.yaml");
    let checked = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tests = repo().join("tests/monitoring/kseal.rules.test.yaml");
    let ran = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(ran.contains("SUCCESS"), "{ran}");

    // Each alert is tested twice at least: expecting it to fire, and expecting silence.
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for test in yaml(&tests).remove(0)["tests"].as_array().unwrap() {
        for case in test["alert_rule_test"].as_array().unwrap() {
            let name = case["alertname"].as_str().unwrap().to_owned();
            match case["exp_alerts"].as_array().map(Vec::len) {
                Some(0) | None => quiet.insert(name),
                Some(_) => fires.insert(name),
            };
        }
    }
    for (alert, _) in alerts() {
        assert!(fires.contains(&alert), "no test where {alert} fires");
        assert!(quiet.contains(&alert), "no test where {alert} stays quiet");
    }

    // Every dashboard query parses as PromQL (as a recording rule promtool checks).
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{} queries", queries.len());
    let mut file = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        file += &format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(expr).unwrap()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashboard.rules.yaml");
    std::fs::write(&path, file).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

/// The dashboard as Grafana's own schema describes a dashboard, its panels (each panel
/// plugin's options) and their Prometheus queries: `kseal-cluster dashboard-check`, the
/// Grafana Foundation SDK's strict reading. A dashboard with a misspelt field, an
/// option its panel does not take or a field Grafana does not know is refused, naming
/// each.
#[test]
fn the_dashboard_is_what_grafanas_schema_describes() {
    let check = |path: &Path| {
        Command::new(kseal_tests::cluster::binary().unwrap())
            .arg("dashboard-check")
            .arg(path)
            .output()
            .unwrap()
    };
    let shipped = check(&monitoring().join("dashboard.json"));
    assert!(
        shipped.status.success(),
        "{}",
        String::from_utf8_lossy(&shipped.stderr)
    );
    assert!(String::from_utf8_lossy(&shipped.stdout).contains("19 panels"));

    let mut board: serde_json::Value =
        serde_json::from_slice(&std::fs::read(monitoring().join("dashboard.json")).unwrap())
            .unwrap();
    let panels = board["panels"].as_array_mut().unwrap();
    let at = panels.iter().position(|p| p["type"] == "stat").unwrap();
    let grid = panels[at]
        .as_object_mut()
        .unwrap()
        .remove("gridPos")
        .unwrap();
    panels[at]["gridpos"] = grid;
    panels[at]["options"]["colourMode"] = "value".into();
    let at = panels
        .iter()
        .position(|p| p["type"] == "timeseries")
        .unwrap();
    panels[at]["span"] = "wide".into();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("dashboard.json");
    std::fs::write(&bad, serde_json::to_vec(&board).unwrap()).unwrap();
    let refused = check(&bad);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    for field in ["'gridpos'", "'colourMode'", "'span'"] {
        assert!(said.contains(field), "{field} not named: {said}");
    }
}

#[test]
fn the_promql_reader_finds_metrics_and_labels() {
    let (metrics, labels) = names(
        r#"max by (job, fingerprint) ((time() - kseal_key_created_timestamp_seconds{job="a,b", verdict!="x"}) > ignoring (fingerprint) group_left () kseal_leader)"#,
    );
    assert_eq!(
        metrics,
        BTreeSet::from([
            "kseal_key_created_timestamp_seconds".into(),
            "kseal_leader".into()
        ])
    );
    assert_eq!(
        labels,
        BTreeSet::from(["job".into(), "fingerprint".into(), "verdict".into()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_dashboard_and_alerts_use_is_in_a_real_scrape() {
    let mut cluster = Cluster::new().await;
    cluster.start_controller("replica-a");
    let cert = cluster.recipients().await;
    cluster
        .seal_and_apply(&cert, "shop", "db", &[("password", "pw-monitoring")])
        .await;
    // Sealed to a key this cluster does not hold.
    cluster.seal_to_stranger("shop", "foreign", "pw-foreign");
    cluster.apply(&["foreign.yaml"]).await;
    assert_eq!(cluster.ready("shop", "db").await.1, "Unsealed");
    assert_eq!(cluster.ready("shop", "foreign").await.1, "NoMatchingKey");

    // The census counts what the cluster holds: two SealedSecrets, one not ready, one
    // sealed to the cluster's key (the other's key is not the cluster's: not counted).
    let fingerprint = cluster.document().await.recipients[0]
        .fingerprint
        .to_string();
    let by_key = format!("kseal_sealedsecrets_by_key{{fingerprint=\"{fingerprint}\"}}");
    let census = |text: &str| {
        text.contains("kseal_sealedsecrets{kind=\"kseal\"} 2")
            && text.contains("kseal_sealedsecrets_not_ready{reason=\"NoMatchingKey\"} 1")
            && text.contains(&format!("{by_key} 1"))
    };
    let text = wait_for_within(
        "the census in the scrape",
        std::time::Duration::from_secs(60),
        || async {
            let text = cluster.metrics("replica-a");
            census(&text).then_some(text)
        },
    )
    .await;

    let found = scraped(&text);
    let family = |metric: &str| -> Option<&BTreeSet<String>> {
        ["", "_total", "_bucket"]
            .iter()
            .find_map(|suffix| found.get(&format!("{metric}{suffix}")))
    };
    let mut used = alerts();
    used.extend(dashboard_queries());
    let mut checked = 0;
    for (what, expr) in &used {
        let (metrics, labels) = names(expr);
        for metric in &metrics {
            assert!(
                family(metric).is_some(),
                "{what}: {metric} is not in the scrape"
            );
            checked += 1;
        }
        // `job` and `instance` are the scrape target's, added by Prometheus.
        for label in labels
            .iter()
            .filter(|l| !["job", "instance"].contains(&l.as_str()))
        {
            assert!(
                metrics
                    .iter()
                    .any(|m| family(m).is_some_and(|labels| labels.contains(label))),
                "{what}: no metric of {metrics:?} has the label {label} in the scrape"
            );
        }
    }
    assert!(checked >= 25, "{checked} metric uses checked");

    // Fixed in Git (the object deleted here): the next census drops the reason.
    cluster
        .kubectl(&["delete", "sealedsecret", "foreign", "-n", "shop"])
        .await;
    wait_for_within(
        "the census without the deleted object",
        std::time::Duration::from_secs(60),
        || async {
            let text = cluster.metrics("replica-a");
            (text.contains("kseal_sealedsecrets{kind=\"kseal\"} 1")
                && !text.contains("kseal_sealedsecrets_not_ready{")
                && text.contains(&format!("{by_key} 1")))
            .then_some(())
        },
    )
    .await;
}
