//! Resealing one item to a new cluster key without touching what the cluster does not
//! own. The item's file key is unwrapped with a cluster key and wrapped again for the
//! newest key; the stanzas of every recipient the cluster does not hold (an escrow key,
//! another cluster) stay byte for byte, so those keys still open the value; the header
//! MAC is computed anew and the payload (with its authenticated binding) is unchanged.
//!
//! Which stanzas are the cluster's is decided by trying its keys on them, never from the
//! unauthenticated `spec.recipients` hint: an item is up to date only when the newest key,
//! and no older cluster key, opens it.
//!
//! Reusing the file key protects nothing after a key compromise (whoever held the old key
//! and the old file knows the value already): after a compromise, change the values.

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use ring::{hkdf, hmac};

use crate::age_header::AGE_MAGIC;
use crate::item::{OpenError, decode_bounded};
use crate::keys::{Key, Keyring};
use crate::recipients::Fingerprint;

/// Why an item could not be moved to the newest key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RewrapError {
    /// Its header or its cluster stanzas could not be read or opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The newest key and a recipient kept beside it are of different kinds.
    #[error(
        "resealing to the newest key would put post-quantum and classic recipients in one value: seal it again with recipients of one kind"
    )]
    MixedRecipients,
}

impl RewrapError {
    /// The reason for conditions, Events, metrics and answers.
    pub fn reason(&self) -> crate::reason::Reason {
        match self {
            RewrapError::Open(e) => e.reason(),
            RewrapError::MixedRecipients => crate::reason::Reason::MixedRecipients,
        }
    }
}

/// One resealed item.
pub struct Rewrapped {
    /// The item, base64 as in `spec.encryptedData`.
    pub sealed: String,
    /// Whether anything changed (false: the newest key alone already held it).
    pub changed: bool,
    /// Recipient stanzas kept for keys the cluster does not hold.
    pub kept: usize,
}

/// Moves `sealed` from whichever cluster keys of `keyring` hold it to `newest` alone,
/// keeping every other recipient. The caller has opened the item (so its header and
/// payload are known to be sound) before asking for this.
pub fn rewrap(keyring: &Keyring, newest: &Key, sealed: &str) -> Result<Rewrapped, RewrapError> {
    let (bytes, header) = decode_bounded(sealed)?;
    let mut file_key: Option<FileKey> = None;
    let mut ours = Vec::new();
    let mut kept = Vec::new();
    for (i, stanza) in header.stanzas.iter().enumerate() {
        let parsed = to_age(&bytes[stanza.span.clone()]).ok_or(OpenError::MalformedHeader)?;
        let opener = keyring
            .iter()
            .find_map(|key| match key.as_age().unwrap_stanza(&parsed) {
                Some(Ok(k)) => Some((key.fingerprint().clone(), k)),
                _ => None,
            });
        match opener {
            Some((fp, k)) => {
                ours.push(fp);
                file_key.get_or_insert(k);
            }
            None => kept.push(i),
        }
    }
    let file_key = file_key.ok_or(OpenError::NoMatchingKey)?;
    // A post-quantum newest key beside a kept classic stanza (an escrow key, another
    // cluster), or the other way round, would undo the post-quantum protection.
    let kind_kept = |tag: &str| kept.iter().any(|&i| header.stanzas[i].kind == tag);
    if (newest.is_pq() && kind_kept(crate::keys::X25519_TAG))
        || (!newest.is_pq() && kind_kept(crate::pq::TAG))
    {
        return Err(RewrapError::MixedRecipients);
    }
    let foreign = kept
        .iter()
        .filter(|&&i| !header.stanzas[i].kind.ends_with("-grease"))
        .count();
    if ours == [newest.fingerprint().clone()] {
        return Ok(Rewrapped {
            sealed: sealed.trim_end().to_owned(),
            changed: false,
            kept: foreign,
        });
    }
    let (wrapped, _) = newest
        .recipient()
        .as_age()
        .wrap_file_key(&file_key)
        .map_err(|_| OpenError::DecryptionFailed)?;
    let mut out = AGE_MAGIC.to_vec();
    for stanza in &wrapped {
        write_stanza(&mut out, stanza);
    }
    for &i in &kept {
        out.extend_from_slice(&bytes[header.stanzas[i].span.clone()]);
    }
    out.extend_from_slice(b"---");
    let mac = header_mac(&file_key, &out);
    out.push(b' ');
    out.extend_from_slice(STANDARD_NO_PAD.encode(mac).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&bytes[header.header_len..]);
    Ok(Rewrapped {
        sealed: STANDARD.encode(out),
        changed: true,
        kept: foreign,
    })
}

