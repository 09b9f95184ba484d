//! Bitnami's private keys (PEM, PKCS#1 or PKCS#8, or the Secrets that hold them) and the
//! opening of one value with them: RSA-OAEP for the session key, AES-256-GCM for the
//! value.

use super::*;

/// Why a Bitnami key could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no RSA private key found (expected PEM, or a Secret or List of Secrets with tls.key)")]
    NoKey,
    #[error("not a PEM file, nor a Kubernetes Secret or List in YAML or JSON")]
    Unreadable,
    #[error("a {0} key, not RSA: Bitnami sealed-secrets keys are RSA")]
    NotRsa(&'static str),
    #[error("the RSA key is invalid or smaller than 2048 bits")]
    Rejected,
    #[error("{0}: tls.key is not valid base64")]
    SecretData(String),
}

/// Why one Bitnami value could not be opened. Names no ciphertext or plaintext.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("not valid base64")]
    Base64,
    #[error("too large: a Secret holds at most 1 MiB")]
    TooLarge,
    #[error("truncated: shorter than its RSA block")]
    Truncated,
    #[error(
        "no key could decrypt it (tried {0}): wrong key, or moved from the namespace or name it was sealed for"
    )]
    NoKey(usize),
    #[error("the value's AES-GCM tag does not match: tampered or truncated")]
    Tampered,
    /// The object's budget of RSA decryptions ran out ([`Trials`]).
    #[error("the object's budget of RSA decryptions ran out")]
    OverBudget,
}

/// The RSA decryptions one object may still cost, and the key that opened the value
/// before (tried first: a Bitnami SealedSecret's items are mostly sealed with one key).
#[derive(Debug)]
pub struct Trials {
    left: usize,
    first: usize,
}

impl Trials {
    /// At most `budget` RSA decryptions.
    pub fn new(budget: usize) -> Self {
        Trials {
            left: budget,
            first: 0,
        }
    }

    /// No bound: for one value, opened on the user's own machine.
    pub fn unbounded() -> Self {
        Trials::new(usize::MAX)
    }
}

/// One Bitnami controller key.
pub struct BitnamiKey {
    key: OaepPrivateDecryptingKey,
    /// `SHA256:` of the public key (SubjectPublicKeyInfo DER), hex, first 16 digits.
    pub fingerprint: String,
    pub bits: usize,
}

impl std::fmt::Debug for BitnamiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BitnamiKey({}, {} bits)", self.fingerprint, self.bits)
    }
}

/// The Bitnami keys a migration or the drop-in mode opens values with. Every key is
/// tried for every value, as the Bitnami controller does: its format names no key.
#[derive(Debug, Default)]
pub struct BitnamiKeys(Vec<BitnamiKey>);

