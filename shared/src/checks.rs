//! Checks on a SealedSecret that need no key: what `kseal inspect` shows and what
//! `kseal validate` enforces in CI.
//!
//! Without a private key nobody can prove an item opens; what can be checked is that the
//! object is well formed, uses a supported format, that every item is an age file with
//! one X25519 stanza per recorded recipient, and that the recorded recipients are the
//! expected ones.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::age_header::{self, AgeHeader};
use crate::recipients::Fingerprint;
use crate::resource::SealedSecret;
use crate::scope::{Binding, validate_item_key};

/// What can be read of one sealed item without a key.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemSummary {
    pub key: String,
    /// Length of the age file in bytes (after base64 decoding).
    pub age_bytes: usize,
    /// Number of X25519 recipient stanzas.
    pub x25519_stanzas: usize,
    /// Number of post-quantum (`mlkem768x25519`) recipient stanzas.
    #[serde(skip_serializing_if = "is_zero")]
    pub pq_stanzas: usize,
    /// Why the item is not a well-formed sealed value, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Reads the age header of one item.
pub fn summarize_item(key: &str, sealed: &str) -> ItemSummary {
    let mut summary = ItemSummary {
        key: key.to_owned(),
        age_bytes: 0,
        x25519_stanzas: 0,
        pq_stanzas: 0,
        problem: None,
    };
    let header: Result<AgeHeader, String> = STANDARD
        .decode(sealed.trim_end())
        .map_err(|_| "not valid base64".to_owned())
        .and_then(|bytes| {
            summary.age_bytes = bytes.len();
            age_header::parse(&bytes).map_err(|e| e.to_string())
        });
    match header {
        Ok(h) => {
            summary.x25519_stanzas = h.count(crate::keys::X25519_TAG);
            summary.pq_stanzas = h.count(crate::pq::TAG);
            if h.count("scrypt") > 0 {
                summary.problem = Some("passphrase-encrypted (scrypt), not sealed to a key".into());
            }
        }
        Err(e) => summary.problem = Some(e),
    }
    summary
}

/// What the recipients recorded in a SealedSecret are checked against.
#[derive(Clone, Debug, Default)]
pub struct ExpectedRecipients {
    /// Recipients named on the command line: each must be recorded.
    pub named: Vec<Fingerprint>,
    /// The keys a cluster publishes, newest first, when checking against a cluster: one
    /// of them must be recorded. Without a cluster, the named recipients must be exactly
    /// the recorded ones.
    pub cluster: Option<Vec<Fingerprint>>,
    /// A cluster whose keys were not read (a `.kseal.yaml` rule's context, offline): one
    /// recipient beside the named ones is taken to be its key, unchecked.
    pub unread_cluster: bool,
}

/// How a SealedSecret's recorded recipients compare with the expected ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecipientsCheck {
    Pass,
    /// It opens with a key the cluster still holds, but not its newest: a pass, with a
    /// notice that `kseal reseal` moves it to the newest.
    OlderClusterKey {
        sealed_to: Fingerprint,
        newest: Fingerprint,
    },
    Fail(String),
}

fn show(fps: &[&Fingerprint]) -> String {
    let names: Vec<&str> = fps.iter().map(|f| f.0.as_str()).collect();
    format!("[{}]", names.join(", "))
}

/// Compares `recorded` (a SealedSecret's `spec.recipients`) with `expected`.
pub fn check_recipients(
    recorded: &[Fingerprint],
    expected: &ExpectedRecipients,
) -> RecipientsCheck {
    let recorded_all: Vec<&Fingerprint> = recorded.iter().collect();
    let Some(cluster) = &expected.cluster else {
        if expected.unread_cluster {
            return check_beside_unread_cluster(recorded, &expected.named);
        }
        let mut named: Vec<&Fingerprint> = expected.named.iter().collect();
        named.sort();
        named.dedup();
        let mut sorted = recorded_all.clone();
        sorted.sort();
        if sorted == named {
            return RecipientsCheck::Pass;
        }
        return RecipientsCheck::Fail(format!(
            "sealed to recipients {}, expected {}",
            show(&recorded_all),
            show(&named)
        ));
    };
    let missing: Vec<&Fingerprint> = expected
        .named
        .iter()
        .filter(|f| !recorded.contains(f))
        .collect();
    if !missing.is_empty() {
        return RecipientsCheck::Fail(format!(
            "not sealed to {}, which were asked for (sealed to {})",
            show(&missing),
            show(&recorded_all)
        ));
    }
    let Some(held) = cluster.iter().find(|f| recorded.contains(f)) else {
        return RecipientsCheck::Fail(format!(
            "sealed to {}, none of them a key the cluster holds (its keys: {}): the controller cannot unseal it; seal it again",
            show(&recorded_all),
            show(&cluster.iter().collect::<Vec<_>>())
        ));
    };
    let strangers: Vec<&Fingerprint> = recorded
        .iter()
        .filter(|f| !cluster.contains(f) && !expected.named.contains(f))
        .collect();
    if !strangers.is_empty() {
        return RecipientsCheck::Fail(format!(
            "also sealed to {}: neither the cluster's keys nor asked for (pass them with -r/-R/--cert if they belong)",
            show(&strangers)
        ));
    }
    match cluster.first() {
        Some(newest) if newest != held => RecipientsCheck::OlderClusterKey {
            sealed_to: held.clone(),
            newest: newest.clone(),
        },
        _ => RecipientsCheck::Pass,
    }
}