/// The recipients hint after a rewrap: the cluster's fingerprints replaced by the newest
/// one, the others (as the old hint named them) kept. A hint only: the stanzas decide.
pub fn rewrapped_hint(
    hint: &[Fingerprint],
    keyring: &Keyring,
    newest: &Key,
    kept: usize,
) -> Vec<Fingerprint> {
    let mut out: Vec<Fingerprint> = if kept == 0 {
        Vec::new()
    } else {
        hint.iter()
            .filter(|f| keyring.get(f).is_none())
            .cloned()
            .collect()
    };
    out.push(newest.fingerprint().clone());
    out.sort();
    out.dedup();
    out
}

/// One stanza as age's own type, from its bytes in the file.
fn to_age(text: &[u8]) -> Option<Stanza> {
    let text = std::str::from_utf8(text).ok()?;
    let mut lines = text.strip_suffix('\n')?.split('\n');
    let mut first = lines.next()?.strip_prefix("-> ")?.split(' ');
    let tag = first.next()?.to_owned();
    let args = first.map(str::to_owned).collect();
    let body = STANDARD_NO_PAD.decode(lines.collect::<String>()).ok()?;
    Some(Stanza { tag, args, body })
}

/// A stanza in age's text form: the `->` line, then the body in base64 lines of 64
/// columns, the last one shorter (empty when the body fills whole lines).
fn write_stanza(out: &mut Vec<u8>, stanza: &Stanza) {
    out.extend_from_slice(b"-> ");
    out.extend_from_slice(stanza.tag.as_bytes());
    for arg in &stanza.args {
        out.push(b' ');
        out.extend_from_slice(arg.as_bytes());
    }
    out.push(b'\n');
    let body = STANDARD_NO_PAD.encode(&stanza.body);
    let mut chunks = body.as_bytes().chunks(64).peekable();
    let mut last_full = true;
    while let Some(line) = chunks.next() {
        out.extend_from_slice(line);
        out.push(b'\n');
        last_full = line.len() == 64 && chunks.peek().is_none();
    }
    if last_full {
        out.push(b'\n');
    }
}

