//! The Prometheus text exposition format, as kube-apiserver's `/metrics` serves it: only
//! what the at-rest checks read (samples with their labels), for the families asked for.

use std::collections::BTreeMap;

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format (what kube-apiserver's `/metrics` serves), keeping
/// only the families whose names start with one of `wanted`.
pub fn parse_metrics(text: &str, wanted: &[&str]) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || !wanted.iter().any(|w| line.starts_with(w)) {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            out.push(s);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_owned();
    let mut rest = line[name_end..].trim_start();
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=')?;
            let key = rest[..eq].trim().to_owned();
            let mut chars = rest[eq + 1..].trim_start().char_indices();
            let body = rest[eq + 1..].trim_start();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            let mut end = None;
            let mut escaped = false;
            for (i, c) in chars {
                match (escaped, c) {
                    (true, 'n') => value.push('\n'),
                    (true, c) => value.push(c),
                    (false, '\\') => {
                        escaped = true;
                        continue;
                    }
                    (false, '"') => {
                        end = Some(i);
                        break;
                    }
                    (false, c) => value.push(c),
                }
                escaped = false;
            }
            rest = &body[end? + 1..];
            labels.insert(key, value);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}