/// The named recipients, and exactly one more: the key of a cluster not read.
fn check_beside_unread_cluster(recorded: &[Fingerprint], named: &[Fingerprint]) -> RecipientsCheck {
    let all: Vec<&Fingerprint> = recorded.iter().collect();
    let missing: Vec<&Fingerprint> = named.iter().filter(|f| !recorded.contains(f)).collect();
    if !missing.is_empty() {
        return RecipientsCheck::Fail(format!(
            "not sealed to {}, which were asked for (sealed to {})",
            show(&missing),
            show(&all)
        ));
    }
    let others: Vec<&Fingerprint> = recorded.iter().filter(|f| !named.contains(f)).collect();
    match others.len() {
        1 => RecipientsCheck::Pass,
        0 => RecipientsCheck::Fail(format!(
            "sealed to {} only: not to the cluster's key",
            show(&all)
        )),
        _ => RecipientsCheck::Fail(format!(
            "sealed to {} beside the named recipients: one of them may be the cluster's key, the others were not asked for",
            show(&others)
        )),
    }
}

/// What the user said [`problems`] should let pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowed {
    /// Items sealed to post-quantum and classic recipients together (asked for).
    pub classic_with_pq: bool,
    /// Objects in kube-system (the controller runs with `--allow-kube-system`).
    pub kube_system: bool,
}