/// age's header MAC: HMAC-SHA256 keyed with HKDF-SHA256(file key, salt "", info
/// "header"), over the header up to and including `---`.
fn header_mac(file_key: &FileKey, header: &[u8]) -> [u8; 32] {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut key = [0u8; 32];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(file_key.expose_secret());
    // Filling 32 bytes from SHA-256's HKDF cannot fail (the limit is 255 × 32).
    if let Ok(okm) = prk.expand(&[b"header"], Len32) {
        let _ = okm.fill(&mut key);
    }
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), header);
    zeroize::Zeroize::zeroize(&mut key);
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{open, seal};
    use crate::recipients::RecipientSet;
    use crate::scope::{Binding, Scope};

    fn binding() -> Binding {
        Binding::new(Scope::Strict, Some("prod"), Some("db"), "password").unwrap()
    }

    /// The security review's item 7: reseal dropped the escrow recipient. Now the escrow
    /// key still opens the resealed value, the new key opens it, and the old one no longer
    /// does.
    #[test]
    fn escrow_and_other_clusters_survive_a_reseal() {
        let (old, new, escrow, other) = (
            Key::generate(),
            Key::generate(),
            Key::generate(),
            Key::generate(),
        );
        let set = RecipientSet::new([
            old.recipient().clone(),
            escrow.recipient().clone(),
            other.recipient().clone(),
        ])
        .unwrap();
        let sealed = seal(&set, &binding(), b"hunter2").unwrap();
        let cluster = Keyring::new([new.clone(), old.clone()]);
        let out = rewrap(&cluster, &new, &sealed).unwrap();
        assert!(out.changed);
        assert_eq!(out.kept, 2);
        for key in [&new, &escrow, &other] {
            let ring = Keyring::new([key.clone()]);
            assert_eq!(
                &open(&ring, &[], &binding(), &out.sealed).unwrap()[..],
                b"hunter2"
            );
        }
        let err = open(&Keyring::new([old.clone()]), &[], &binding(), &out.sealed).unwrap_err();
        assert_eq!(err, OpenError::NoMatchingKey);

        // Resealing again finds the newest key alone holds it: the bytes stay.
        let again = rewrap(&cluster, &new, &out.sealed).unwrap();
        assert!(!again.changed);
        assert_eq!(again.sealed, out.sealed);
    }

    /// The hint never decides: an item whose hint claims the newest key, but which only
    /// an old key opens, is still moved.
    #[test]
    fn up_to_date_is_decided_by_the_stanzas_not_the_hint() {
        let (old, new) = (Key::generate(), Key::generate());
        let sealed = seal(
            &RecipientSet::new([old.recipient().clone()]).unwrap(),
            &binding(),
            b"v",
        )
        .unwrap();
        let cluster = Keyring::new([new.clone(), old]);
        let out = rewrap(&cluster, &new, &sealed).unwrap();
        assert!(out.changed);
        assert_eq!(out.kept, 0);
        let ring = Keyring::new([new.clone()]);
        assert_eq!(
            &open(&ring, &[], &binding(), &out.sealed).unwrap()[..],
            b"v"
        );
        let hint = rewrapped_hint(&[new.fingerprint().clone()], &cluster, &new, out.kept);
        assert_eq!(hint, vec![new.fingerprint().clone()]);
    }

    /// A rotation from X25519 to a post-quantum key: a value sealed to the cluster alone
    /// moves to the post-quantum key; one with a classic escrow recipient beside it is
    /// refused, since the result would mix the kinds.
    #[test]
    fn a_rotation_to_a_post_quantum_key_moves_values_and_never_mixes() {
        let (old, new, escrow) = (Key::generate(), Key::generate_pq(), Key::generate());
        let cluster = Keyring::new([new.clone(), old.clone()]);
        let alone = seal(
            &RecipientSet::new([old.recipient().clone()]).unwrap(),
            &binding(),
            b"v",
        )
        .unwrap();
        let out = rewrap(&cluster, &new, &alone).unwrap();
        assert!(out.changed);
        let summary = crate::checks::summarize_item("password", &out.sealed);
        assert_eq!((summary.pq_stanzas, summary.x25519_stanzas), (1, 0));
        let ring = Keyring::new([new.clone()]);
        assert_eq!(
            &open(&ring, &[], &binding(), &out.sealed).unwrap()[..],
            b"v"
        );

        let escrowed = seal(
            &RecipientSet::new([old.recipient().clone(), escrow.recipient().clone()]).unwrap(),
            &binding(),
            b"v",
        )
        .unwrap();
        assert_eq!(
            rewrap(&cluster, &new, &escrowed).err(),
            Some(RewrapError::MixedRecipients)
        );
    }

    #[test]
    fn a_value_no_cluster_key_holds_is_refused() {
        let (stranger, new) = (Key::generate(), Key::generate());
        let sealed = seal(
            &RecipientSet::new([stranger.recipient().clone()]).unwrap(),
            &binding(),
            b"v",
        )
        .unwrap();
        let err = rewrap(&Keyring::new([new.clone()]), &new, &sealed).err();
        assert_eq!(err.map(|e| e.reason().as_str()), Some("NoMatchingKey"));
    }
}
