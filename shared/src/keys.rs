//! Private identities: parsing age identity files, generating keys, and the keyring that
//! opens sealed items.
//!
//! Key material stays inside age's types (which zeroize on drop) or in
//! [`zeroize::Zeroizing`] buffers; none of these types implements `Debug` or `Serialize`.

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use zeroize::{Zeroize, Zeroizing};

use crate::recipients::{Fingerprint, Recipient};

/// One private key with its public half and fingerprint.
#[derive(Clone)]
pub struct Key {
    kind: Kind,
    recipient: Recipient,
    fingerprint: Fingerprint,
}

/// The private key, and what opens stanzas with it.
#[derive(Clone)]
enum Kind {
    X25519 {
        identity: age::x25519::Identity,
        opener: X25519,
    },
    /// Post-quantum (`mlkem768x25519`): the identity opens its own stanzas.
    Pq(crate::pq::PqIdentity),
}

/// Opens age's `X25519` recipient stanzas (C2SP age, "X25519 recipient stanza") at the
/// cost of the one scalar multiplication each needs, done by AWS-LC. The age crate's own
/// identity derives the public key again for every stanza it tries (a second
/// multiplication) and multiplies with curve25519-dalek, about twice as slow here as
/// AWS-LC (`cargo bench -p kseal-cli --bench unseal`). The same checks: one canonical
/// base64 argument of 32 bytes, a 32-byte body, an all-zero shared secret refused.
#[derive(Clone)]
struct X25519 {
    secret: std::sync::Arc<aws_lc_rs::agreement::PrivateKey>,
    public: [u8; 32],
}

/// The type of age's X25519 recipient stanza.
pub(crate) const X25519_TAG: &str = "X25519";
const X25519_INFO: &[u8] = b"age-encryption.org/v1/X25519";

impl X25519 {
    /// From age's `AGE-SECRET-KEY-1…` string.
    fn from_age(identity: &age::x25519::Identity) -> Self {
        use aws_lc_rs::agreement;
        let encoded = identity.to_string();
        let (_, bytes) = bech32::decode(encoded.expose_secret())
            .expect("age encodes its own identities in Bech32");
        let bytes = Zeroizing::new(bytes);
        let secret = agreement::PrivateKey::from_private_key(&agreement::X25519, &bytes)
            .expect("an age X25519 identity is 32 bytes");
        let mut public = [0u8; 32];
        public.copy_from_slice(
            secret
                .compute_public_key()
                .expect("an X25519 private key has a public key")
                .as_ref(),
        );
        X25519 {
            secret: std::sync::Arc::new(secret),
            public,
        }
    }
}

impl age::Identity for X25519 {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        use base64::Engine;
        use ring::{aead, hkdf};
        if stanza.tag != X25519_TAG {
            return None;
        }
        let invalid = Some(Err(age::DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else {
            return invalid;
        };
        // Canonical: unpadded, and the decoder refuses non-zero trailing bits.
        let share: [u8; 32] = match base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(arg)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            Some(share) => share,
            None => return invalid,
        };
        let Ok(mut body) = <[u8; 32]>::try_from(&stanza.body[..]) else {
            return invalid;
        };
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&share);
        salt[32..].copy_from_slice(&self.public);
        // AWS-LC refuses an all-zero shared secret (a low-order share).
        let peer =
            aws_lc_rs::agreement::UnparsedPublicKey::new(&aws_lc_rs::agreement::X25519, share);
        let Ok(prk) = aws_lc_rs::agreement::agree(&self.secret, peer, (), |shared| {
            Ok(hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(shared))
        }) else {
            return invalid;
        };
        let key: aead::UnboundKey = prk
            .expand(&[X25519_INFO], &aead::CHACHA20_POLY1305)
            .expect("32 bytes is a valid HKDF-SHA256 output length")
            .into();
        let opened = aead::LessSafeKey::new(key).open_in_place(
            aead::Nonce::assume_unique_for_key([0; 12]),
            aead::Aad::empty(),
            &mut body,
        );
        // Not this key's stanza (there is no telling which key a stanza is for).
        let file_key = opened.ok()?;
        let result = age_core::format::FileKey::init_with_mut(|k| k.copy_from_slice(file_key));
        body.zeroize();
        Some(Ok(result))
    }
}

impl Key {
    /// A fresh random X25519 key.
    pub fn generate() -> Self {
        Self::from_identity(age::x25519::Identity::generate())
    }

    /// A fresh random post-quantum key (ML-KEM-768 + X25519).
    pub fn generate_pq() -> Self {
        Self::from_pq(crate::pq::PqIdentity::generate())
    }

    fn from_identity(identity: age::x25519::Identity) -> Self {
        let recipient = Recipient::X25519(identity.to_public());
        let fingerprint = recipient.fingerprint();
        Key {
            kind: Kind::X25519 {
                opener: X25519::from_age(&identity),
                identity,
            },
            recipient,
            fingerprint,
        }
    }

