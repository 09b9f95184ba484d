//! Public recipients: parsing, fingerprints, and the recipients document the controller
//! publishes.
//!
//! A fingerprint is the first 8 bytes of SHA-256 over the recipient's text form
//! (`age1…`), in lowercase hex. It names a key in SealedSecrets, logs and metrics without
//! needing the key itself, and it covers the recipient type, so new kinds fit unchanged.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A short, stable name for a public key.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// The fingerprint of a recipient given in its text form.
    pub fn of(recipient_text: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, recipient_text.as_bytes());
        Fingerprint(
            digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key items can be sealed to: classic X25519 (`age1…`) or post-quantum
/// (`age1pq1…`, see [`crate::pq`]).
#[derive(Clone)]
pub enum Recipient {
    X25519(age::x25519::Recipient),
    Pq(crate::pq::PqRecipient),
}

impl Recipient {
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(&self.to_string())
    }

    /// Whether it is post-quantum.
    pub fn is_pq(&self) -> bool {
        matches!(self, Recipient::Pq(_))
    }

    pub(crate) fn as_age(&self) -> &dyn age::Recipient {
        match self {
            Recipient::X25519(r) => r,
            Recipient::Pq(r) => r,
        }
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::X25519(r) => write!(f, "{r}"),
            Recipient::Pq(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recipient({self})")
    }
}

/// Why a recipient string was refused. The string itself is never repeated: what was
/// passed where a recipient belongs may be a private key (an identity file given to `-R`
/// by mistake), and errors end up in terminals and CI logs. Only the recipient type,
/// which is public, is named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecipientError {
    #[error("{0} recipients are not supported yet: only X25519 recipients (age1…) are")]
    Unsupported(String),
    #[error("not a valid age recipient (age1…)")]
    Invalid,
    #[error(
        "several recipients in one value: separate them with commas or give one per --recipient, or one per line in a --recipients-file"
    )]
    Several,
    #[error(
        "this is a private key (AGE-SECRET-KEY-1…), not a recipient: pass its public key (age-keygen -y prints it), and keep the private key out of logs"
    )]
    PrivateKey,
    #[error("line {line}")]
    Line {
        line: usize,
        #[source]
        source: Box<RecipientError>,
    },
    #[error(
        "a PEM certificate, as kubeseal --fetch-cert prints: kseal seals to age recipients, not to Bitnami's RSA key; `kseal recipients > recipients.json` fetches a kseal cluster's (and `kseal migrate` converts Bitnami SealedSecrets)"
    )]
    BitnamiCertificate,
    #[error("no recipients given")]
    Empty,
    #[error(
        "{0} recipients: an item may be sealed to at most {MAX_RECIPIENTS} (age adds a stanza of its own, and a value with more than 16 is refused before decryption)"
    )]
    TooMany(usize),
    #[error(
        "post-quantum (age1pq1…) and classic (age1…) recipients together: a classic stanza in the same value would let whoever breaks X25519 open it; seal to post-quantum recipients only (or pass --allow-classic-with-pq to mix them knowingly)"
    )]
    MixedPq,
    #[error("not a recipients document: {0}")]
    BadDocument(String),
}

impl FromStr for Recipient {
    type Err = RecipientError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(r) = s.parse::<age::x25519::Recipient>() {
            return Ok(Recipient::X25519(r));
        }
        if s.starts_with("age1pq1") {
            return s
                .parse()
                .map(Recipient::Pq)
                .map_err(|_| RecipientError::Invalid);
        }
        if s.starts_with("-----BEGIN CERTIFICATE-----") {
            return Err(RecipientError::BitnamiCertificate);
        }
        if s.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-")
            || s.starts_with("AGE-PLUGIN-")
            || s.starts_with("-----BEGIN")
        {
            return Err(RecipientError::PrivateKey);
        }
        let words: Vec<&str> = s.split_whitespace().collect();
        if words.len() > 1 && words.iter().all(|w| w.starts_with("age1")) {
            return Err(RecipientError::Several);
        }
        // `age1pq1…`, `age1tag1…` and plugin recipients (`age1<name>1…`) carry a second
        // separator; SSH keys start with their key type. Only that type is named.
        if let Some(kind) = s.split(' ').next().filter(|k| k.starts_with("ssh-")) {
            return Err(RecipientError::Unsupported(public_label(kind)));
        }
        if let Some(rest) = s.strip_prefix("age1")
            && let Some((kind, _)) = rest.split_once('1')
        {
            return Err(RecipientError::Unsupported(public_label(&format!(
                "age1{kind}1…"
            ))));
        }
        Err(RecipientError::Invalid)
    }
}

/// A recipient type as shown in an error: printable ASCII only, at most 24 characters.
fn public_label(kind: &str) -> String {
    kind.chars()
        .filter(|c| c.is_ascii_graphic() || *c == '…')
        .take(24)
        .collect()
}