/// Every problem found, as one-line messages; empty when the object passes. The
/// recipients are checked apart, by [`check_recipients`].
pub fn problems(sealed: &SealedSecret, allowed: Allowed) -> Vec<String> {
    let mut out = Vec::new();
    let spec = &sealed.spec;
    if spec.format_version != crate::envelope::VERSION {
        out.push(format!(
            "format version {} is not supported (expected {})",
            spec.format_version,
            crate::envelope::VERSION
        ));
    }
    if sealed.metadata.name.is_none() {
        out.push("metadata.name is missing".into());
    }
    if spec.encrypted_data.is_empty() {
        out.push("no items in spec.encryptedData".into());
    }
    if let Err(e) = crate::limits::check_items(spec.encrypted_data.len()) {
        out.push(format!(
            "{e} (the controller refuses it: {})",
            crate::reason::Reason::TooMuchWork
        ));
    }
    if let Some(ns) = sealed.metadata.namespace.as_deref()
        && ns == crate::policy::DEFAULT_CONTROLLER_NAMESPACE
    {
        out.push(format!(
            "namespace {ns:?} is kseal-controller's own (its keys live there): it never unseals into it"
        ));
    }
    if sealed.metadata.namespace.as_deref() == Some(crate::policy::KUBE_SYSTEM)
        && !allowed.kube_system
    {
        out.push(format!(
            "{} (the controller refuses it: {}; pass --allow-kube-system if yours runs with it)",
            crate::policy::PolicyError::KubeSystem,
            crate::reason::Reason::ForbiddenNamespace
        ));
    }
    if let Err(e) = crate::policy::check_template(spec.template.as_ref(), &[]) {
        out.push(format!("{e} (the controller refuses it: {})", e.reason()));
    }
    if spec.recipients.is_empty() {
        out.push("spec.recipients is empty: no record of which keys sealed it".into());
    }
    for (key, value) in &spec.encrypted_data {
        if let Err(e) = validate_item_key(key) {
            out.push(e.to_string());
            continue;
        }
        if sealed.metadata.name.is_some()
            && let Err(e) = Binding::new(
                spec.scope,
                sealed.metadata.namespace.as_deref(),
                sealed.metadata.name.as_deref(),
                key,
            )
        {
            out.push(e.to_string());
            break;
        }
        let summary = summarize_item(key, value);
        if let Some(p) = summary.problem {
            out.push(format!("item {key:?}: {p}"));
        } else if summary.x25519_stanzas + summary.pq_stanzas != spec.recipients.len() {
            out.push(format!(
                "item {key:?}: sealed to {} recipients, but {} are recorded",
                summary.x25519_stanzas + summary.pq_stanzas,
                spec.recipients.len()
            ));
        } else if !allowed.classic_with_pq && summary.x25519_stanzas > 0 && summary.pq_stanzas > 0 {
            out.push(format!(
                "item {key:?}: sealed to post-quantum and classic recipients together: the classic ones undo the protection (--allow-classic-with-pq if that was meant)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fps(names: &[&str]) -> Vec<Fingerprint> {
        names.iter().map(|n| Fingerprint((*n).to_owned())).collect()
    }

    fn against_cluster(named: &[&str], cluster: &[&str]) -> ExpectedRecipients {
        ExpectedRecipients {
            named: fps(named),
            cluster: Some(fps(cluster)),
            unread_cluster: false,
        }
    }

    #[test]
    fn without_a_cluster_the_named_recipients_are_exactly_the_recorded_ones() {
        let exact = ExpectedRecipients {
            named: fps(&["b", "a"]),
            cluster: None,
            unread_cluster: false,
        };
        assert_eq!(
            check_recipients(&fps(&["a", "b"]), &exact),
            RecipientsCheck::Pass
        );
        let RecipientsCheck::Fail(why) = check_recipients(&fps(&["a"]), &exact) else {
            panic!("a missing recipient passed");
        };
        assert_eq!(why, "sealed to recipients [a], expected [a, b]");
    }

    #[test]
    fn an_older_key_the_cluster_still_holds_passes_with_a_notice() {
        let rotated = against_cluster(&[], &["new", "old"]);
        assert_eq!(
            check_recipients(&fps(&["new"]), &rotated),
            RecipientsCheck::Pass
        );
        assert_eq!(
            check_recipients(&fps(&["old"]), &rotated),
            RecipientsCheck::OlderClusterKey {
                sealed_to: Fingerprint("old".into()),
                newest: Fingerprint("new".into()),
            }
        );
    }

    #[test]
    fn a_key_the_cluster_lost_or_a_stranger_fails() {
        let cluster = against_cluster(&[], &["new", "old"]);
        let RecipientsCheck::Fail(why) = check_recipients(&fps(&["gone"]), &cluster) else {
            panic!("a key the cluster does not hold passed");
        };
        assert!(
            why.contains("none of them a key the cluster holds"),
            "{why}"
        );
        // One recipient nobody asked for beside the cluster's key: where would it come from?
        let RecipientsCheck::Fail(why) = check_recipients(&fps(&["new", "x"]), &cluster) else {
            panic!("an unexpected extra recipient passed");
        };
        assert!(why.starts_with("also sealed to [x]"), "{why}");
        // Named beside the cluster: escrow keys.
        let escrow = against_cluster(&["escrow"], &["new", "old"]);
        assert_eq!(
            check_recipients(&fps(&["escrow", "new"]), &escrow),
            RecipientsCheck::Pass
        );
        let RecipientsCheck::Fail(why) = check_recipients(&fps(&["new"]), &escrow) else {
            panic!("a missing escrow recipient passed");
        };
        assert!(why.starts_with("not sealed to [escrow]"), "{why}");
    }

    /// A rule's context not read (offline): the named recipients and exactly one more.
    #[test]
    fn beside_an_unread_cluster_one_more_recipient_is_its_key() {
        let offline = ExpectedRecipients {
            named: fps(&["escrow"]),
            cluster: None,
            unread_cluster: true,
        };
        assert_eq!(
            check_recipients(&fps(&["escrow", "k"]), &offline),
            RecipientsCheck::Pass
        );
        for (recorded, says) in [
            (&["escrow"][..], "sealed to [escrow] only"),
            (&["k"][..], "not sealed to [escrow]"),
            (&["escrow", "k", "x"][..], "sealed to [k, x] beside"),
        ] {
            let RecipientsCheck::Fail(why) = check_recipients(&fps(recorded), &offline) else {
                panic!("{recorded:?} passed");
            };
            assert!(why.starts_with(says), "{why}");
        }
    }
}