impl BitnamiKeys {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.0.iter().map(|k| k.fingerprint.clone()).collect()
    }

    /// Adds every RSA private key in `bytes`: PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8
    /// `PRIVATE KEY`), or YAML/JSON holding Secrets (a `List` too, as `kubectl get secret
    /// -o yaml` prints them) whose `tls.key` is such a PEM. Returns how many were added;
    /// a key already present is not added twice.
    pub fn add(&mut self, bytes: &[u8]) -> Result<usize, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Unreadable)?;
        if text.trim_start().starts_with("-----BEGIN") {
            return self.add_pem(bytes);
        }
        let (_, docs) =
            crate::manifest::parse_documents(bytes).map_err(|_| KeyError::Unreadable)?;
        let mut added = 0;
        for doc in docs {
            if doc["kind"].as_str() != Some("Secret") {
                continue;
            }
            let name = doc["metadata"]["name"].as_str().unwrap_or("(no name)");
            let Some(encoded) = doc["data"]["tls.key"].as_str() else {
                continue;
            };
            let pem = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .map_err(|_| KeyError::SecretData(crate::resource::printable(name).into()))?,
            );
            added += self.add_pem(&pem)?;
        }
        if added == 0 && self.0.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(added)
    }

    fn add_pem(&mut self, pem: &[u8]) -> Result<usize, KeyError> {
        let mut added = 0;
        for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem) {
            let (kind, der) = section.map_err(|_| KeyError::Unreadable)?;
            let der = Zeroizing::new(der);
            let pkcs8 = match kind {
                SectionKind::RsaPrivateKey => pkcs1_to_pkcs8(&der),
                SectionKind::PrivateKey => der,
                SectionKind::EcPrivateKey => return Err(KeyError::NotRsa("EC")),
                _ => continue,
            };
            let key = PrivateDecryptingKey::from_pkcs8(&pkcs8).map_err(|_| KeyError::Rejected)?;
            let spki = AsDer::<PublicKeyX509Der>::as_der(&key.public_key())
                .map_err(|_| KeyError::Rejected)?;
            let digest = ring::digest::digest(&ring::digest::SHA256, spki.as_ref());
            let fingerprint = format!(
                "SHA256:{}",
                digest.as_ref()[..8]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
            if self.0.iter().any(|k| k.fingerprint == fingerprint) {
                continue;
            }
            let bits = key.key_size_bits();
            let key = OaepPrivateDecryptingKey::new(key).map_err(|_| KeyError::Rejected)?;
            self.0.push(BitnamiKey {
                key,
                fingerprint,
                bits,
            });
            added += 1;
        }
        if added == 0 && self.0.is_empty() {
            return Err(KeyError::NoKey);
        }
        Ok(added)
    }

    /// Opens one sealed value with `label` (see [`label`]), spending `trials`.
    pub fn open(
        &self,
        label: &[u8],
        value: &str,
        trials: &mut Trials,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        if value.len() > MAX_VALUE_BASE64 {
            return Err(OpenError::TooLarge);
        }
        let blob = STANDARD.decode(value).map_err(|_| OpenError::Base64)?;
        self.open_bytes(label, &blob, trials)
    }

    /// [`open`](Self::open), for a value already base64-decoded. Keys are tried from the
    /// one that opened the value before; each RSA decryption spends one of `trials`.
    pub fn open_bytes(
        &self,
        label: &[u8],
        blob: &[u8],
        trials: &mut Trials,
    ) -> Result<Zeroizing<Vec<u8>>, OpenError> {
        let (len, rest) = blob.split_first_chunk::<2>().ok_or(OpenError::Truncated)?;
        let rsa_len = usize::from(u16::from_be_bytes(*len));
        if rest.len() < rsa_len {
            return Err(OpenError::Truncated);
        }
        let (rsa, sealed) = rest.split_at(rsa_len);
        let n = self.0.len();
        for i in (0..n).map(|i| (trials.first + i) % n) {
            let key = &self.0[i];
            if key.key.key_size_bytes() != rsa_len {
                continue;
            }
            if trials.left == 0 {
                return Err(OpenError::OverBudget);
            }
            trials.left -= 1;
            let mut out = Zeroizing::new(vec![0u8; key.key.min_output_size()]);
            let Ok(session) = key
                .key
                .decrypt(&OAEP_SHA256_MGF1SHA256, rsa, &mut out, Some(label))
            else {
                continue;
            };
            let Ok(session) = <&[u8; 32]>::try_from(&session[..]) else {
                continue;
            };
            trials.first = i;
            return open_gcm(session, sealed);
        }
        Err(OpenError::NoKey(self.0.len()))
    }
}

/// AES-256-GCM open with a zero nonce and no associated data (the session key is used
/// once).
fn open_gcm(session: &[u8; 32], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = UnboundKey::new(&AES_256_GCM, session).map_err(|_| OpenError::Tampered)?;
    let key = LessSafeKey::new(key);
    let mut buf = Zeroizing::new(sealed.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut buf,
        )
        .map_err(|_| OpenError::Tampered)?
        .len();
    buf.truncate(len);
    Ok(buf)
}

/// PKCS#8 `PrivateKeyInfo` around a PKCS#1 `RSAPrivateKey` (aws-lc-rs reads PKCS#8).
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    const VERSION_AND_ALGORITHM: &[u8] = &[
        0x02, 0x01, 0x00, // version 0
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
        0x00, // rsaEncryption, NULL
    ];
    let mut octets = Zeroizing::new(vec![0x04]);
    der_length(&mut octets, pkcs1.len());
    octets.extend_from_slice(pkcs1);
    let mut out = Zeroizing::new(vec![0x30]);
    der_length(&mut out, VERSION_AND_ALGORITHM.len() + octets.len());
    out.extend_from_slice(VERSION_AND_ALGORITHM);
    out.extend_from_slice(&octets);
    out
}

pub(super) fn der_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
        return;
    }
    let bytes = len.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.push(0x80 | (bytes.len() - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}