/// Parses age's recipients-file format: one recipient per line, `#` comments and blank
/// lines ignored.
pub fn parse_recipients_file(text: &str) -> Result<Vec<Recipient>, RecipientError> {
    let mut out = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(line.parse().map_err(|e| RecipientError::Line {
            line: idx + 1,
            source: Box::new(e),
        })?);
    }
    if out.is_empty() {
        return Err(RecipientError::Empty);
    }
    Ok(out)
}

/// The document `kseal-controller` publishes (ConfigMap and `/v1/recipients`): the
/// cluster's recipients, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecipientsDocument {
    /// Always `kseal.dev/recipients/v1`.
    pub format: String,
    pub recipients: Vec<PublishedRecipient>,
}

/// One public key of a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedRecipient {
    pub recipient: String,
    pub fingerprint: Fingerprint,
    /// RFC 3339 creation time of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The value of [`RecipientsDocument::format`].
pub const RECIPIENTS_DOCUMENT_FORMAT: &str = "kseal.dev/recipients/v1";

impl RecipientsDocument {
    /// Checks the document and returns every key it publishes, newest first, each
    /// checked against its fingerprint.
    pub fn keys(&self) -> Result<Vec<Recipient>, RecipientError> {
        if self.format != RECIPIENTS_DOCUMENT_FORMAT {
            return Err(RecipientError::BadDocument(format!(
                "format is not {RECIPIENTS_DOCUMENT_FORMAT:?}"
            )));
        }
        if self.recipients.is_empty() {
            return Err(RecipientError::Empty);
        }
        self.recipients
            .iter()
            .map(|published| {
                let recipient: Recipient = published.recipient.parse()?;
                if recipient.fingerprint() != published.fingerprint {
                    return Err(RecipientError::BadDocument(format!(
                        "fingerprint {} does not match recipient {}",
                        published.fingerprint, published.recipient
                    )));
                }
                Ok(recipient)
            })
            .collect()
    }

    /// Checks the document and returns the recipient new seals should use: the newest.
    pub fn sealing_recipient(&self) -> Result<Recipient, RecipientError> {
        let mut keys = self.keys()?;
        Ok(keys.swap_remove(0))
    }
}

/// Reads what `--cert` points at: a recipients document (JSON), whose newest recipient is
/// used, or else a recipients file.
pub fn parse_cert(text: &str) -> Result<Vec<Recipient>, RecipientError> {
    if text.trim_start().starts_with("-----BEGIN CERTIFICATE-----") {
        return Err(RecipientError::BitnamiCertificate);
    }
    if text.trim_start().starts_with('{') {
        let doc: RecipientsDocument =
            // serde_json's messages can quote the input: only the position is kept.
            serde_json::from_str(text).map_err(|e| {
                RecipientError::BadDocument(format!(
                    "not the expected JSON at line {}, column {}",
                    e.line(),
                    e.column()
                ))
            })?;
        return Ok(vec![doc.sealing_recipient()?]);
    }
    parse_recipients_file(text)
}

/// The most recipients one item may be sealed to: age adds a stanza of its own (its
/// "grease"), and the controller refuses a value with more than
/// [`crate::age_header::MAX_STANZAS`] stanzas before any decryption.
pub const MAX_RECIPIENTS: usize = crate::age_header::MAX_STANZAS - 1;

/// A non-empty set of distinct recipients, the unit every item is sealed to.
#[derive(Clone, Debug)]
pub struct RecipientSet {
    recipients: Vec<Recipient>,
    /// Post-quantum and classic recipients together, as the user asked.
    mixed: bool,
}

impl RecipientSet {
    /// Deduplicates by the whole recipient (not its 64-bit fingerprint, which two keys
    /// made to collide could share), keeping the first occurrence.
    pub fn new(recipients: impl IntoIterator<Item = Recipient>) -> Result<Self, RecipientError> {
        let set = Self::new_allowing_mixed(recipients)?;
        if set.mixed {
            return Err(RecipientError::MixedPq);
        }
        Ok(set)
    }