    fn from_pq(identity: crate::pq::PqIdentity) -> Self {
        let recipient = Recipient::Pq(identity.to_public());
        let fingerprint = recipient.fingerprint();
        Key {
            kind: Kind::Pq(identity),
            recipient,
            fingerprint,
        }
    }

    /// Whether this is a post-quantum key.
    pub fn is_pq(&self) -> bool {
        matches!(self.kind, Kind::Pq(_))
    }

    pub fn recipient(&self) -> &Recipient {
        &self.recipient
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub(crate) fn as_age(&self) -> &dyn age::Identity {
        match &self.kind {
            Kind::X25519 { opener, .. } => opener,
            Kind::Pq(identity) => identity,
        }
    }

    /// The key in age's identity-file format, with the comments `age-keygen` writes.
    /// `created` is an RFC 3339 time.
    pub fn to_identity_file(&self, created: &str) -> Zeroizing<String> {
        let secret = match &self.kind {
            Kind::X25519 { identity, .. } => {
                Zeroizing::new(identity.to_string().expose_secret().to_owned())
            }
            Kind::Pq(identity) => identity.to_secret_string(),
        };
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient, *secret
        ))
    }
}

/// Why an identity file was refused. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("line {0}: not an age identity (AGE-SECRET-KEY-1… or AGE-SECRET-KEY-PQ-1…)")]
    InvalidIdentity(usize),
    #[error("line {0}: plugin identities are not supported")]
    PluginIdentity(usize),
    #[error("no identities found")]
    Empty,
    #[error(
        "document {0}: not a kseal key Secret (kind Secret with data.{IDENTITY_KEY}; the backup is `kubectl get secret -n kseal-system -l kseal.dev/key -o yaml`)"
    )]
    NotKeySecret(usize),
    #[error("document {0}: data.{IDENTITY_KEY}: {1}")]
    InKeySecret(usize, Box<KeyError>),
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestError),
    #[error("not UTF-8 text")]
    NotText,
}

/// The item of a controller's key Secret that holds its age identity file.
pub const IDENTITY_KEY: &str = "identity.txt";

/// The keys in an identity file (see [`parse_identity_file`]), or in a backup of the
/// controller's key Secrets: a Secret, several YAML documents, or a `List`, in YAML or
/// JSON (`kubectl get secret -n kseal-system -l kseal.dev/key -o yaml`).
pub fn parse_identities(bytes: &[u8]) -> Result<Vec<Key>, KeyError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeyError::NotText)?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    let manifest = first.is_some_and(|l| {
        l.starts_with(['{', '['])
            || l.starts_with("---")
            || l.starts_with("apiVersion:")
            || l.starts_with("kind:")
    });
    if !manifest {
        return parse_identity_file(text);
    }
    let (_, docs) = crate::manifest::parse_documents(bytes)?;
    let mut keys = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let identity = (doc["kind"] == "Secret")
            .then(|| doc["data"][IDENTITY_KEY].as_str())
            .flatten()
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .ok()
                    .map(Zeroizing::new)
            })
            .ok_or(KeyError::NotKeySecret(i + 1))?;
        let text = std::str::from_utf8(&identity).map_err(|_| KeyError::NotKeySecret(i + 1))?;
        keys.extend(
            parse_identity_file(text).map_err(|e| KeyError::InKeySecret(i + 1, Box::new(e)))?,
        );
    }
    Ok(keys)
}

