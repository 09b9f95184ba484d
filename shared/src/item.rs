//! Seal and open one value.
//!
//! A sealed item is `base64(age file)` where the age file (binary, not armored) is
//! encrypted to every recipient of the set and its payload is the [`envelope`] for the
//! item. Opening checks, after decryption, that the envelope's binding is exactly the one
//! the caller expects.

use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::age_header::{AgeHeader, HeaderError};
use crate::envelope::{self, EnvelopeError};
use crate::keys::Keyring;
use crate::reason::Reason;
use crate::recipients::{Fingerprint, RecipientSet};
use crate::scope::Binding;

/// The largest sealed value (the age file, before base64) opened: the largest Secret
/// the API server stores, plus the largest header and room for the envelope and age's
/// per-chunk tags. Anything larger is refused before it is decoded.
pub const MAX_SEALED_BYTES: usize =
    crate::limits::MAX_SECRET_BYTES + crate::age_header::MAX_HEADER_BYTES + 4096;

/// Sealing failed. Only happens if the age library refuses the recipients.
#[derive(Debug, thiserror::Error)]
#[error("age encryption failed")]
pub struct SealError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// Why a sealed item could not be opened. No variant carries ciphertext or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not valid base64")]
    BadEncoding,
    #[error("not an age file")]
    NotAgeFile,
    #[error("truncated: the age file ends early")]
    Truncated,
    #[error("malformed age header")]
    MalformedHeader,
    #[error("refused before decryption: {0}")]
    Refused(#[from] crate::age_header::HeaderError),
    #[error("refused before decryption: larger than {MAX_SEALED_BYTES} bytes")]
    TooLarge,
    #[error("no key matches: the value was sealed to other recipients")]
    NoMatchingKey,
    #[error("decryption failed: the value was modified or damaged")]
    DecryptionFailed,
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error("sealed for {field} {sealed}, but found at {actual}")]
    ScopeMismatch {
        field: &'static str,
        sealed: String,
        actual: String,
    },
}

impl OpenError {
    /// The reason for status conditions, Events, metrics and verify answers.
    pub fn reason(&self) -> Reason {
        match self {
            OpenError::BadEncoding | OpenError::NotAgeFile | OpenError::MalformedHeader => {
                Reason::MalformedSealedValue
            }
            OpenError::Refused(HeaderError::TooManyStanzas | HeaderError::TooLarge)
            | OpenError::TooLarge => Reason::SealedValueTooLarge,
            OpenError::Refused(_) => Reason::MalformedSealedValue,
            OpenError::Truncated | OpenError::DecryptionFailed => Reason::DecryptionFailed,
            OpenError::NoMatchingKey => Reason::NoMatchingKey,
            OpenError::Envelope(EnvelopeError::UnsupportedVersion(_)) => Reason::UnsupportedFormat,
            OpenError::Envelope(EnvelopeError::Malformed(_)) => Reason::MalformedSealedValue,
            OpenError::ScopeMismatch { .. } => Reason::ScopeMismatch,
        }
    }
}

/// Seals `value` for `binding` to every recipient in the set.
pub fn seal(
    recipients: &RecipientSet,
    binding: &Binding,
    value: &[u8],
) -> Result<String, SealError> {
    let payload = envelope::encode(binding, value);
    // Mixed on purpose: the post-quantum recipients without age's label, or age refuses.
    let unlabelled: Vec<crate::pq::Unlabelled<'_>> = recipients
        .iter()
        .filter_map(|r| match r {
            crate::recipients::Recipient::Pq(pq) if recipients.mixed() => {
                Some(crate::pq::Unlabelled(pq))
            }
            _ => None,
        })
        .collect();
    let classic = recipients
        .iter()
        .filter(|r| !(recipients.mixed() && r.is_pq()))
        .map(|r| r.as_age());
    let all = classic.chain(unlabelled.iter().map(|u| u as &dyn age::Recipient));
    let encryptor = age::Encryptor::with_recipients(all).map_err(|e| SealError(Box::new(e)))?;
    let mut out = Vec::with_capacity(payload.len() + 64 + 200 * recipients.len());
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| SealError(Box::new(e)))?;
    writer
        .write_all(&payload)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| SealError(Box::new(e)))?;
    Ok(STANDARD.encode(out))
}

/// Opens a sealed item with any key of the ring (hinted ones first) and checks that it
/// was sealed for `expected`.
pub fn open(
    keyring: &Keyring,
    hint: &[Fingerprint],
    expected: &Binding,
    sealed: &str,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let (binding, value) = open_with_binding(keyring, hint, sealed)?;
    check_binding(&binding, expected)?;
    Ok(value)
}

