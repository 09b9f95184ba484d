//! `kseal verify` and `kseal reseal`: ask the cluster's controller, which holds the private
//! keys, whether it can unseal a file, or to re-encrypt it to its newest key. Plaintext
//! never leaves the controller.
//!
//! The controller is reached at `--controller-url`, e.g. through
//! `kubectl port-forward -n kseal-system deployment/kseal-controller 8080`, which goes
//! through the kubelet and so also works where the API server cannot reach pod ports.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::manifest::{Format, parse_documents, sealed_from_value};
use kseal_core::resource::SealedSecret;

use super::doc_label;
use crate::cli::{OutputFormat, ServiceArgs};
use crate::io::{read_file, render, replace_file};

fn post(url: &str, path: &str, body: &[u8]) -> Result<(u16, serde_json::Value)> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(60)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let endpoint = format!("{}{path}", url.trim_end_matches('/'));
    let mut response = agent
        .post(&endpoint)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| anyhow!("{endpoint}: cannot reach the controller: {e}"))?;
    let code = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(16 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| anyhow!("{endpoint}: cannot read the answer: {e}"))?;
    let value = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok((code, value))
}

fn who(ss: &SealedSecret) -> String {
    match (&ss.metadata.namespace, &ss.metadata.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => "(no name)".into(),
    }
}

fn service_error(code: u16, body: &serde_json::Value) -> String {
    match (body["message"].as_str(), body["error"].as_str()) {
        (Some(m), _) => format!("{} ({m})", body["reason"].as_str().unwrap_or("refused")),
        (None, Some(e)) => format!("{e} (HTTP {code})"),
        _ => format!("HTTP {code}"),
    }
}

pub fn verify(args: &ServiceArgs) -> Result<()> {
    let mut failed = 0;
    for path in &args.files {
        let input = read_file(path)?;
        let (_, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
        for (i, doc) in docs.iter().enumerate() {
            let label = doc_label(&input.name, i, docs.len());
            let sealed = sealed_from_value(doc).with_context(|| label.clone())?;
            let (code, body) = post(
                &args.controller_url,
                "/v1/verify",
                doc.to_string().as_bytes(),
            )?;
            if code == 200 {
                println!(
                    "{label}: {}: the cluster can unseal it ({} items)",
                    who(&sealed),
                    body["items"]
                );
            } else {
                failed += 1;
                eprintln!(
                    "{label}: {}: cannot be unsealed by this cluster: {}",
                    who(&sealed),
                    service_error(code, &body)
                );
            }
        }
    }
    if failed > 0 {
        bail!("{failed} SealedSecret(s) failed verification");
    }
    Ok(())
}

pub fn reseal(args: &ServiceArgs) -> Result<()> {
    for path in &args.files {
        let input = read_file(path)?;
        let (format, docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
        let mut out = Vec::with_capacity(docs.len());
        for (i, doc) in docs.iter().enumerate() {
            let label = doc_label(&input.name, i, docs.len());
            let before = sealed_from_value(doc).with_context(|| label.clone())?;
            let (code, body) = post(
                &args.controller_url,
                "/v1/reseal",
                doc.to_string().as_bytes(),
            )?;
            if code != 200 {
                bail!(
                    "{label}: {}: cannot reseal: {}",
                    who(&before),
                    service_error(code, &body)
                );
            }
            let after: SealedSecret = serde_json::from_value(body)
                .with_context(|| format!("{label}: the controller's answer"))?;
            let changed = after.spec.encrypted_data != before.spec.encrypted_data;
            eprintln!(
                "{label}: {}: {}",
                who(&after),
                if changed {
                    format!(
                        "resealed to {}",
                        after
                            .spec
                            .recipients
                            .iter()
                            .map(|f| f.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                } else {
                    "already sealed to the newest key".into()
                }
            );
            out.push(after);
        }
        let format = match format {
            Format::Yaml => OutputFormat::Yaml,
            Format::Json => OutputFormat::Json,
        };
        replace_file(path, render(&out, format)?.as_bytes())?;
    }
    Ok(())
}
