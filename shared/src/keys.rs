//! Private identities: parsing age identity files, generating keys, and the keyring that
//! opens sealed items.
//!
//! Key material stays inside age's types (which zeroize on drop) or in
//! [`zeroize::Zeroizing`] buffers; none of these types implements `Debug` or `Serialize`.

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::recipients::{Fingerprint, Recipient};

/// One private key with its public half and fingerprint.
#[derive(Clone)]
pub struct Key {
    identity: age::x25519::Identity,
    recipient: Recipient,
    fingerprint: Fingerprint,
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let recipient = Recipient::X25519(identity.to_public());
        let fingerprint = recipient.fingerprint();
        Key {
            identity,
            recipient,
            fingerprint,
        }
    }

    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub(crate) fn as_age(&self) -> &dyn age::Identity {
        &self.identity
    }

    /// The key in age's identity-file format, with the comments `age-keygen` writes.
    /// `created` is an RFC 3339 time.
    pub fn to_identity_file(&self, created: &str) -> Zeroizing<String> {
        let secret = self.identity.to_string();
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient,
            secret.expose_secret()
        ))
    }
}

/// Why an identity file was refused. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("line {0}: not an age X25519 identity (AGE-SECRET-KEY-1…)")]
    InvalidIdentity(usize),
    #[error("line {0}: plugin identities are not supported")]
    PluginIdentity(usize),
    #[error("no identities found")]
    Empty,
}

/// Parses age's identity-file format: one `AGE-SECRET-KEY-1…` per line, `#` comments and
/// blank lines ignored.
pub fn parse_identity_file(text: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("AGE-PLUGIN-") {
            return Err(KeyError::PluginIdentity(idx + 1));
        }
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| KeyError::InvalidIdentity(idx + 1))?;
        keys.push(Key::from_identity(identity));
    }
    if keys.is_empty() {
        return Err(KeyError::Empty);
    }
    Ok(keys)
}

/// The keys a controller or a recovery run holds. Sealed items name the fingerprints
/// they were sealed to; [`Keyring::ordered_for`] tries those keys first.
#[derive(Clone, Default)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new(keys: impl IntoIterator<Item = Key>) -> Self {
        let mut ring = Keyring::default();
        ring.extend(keys);
        ring
    }

    /// Adds keys, skipping any already present (compared by the whole public key, never
    /// by the 64-bit fingerprint alone, so a colliding key cannot hide another).
    pub fn extend(&mut self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            let recipient = key.recipient.to_string();
            if !self
                .keys
                .iter()
                .any(|k| k.recipient.to_string() == recipient)
            {
                self.keys.push(key);
            }
        }
    }

    pub fn get(&self, fingerprint: &Fingerprint) -> Option<&Key> {
        self.keys.iter().find(|k| &k.fingerprint == fingerprint)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }

    pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
        self.keys.iter().map(|k| &k.fingerprint)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// All keys, the ones whose fingerprints are in `hint` first.
    pub fn ordered_for<'a>(&'a self, hint: &'a [Fingerprint]) -> impl Iterator<Item = &'a Key> {
        let hinted = self.keys.iter().filter(|k| hint.contains(&k.fingerprint));
        let rest = self.keys.iter().filter(|k| !hint.contains(&k.fingerprint));
        hinted.chain(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_file_round_trips() {
        let key = Key::generate();
        let text = key.to_identity_file("2026-11-26T00:00:00Z");
        assert!(text.contains(&format!("# public key: {}", key.recipient())));
        let parsed = parse_identity_file(&text).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].fingerprint(), key.fingerprint());
    }

    #[test]
    fn bad_lines_are_named_without_content() {
        let err = parse_identity_file("# c\nAGE-SECRET-KEY-1NOPE\n")
            .err()
            .unwrap();
        assert_eq!(err, KeyError::InvalidIdentity(2));
        assert!(!err.to_string().contains("NOPE"));
        assert_eq!(parse_identity_file("\n").err(), Some(KeyError::Empty));
    }

    #[test]
    fn hinted_keys_come_first() {
        let (a, b) = (Key::generate(), Key::generate());
        let ring = Keyring::new([a.clone(), b.clone(), a.clone()]);
        assert_eq!(ring.len(), 2);
        let hint = [b.fingerprint().clone()];
        let order: Vec<_> = ring.ordered_for(&hint).map(|k| k.fingerprint()).collect();
        assert_eq!(order, [b.fingerprint(), a.fingerprint()]);
    }
}