/// Opens a sealed item and returns the binding its authenticated envelope carries, with
/// no expectation about where it is. For resealing, where the envelope alone decides.
pub fn open_with_binding(
    keyring: &Keyring,
    hint: &[Fingerprint],
    sealed: &str,
) -> Result<(Binding, Zeroizing<Vec<u8>>), OpenError> {
    let (bytes, _) = decode_bounded(sealed)?;
    // Only then age, reading from a buffered slice (its unbuffered path re-parses the
    // header once per byte it is short of: quadratic in the header's size).
    let decryptor = age::Decryptor::new_buffered(&bytes[..]).map_err(map_decrypt_error)?;
    let mut reader = decryptor
        .decrypt(keyring.ordered_for(hint).map(|k| k.as_age()))
        .map_err(map_decrypt_error)?;
    let mut payload = Zeroizing::new(Vec::with_capacity(bytes.len()));
    reader
        .read_to_end(&mut payload)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => OpenError::Truncated,
            _ => OpenError::DecryptionFailed,
        })?;
    let (binding, value) = envelope::decode(&payload)?;
    Ok((binding, Zeroizing::new(value.to_vec())))
}

/// Decodes a sealed item and reads its header with kseal's own parser, in one linear
/// pass bounded in size and stanzas: the checks every untrusted value passes before any
/// key or age sees it.
pub(crate) fn decode_bounded(sealed: &str) -> Result<(Vec<u8>, AgeHeader), OpenError> {
    let sealed = sealed.trim_end();
    if sealed.len() > MAX_SEALED_BYTES.div_ceil(3) * 4 {
        return Err(OpenError::TooLarge);
    }
    let bytes = STANDARD
        .decode(sealed)
        .map_err(|_| OpenError::BadEncoding)?;
    match crate::age_header::parse(&bytes) {
        Ok(header) => Ok((bytes, header)),
        Err(HeaderError::NotAgeFile) => Err(OpenError::NotAgeFile),
        Err(HeaderError::Truncated) => Err(OpenError::Truncated),
        Err(e) => Err(OpenError::Refused(e)),
    }
}

fn map_decrypt_error(e: age::DecryptError) -> OpenError {
    match e {
        age::DecryptError::NoMatchingKeys => OpenError::NoMatchingKey,
        age::DecryptError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            OpenError::Truncated
        }
        age::DecryptError::InvalidHeader | age::DecryptError::Io(_) => OpenError::MalformedHeader,
        age::DecryptError::UnknownFormat => OpenError::NotAgeFile,
        _ => OpenError::DecryptionFailed,
    }
}