    /// As [`new`](Self::new), but post-quantum and classic recipients may be mixed: the
    /// user said so, knowing a classic stanza lets whoever breaks X25519 open the value.
    pub fn new_allowing_mixed(
        recipients: impl IntoIterator<Item = Recipient>,
    ) -> Result<Self, RecipientError> {
        let mut out: Vec<Recipient> = Vec::new();
        for r in recipients {
            if !out.iter().any(|o| o.to_string() == r.to_string()) {
                out.push(r);
            }
        }
        if out.is_empty() {
            return Err(RecipientError::Empty);
        }
        if out.len() > MAX_RECIPIENTS {
            return Err(RecipientError::TooMany(out.len()));
        }
        let mixed = out.iter().any(Recipient::is_pq) && !out.iter().all(Recipient::is_pq);
        Ok(RecipientSet {
            recipients: out,
            mixed,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter()
    }

    /// Whether post-quantum and classic recipients are mixed (see [`Self::new_allowing_mixed`]).
    pub fn mixed(&self) -> bool {
        self.mixed
    }

    pub fn len(&self) -> usize {
        self.recipients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty()
    }

    /// The fingerprints, sorted, as recorded in `spec.recipients`.
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        let mut fps: Vec<_> = self.recipients.iter().map(Recipient::fingerprint).collect();
        fps.sort();
        fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R1: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    #[test]
    fn fingerprint_is_stable_hex() {
        let r: Recipient = R1.parse().unwrap();
        let fp = r.fingerprint();
        assert_eq!(fp.0.len(), 16);
        assert!(fp.0.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(fp, Fingerprint::of(R1));
    }

    #[test]
    fn recipients_file_allows_comments_and_names_bad_lines() {
        let text = format!("# cluster prod\n\n{R1}\n  # escrow\n");
        assert_eq!(parse_recipients_file(&text).unwrap().len(), 1);
        let err = parse_recipients_file(&format!("{R1}\nage1nope\n")).unwrap_err();
        assert_eq!(err.to_string(), "line 2");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert_eq!(source, "not a valid age recipient (age1…)");
        assert_eq!(
            parse_recipients_file("# nothing\n").unwrap_err(),
            RecipientError::Empty
        );
    }

    #[test]
    fn unsupported_kinds_are_named() {
        assert_eq!(
            "ssh-ed25519 AAAA".parse::<Recipient>().unwrap_err(),
            RecipientError::Unsupported("ssh-ed25519".into())
        );
        assert_eq!(
            "age1tag1qqqq".parse::<Recipient>().unwrap_err().to_string(),
            "age1tag1… recipients are not supported yet: only X25519 recipients (age1…) are"
        );
        // Post-quantum recipients are: a broken one is simply invalid.
        assert_eq!(
            "age1pq1qqqq".parse::<Recipient>().unwrap_err(),
            RecipientError::Invalid
        );
    }

    /// The security review's item 8: an identity file passed as recipients printed the
    /// whole private key. No error repeats what it was given.
    #[test]
    fn a_private_key_given_as_a_recipient_is_never_repeated() {
        let key = crate::keys::Key::generate();
        let file = key.to_identity_file("2026-12-01T00:00:00Z");
        let secret = file
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .unwrap();
        let err = parse_recipients_file(&file).unwrap_err();
        let mut chain = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(chain.contains("private key"), "{chain}");
        assert!(!chain.contains(&secret[15..25]), "{chain}");
        assert!(!format!("{err:?}").contains(&secret[15..25]));
        let lowercase = secret.to_ascii_lowercase();
        assert_eq!(
            lowercase.parse::<Recipient>().unwrap_err(),
            RecipientError::PrivateKey
        );
        let json = format!("{{\"format\": \"{secret}\"}}");
        let doc_err = parse_cert(&json).unwrap_err().to_string();
        assert!(!doc_err.contains(&secret[15..25]), "{doc_err}");
    }

    #[test]
    fn document_yields_newest_and_checks_fingerprint() {
        let doc = RecipientsDocument {
            format: RECIPIENTS_DOCUMENT_FORMAT.into(),
            recipients: vec![PublishedRecipient {
                recipient: R1.into(),
                fingerprint: Fingerprint::of(R1),
                created: None,
            }],
        };
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(parse_cert(&json).unwrap()[0].to_string(), R1);
        let mut bad = doc.clone();
        bad.recipients[0].fingerprint = Fingerprint("0000000000000000".into());
        assert!(bad.sealing_recipient().is_err());
    }

    #[test]
    fn set_dedups_and_sorts_fingerprints() {
        let r: Recipient = R1.parse().unwrap();
        let set = RecipientSet::new([r.clone(), r]).unwrap();
        assert_eq!(set.len(), 1);
        assert!(RecipientSet::new([]).is_err());
    }

    /// Sixteen recipients made a value with 17 stanzas (age adds one), which the
    /// controller refuses: sealed, committed, and never unsealed. Refused when sealing.
    #[test]
    fn no_more_recipients_than_an_item_may_hold() {
        let keys: Vec<Recipient> = (0..=MAX_RECIPIENTS)
            .map(|_| crate::keys::Key::generate().recipient().clone())
            .collect();
        let most = RecipientSet::new(keys[..MAX_RECIPIENTS].iter().cloned()).unwrap();
        let binding =
            crate::scope::Binding::new(crate::scope::Scope::ClusterWide, None, None, "k").unwrap();
        let sealed = crate::item::seal(&most, &binding, b"v").unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sealed).unwrap();
        let header = crate::age_header::parse(&bytes).unwrap();
        assert_eq!(header.stanzas.len(), crate::age_header::MAX_STANZAS);
        assert_eq!(
            RecipientSet::new(keys).err(),
            Some(RecipientError::TooMany(MAX_RECIPIENTS + 1))
        );
    }
}