/// Parses age's identity-file format: one `AGE-SECRET-KEY-1…` (X25519) or
/// `AGE-SECRET-KEY-PQ-1…` (post-quantum) per line, `#` comments and blank lines ignored.
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
        let invalid = KeyError::InvalidIdentity(idx + 1);
        keys.push(if line.starts_with(crate::pq::IDENTITY_HRP) {
            Key::from_pq(line.parse().map_err(|_| invalid)?)
        } else {
            Key::from_identity(age::x25519::Identity::from_str(line).map_err(|_| invalid)?)
        });
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

    /// The keys to try on an item whose recipients hint is `hint`: the keys it names,
    /// when it names any this ring holds (never every key then: a lying hint makes the
    /// item fail, it does not buy trial decryptions); otherwise all of them.
    pub fn ordered_for<'a>(&'a self, hint: &'a [Fingerprint]) -> impl Iterator<Item = &'a Key> {
        let named = self.keys.iter().any(|k| hint.contains(&k.fingerprint));
        self.keys
            .iter()
            .filter(move |k| !named || hint.contains(&k.fingerprint))
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
    fn only_hinted_keys_are_tried_when_the_hint_names_one() {
        let (a, b, c) = (Key::generate(), Key::generate(), Key::generate());
        let ring = Keyring::new([a.clone(), b.clone(), a.clone()]);
        assert_eq!(ring.len(), 2);
        let tried = |hint: &[Fingerprint]| -> Vec<Fingerprint> {
            ring.ordered_for(hint)
                .map(|k| k.fingerprint().clone())
                .collect()
        };
        assert_eq!(tried(&[b.fingerprint().clone()]), [b.fingerprint().clone()]);
        // A hint naming only keys the ring does not hold (an escrow key), or none: all.
        let all = [a.fingerprint().clone(), b.fingerprint().clone()];
        assert_eq!(tried(&[c.fingerprint().clone()]), all);
        assert_eq!(tried(&[]), all);
    }

    fn opener(key: &Key) -> &X25519 {
        match &key.kind {
            Kind::X25519 { opener, .. } => opener,
            Kind::Pq(_) => unreachable!("an X25519 key"),
        }
    }

    fn identity(key: &Key) -> &age::x25519::Identity {
        match &key.kind {
            Kind::X25519 { identity, .. } => identity,
            Kind::Pq(_) => unreachable!("an X25519 key"),
        }
    }

    /// kseal's X25519 opener and age's own agree on every stanza: theirs, a stranger's,
    /// and malformed ones.
    #[test]
    fn the_opener_agrees_with_age() {
        use age::Identity;
        let key = Key::generate();
        let stranger = Key::generate();
        let file_key = age_core::format::FileKey::new(Box::new([7; 16]));
        let recipient: age::x25519::Recipient = key.recipient().to_string().parse().unwrap();
        let (stanzas, _) = age::Recipient::wrap_file_key(&recipient, &file_key).unwrap();
        let stanza = &stanzas[0];
        let copy = || age_core::format::Stanza {
            tag: stanza.tag.clone(),
            args: stanza.args.clone(),
            body: stanza.body.clone(),
        };
        let ours = opener(&key).unwrap_stanza(stanza).unwrap().unwrap();
        assert_eq!(ours.expose_secret(), &[7; 16]);
        assert!(opener(&stranger).unwrap_stanza(stanza).is_none());
        assert!(identity(&key).unwrap_stanza(stanza).unwrap().is_ok());
        let mut bad = copy();
        bad.args[0].push('A');
        assert!(matches!(opener(&key).unwrap_stanza(&bad), Some(Err(_))));
        assert!(matches!(identity(&key).unwrap_stanza(&bad), Some(Err(_))));
        // The all-zero share (a low-order point) gives an all-zero secret: refused.
        let mut zero = copy();
        zero.args[0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        assert!(matches!(opener(&key).unwrap_stanza(&zero), Some(Err(_))));
        assert!(matches!(identity(&key).unwrap_stanza(&zero), Some(Err(_))));
        let mut short = copy();
        short.body.pop();
        assert!(matches!(opener(&key).unwrap_stanza(&short), Some(Err(_))));
    }

    /// A backup of the controller's key Secrets (what `kubectl get secret -l
    /// kseal.dev/key -o yaml|json` prints) reads as the keys in it; anything else in it is
    /// named by its document, never by its content.
    #[test]
    fn a_key_secret_backup_reads_as_its_keys() {
        use base64::Engine as _;
        let keys: Vec<Key> = (0..3).map(|_| Key::generate()).collect();
        let secret = |key: &Key| {
            let file = key.to_identity_file("2026-12-02T00:00:00Z");
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "k", "namespace": "kseal-system"},
                "data": {IDENTITY_KEY: base64::engine::general_purpose::STANDARD.encode(file)},
            })
        };
        let list = serde_json::json!({
            "apiVersion": "v1", "kind": "List",
            "items": keys.iter().map(secret).collect::<Vec<_>>(),
        });
        let yaml = serde_saphyr::to_string(&list).unwrap();
        for backup in [list.to_string(), yaml] {
            let read = parse_identities(backup.as_bytes()).unwrap();
            let fingerprints: Vec<_> = read.iter().map(Key::fingerprint).collect();
            let want: Vec<_> = keys.iter().map(Key::fingerprint).collect();
            assert_eq!(fingerprints, want);
        }

        let mut other = secret(&keys[0]);
        other["kind"] = "ConfigMap".into();
        let mut broken = secret(&keys[0]);
        let garbage = base64::engine::general_purpose::STANDARD.encode("AGE-SECRET-KEY-1hunter2");
        broken["data"][IDENTITY_KEY] = garbage.into();
        for (doc, want) in [
            (other, "document 2: not a kseal key Secret"),
            (
                broken,
                "document 2: data.identity.txt: line 1: not an age identity",
            ),
        ] {
            let list = serde_json::json!({"kind": "List", "items": [secret(&keys[1]), doc]});
            let e = parse_identities(list.to_string().as_bytes())
                .err()
                .unwrap()
                .to_string();
            assert!(e.starts_with(want), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(parse_identities(b"\xff").err(), Some(KeyError::NotText));
    }
}