fn check_binding(sealed: &Binding, expected: &Binding) -> Result<(), OpenError> {
    let mismatch = |field, sealed: String, actual: String| {
        Err(OpenError::ScopeMismatch {
            field,
            sealed,
            actual,
        })
    };
    if sealed.scope != expected.scope {
        return mismatch(
            "scope",
            sealed.scope.to_string(),
            format!("scope {}", expected.scope),
        );
    }
    let show = |v: &Option<String>| format!("{:?}", v.as_deref().unwrap_or(""));
    if sealed.namespace != expected.namespace {
        return mismatch(
            "namespace",
            show(&sealed.namespace),
            format!("namespace {}", show(&expected.namespace)),
        );
    }
    if sealed.name != expected.name {
        return mismatch(
            "name",
            show(&sealed.name),
            format!("name {}", show(&expected.name)),
        );
    }
    if sealed.item != expected.item {
        return mismatch(
            "item key",
            format!("{:?}", sealed.item),
            format!("item key {:?}", expected.item),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;
    use crate::scope::Scope;

    fn setup() -> (Keyring, RecipientSet, Binding) {
        let key = Key::generate();
        let set = RecipientSet::new([key.recipient().clone()]).unwrap();
        let b = Binding::new(Scope::Strict, Some("prod"), Some("db"), "password").unwrap();
        (Keyring::new([key]), set, b)
    }

    #[test]
    fn round_trip() {
        let (ring, set, b) = setup();
        let sealed = seal(&set, &b, b"hunter2").unwrap();
        assert_eq!(&open(&ring, &[], &b, &sealed).unwrap()[..], b"hunter2");
    }

    #[test]
    fn post_quantum_round_trip_and_audit() {
        let (pq, classic) = (Key::generate_pq(), Key::generate());
        let set = RecipientSet::new([pq.recipient().clone()]).unwrap();
        let b = Binding::new(Scope::Strict, Some("prod"), Some("db"), "password").unwrap();
        let sealed = seal(&set, &b, b"hunter2").unwrap();
        // The hint names the PQ key; a classic key beside it in the ring opens nothing.
        let ring = Keyring::new([classic.clone(), pq.clone()]);
        let hint = [pq.fingerprint().clone()];
        assert_eq!(&open(&ring, &hint, &b, &sealed).unwrap()[..], b"hunter2");
        let summary = crate::checks::summarize_item("password", &sealed);
        assert_eq!(
            (summary.pq_stanzas, summary.x25519_stanzas),
            (1, 0),
            "{summary:?}"
        );
        assert_eq!(summary.problem, None);
        // Mixing is refused before any sealing.
        let mixed = RecipientSet::new([pq.recipient().clone(), classic.recipient().clone()]);
        assert_eq!(
            mixed.err(),
            Some(crate::recipients::RecipientError::MixedPq)
        );
        // Unless asked: then each key opens the value alone.
        let mixed =
            RecipientSet::new_allowing_mixed([pq.recipient().clone(), classic.recipient().clone()])
                .unwrap();
        let sealed = seal(&mixed, &b, b"both").unwrap();
        for key in [&pq, &classic] {
            let ring = Keyring::new([key.clone()]);
            assert_eq!(&open(&ring, &[], &b, &sealed).unwrap()[..], b"both");
        }
        let summary = crate::checks::summarize_item("password", &sealed);
        assert_eq!((summary.pq_stanzas, summary.x25519_stanzas), (1, 1));
    }

    #[test]
    fn moved_ciphertext_is_refused_and_named() {
        let (ring, set, b) = setup();
        let sealed = seal(&set, &b, b"hunter2").unwrap();
        let elsewhere = Binding::new(Scope::Strict, Some("dev"), Some("db"), "password").unwrap();
        let err = open(&ring, &[], &elsewhere, &sealed).unwrap_err();
        assert_eq!(
            err.to_string(),
            "sealed for namespace \"prod\", but found at namespace \"dev\""
        );
        assert_eq!(err.reason().as_str(), "ScopeMismatch");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Any value opens where it was sealed, and nowhere else in the same namespace.
        #[test]
        fn opens_only_at_its_binding(
            value in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            name in "[a-z][a-z0-9-]{0,20}[a-z0-9]",
            item in "[A-Za-z0-9_-][A-Za-z0-9._-]{0,29}",
        ) {
            let key = Key::generate();
            let set = RecipientSet::new([key.recipient().clone()]).unwrap();
            let ring = Keyring::new([key]);
            let here = Binding::new(Scope::Strict, Some("ns"), Some(&name), &item).unwrap();
            let sealed = seal(&set, &here, &value).unwrap();
            proptest::prop_assert_eq!(&open(&ring, &[], &here, &sealed).unwrap()[..], &value[..]);
            let there = Binding::new(Scope::Strict, Some("ns"), Some(&format!("{name}x")), &item).unwrap();
            proptest::prop_assert_eq!(open(&ring, &[], &there, &sealed).unwrap_err().reason().as_str(), "ScopeMismatch");
        }
    }

    /// The security review's item 3: a value with hundreds of stanzas took age seconds
    /// to minutes to parse. It is refused by the bounded parse, before age sees it.
    #[test]
    fn a_value_with_too_many_stanzas_is_refused_before_age() {
        let (ring, _, b) = setup();
        // kseal seal makes at most 16 stanzas (15 recipients and age's own); age itself
        // makes more.
        let many: Vec<age::x25519::Recipient> = (0..=crate::age_header::MAX_STANZAS)
            .map(|_| age::x25519::Identity::generate().to_public())
            .collect();
        let encryptor =
            age::Encryptor::with_recipients(many.iter().map(|r| r as &dyn age::Recipient)).unwrap();
        let mut bytes = Vec::new();
        let mut w = encryptor.wrap_output(&mut bytes).unwrap();
        std::io::Write::write_all(&mut w, b"v").unwrap();
        w.finish().unwrap();
        let sealed = STANDARD.encode(&bytes);
        let err = open(&ring, &[], &b, &sealed).unwrap_err();
        assert_eq!(err, OpenError::Refused(HeaderError::TooManyStanzas));
        assert_eq!(err.reason().as_str(), "SealedValueTooLarge");
        let huge = "A".repeat(MAX_SEALED_BYTES / 3 * 4 + 8);
        assert_eq!(
            open(&ring, &[], &b, &huge).unwrap_err(),
            OpenError::TooLarge
        );
    }

    #[test]
    fn errors_never_contain_the_value() {
        let (_, set, b) = setup();
        let sealed = seal(&set, &b, b"hunter2").unwrap();
        let other = Keyring::new([Key::generate()]);
        let err = open(&other, &[], &b, &sealed).unwrap_err();
        assert_eq!(err, OpenError::NoMatchingKey);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
