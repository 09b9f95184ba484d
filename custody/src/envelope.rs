//! The stored format of a key under custody ([`WrappedIdentity`], the JSON in the key
//! Secret) and the sealing of its identity under a data key. Pure logic: the custodian
//! that wraps the data key is [`crate::kms`].
//!
//! The identity is sealed with ChaCha20-Poly1305 under a fresh 32-byte data key, with its
//! [`Context`] (cluster, namespace, Secret name, recipient) and the custodian's kind as
//! associated data: the data key alone does not open it anywhere else.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::Error;

/// The format's version, written in every [`WrappedIdentity`].
pub const VERSION: u32 = 1;
/// A stored document is refused above this size, before it is parsed.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// KMS v2 bounds a key id at 1 kB.
const MAX_KEY_ID: usize = 1024;
/// A wrapped data key, and the annotations beside it, are refused above this size.
const MAX_WRAPPED: usize = 16 * 1024;
/// An age identity is a few hundred bytes (a post-quantum one included).
const MAX_IDENTITY: usize = 8 * 1024;
const DATA_KEY_LEN: usize = 32;

/// Where a wrapped key belongs. All of it is authenticated: a wrapped key copied to
/// another Secret, namespace or cluster, or relabelled with another recipient, does not
/// open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The cluster's identity (the UID of its `kube-system` namespace).
    pub cluster: String,
    pub namespace: String,
    /// The key Secret's name.
    pub name: String,
    /// The recipient of the identity, as the Secret publishes it.
    pub recipient: String,
}

impl Context {
    /// The associated data: a label, then each field length-prefixed, so no two contexts
    /// share an encoding.
    fn aad(&self, custodian: &str) -> Vec<u8> {
        let mut aad = b"kseal.dev/custody v1".to_vec();
        for field in [
            custodian,
            &self.cluster,
            &self.namespace,
            &self.name,
            &self.recipient,
        ] {
            aad.extend_from_slice(&(field.len() as u64).to_be_bytes());
            aad.extend_from_slice(field.as_bytes());
        }
        aad
    }

    /// `namespace/name in cluster UID`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}/{} in cluster {}",
            self.namespace, self.name, self.cluster
        )
    }
}

/// A key under custody as the key Secret stores it: the identity sealed under a data key,
/// and the data key as the custodian wrapped it (with the KEK id and annotations the
/// custodian needs to unwrap it). Binary fields are base64.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WrappedIdentity {
    pub version: u32,
    /// The custodian's kind (`kms-v2`).
    pub custodian: String,
    /// The custodian's key id for the KEK that wrapped the data key.
    pub kek_id: String,
    /// What the custodian returned beside the wrapped data key (KMS v2 annotations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub wrapped_key: String,
    pub nonce: String,
    pub sealed_identity: String,
}

/// A data key as a custodian wrapped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedDataKey {
    pub kek_id: String,
    pub ciphertext: Vec<u8>,
    pub annotations: BTreeMap<String, Vec<u8>>,
}

/// A [`WrappedIdentity`] decoded and checked against the bounds.
pub struct Parts {
    pub wrapped: WrappedDataKey,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

/// A data key in the clear: in memory only, zeroized on drop.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl DataKey {
    /// A fresh key from the system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        SystemRandom::new()
            .fill(key.as_mut())
            .map_err(|_| Error::Malformed("no randomness for a data key".into()))?;
        Ok(DataKey(key))
    }

    /// The key a custodian unwrapped: exactly 32 bytes.
    pub fn from_unwrapped(bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; DATA_KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::Malformed(format!(
                "the custodian unwrapped {} bytes, not a {DATA_KEY_LEN}-byte data key",
                bytes.len()
            ))
        })?;
        Ok(DataKey(Zeroizing::new(key)))
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    fn aead(&self) -> LessSafeKey {
        // 32 bytes is ChaCha20-Poly1305's key length: this cannot fail.
        let key = UnboundKey::new(&CHACHA20_POLY1305, self.as_bytes())
            .unwrap_or_else(|_| unreachable!("a 32-byte ChaCha20-Poly1305 key"));
        LessSafeKey::new(key)
    }
}

impl WrappedIdentity {
    /// The JSON stored in the key Secret.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and a string map: serializing it cannot fail.
        serde_json::to_vec(self).unwrap_or_else(|_| unreachable!("strings serialize"))
    }

    /// Reads what [`Self::to_json`] wrote; the size is bounded before parsing.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_DOCUMENT {
            return Err(Error::Malformed(format!(
                "{} bytes, more than the {MAX_DOCUMENT} a wrapped key takes",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Error::Malformed(format!("not kseal's JSON: {e}")))
    }

    /// Decodes the binary fields, checking the version and every bound.
    pub fn parts(&self) -> Result<Parts, Error> {
        if self.version != VERSION {
            return Err(Error::Malformed(format!(
                "version {} (this kseal reads version {VERSION})",
                self.version
            )));
        }
        if self.kek_id.is_empty() || self.kek_id.len() > MAX_KEY_ID {
            return Err(Error::Malformed(format!(
                "a KEK id of {} bytes (1 to {MAX_KEY_ID})",
                self.kek_id.len()
            )));
        }
        let decode = |field: &str, text: &str, max: usize| {
            if text.len() > max.div_ceil(3) * 4 {
                return Err(Error::Malformed(format!("{field} longer than {max} bytes")));
            }
            STANDARD
                .decode(text)
                .map_err(|_| Error::Malformed(format!("{field} is not base64")))
        };
        let mut annotations = BTreeMap::new();
        let mut annotated = 0;
        for (name, value) in &self.annotations {
            let value = decode("an annotation", value, MAX_WRAPPED)?;
            annotated += name.len() + value.len();
            annotations.insert(name.clone(), value);
        }
        if annotated > MAX_WRAPPED {
            return Err(Error::Malformed(format!(
                "annotations longer than {MAX_WRAPPED} bytes"
            )));
        }
        let nonce = decode("nonce", &self.nonce, NONCE_LEN)?
            .try_into()
            .map_err(|_| Error::Malformed(format!("nonce is not {NONCE_LEN} bytes")))?;
        Ok(Parts {
            wrapped: WrappedDataKey {
                kek_id: self.kek_id.clone(),
                ciphertext: decode("wrappedKey", &self.wrapped_key, MAX_WRAPPED)?,
                annotations,
            },
            nonce,
            sealed: decode(
                "sealedIdentity",
                &self.sealed_identity,
                MAX_IDENTITY + CHACHA20_POLY1305.tag_len(),
            )?,
        })
    }
}

/// Seals `identity` for `context` under `data_key`, beside the data key as `custodian`
/// wrapped it.
pub fn seal(
    data_key: &DataKey,
    identity: &[u8],
    context: &Context,
    custodian: &str,
    wrapped: WrappedDataKey,
) -> Result<WrappedIdentity, Error> {
    if identity.len() > MAX_IDENTITY {
        return Err(Error::Malformed(format!(
            "an identity of {} bytes (at most {MAX_IDENTITY})",
            identity.len()
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::Malformed("no randomness for a nonce".into()))?;
    let mut sealed = Zeroizing::new(identity.to_vec());
    data_key
        .aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.aad(custodian)),
            &mut *sealed,
        )
        .map_err(|_| Error::Malformed("sealing the identity failed".into()))?;
    Ok(WrappedIdentity {
        version: VERSION,
        custodian: custodian.to_owned(),
        kek_id: wrapped.kek_id,
        annotations: wrapped
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), STANDARD.encode(v)))
            .collect(),
        wrapped_key: STANDARD.encode(&wrapped.ciphertext),
        nonce: STANDARD.encode(nonce),
        sealed_identity: STANDARD.encode(&*sealed),
    })
}

/// Opens the identity in `parts` with `data_key`, for `context` only.
pub fn open(
    data_key: &DataKey,
    parts: &Parts,
    context: &Context,
    custodian: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut in_out = Zeroizing::new(parts.sealed.clone());
    let opened = data_key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(parts.nonce),
            Aad::from(context.aad(custodian)),
            &mut in_out,
        )
        .map_err(|_| Error::WrongContext(context.describe()))?;
    Ok(Zeroizing::new(opened.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context {
        Context {
            cluster: "c0ffee".into(),
            namespace: "kseal-system".into(),
            name: "kseal-key-1".into(),
            recipient: "age1example".into(),
        }
    }

    fn sealed(identity: &[u8]) -> (DataKey, WrappedIdentity) {
        let key = DataKey::generate().unwrap();
        let wrapped = WrappedDataKey {
            kek_id: "kek-1".into(),
            ciphertext: b"wrapped by the custodian".to_vec(),
            annotations: BTreeMap::from([("kms.example/v".into(), b"1".to_vec())]),
        };
        let doc = seal(&key, identity, &context(), "kms-v2", wrapped).unwrap();
        (key, doc)
    }

    #[test]
    fn opens_in_its_context_only() {
        let identity = b"AGE-SECRET-KEY-1EXAMPLE";
        let (key, doc) = sealed(identity);
        let doc = WrappedIdentity::from_json(&doc.to_json()).unwrap();
        let parts = doc.parts().unwrap();
        assert_eq!(
            &*open(&key, &parts, &context(), "kms-v2").unwrap(),
            identity
        );
        assert_eq!(parts.wrapped.kek_id, "kek-1");
        for moved in [
            Context {
                name: "kseal-key-2".into(),
                ..context()
            },
            Context {
                namespace: "other".into(),
                ..context()
            },
            Context {
                cluster: "another-cluster".into(),
                ..context()
            },
            Context {
                recipient: "age1other".into(),
                ..context()
            },
        ] {
            let err = open(&key, &parts, &moved, "kms-v2").unwrap_err();
            assert!(matches!(err, Error::WrongContext(_)), "{err}");
        }
        assert!(open(&key, &parts, &context(), "pkcs11").is_err());
        let other_key = DataKey::generate().unwrap();
        assert!(open(&other_key, &parts, &context(), "kms-v2").is_err());
    }

    #[test]
    fn a_flipped_bit_anywhere_in_the_sealed_identity_fails() {
        let (key, doc) = sealed(b"AGE-SECRET-KEY-1EXAMPLE");
        let sealed = STANDARD.decode(&doc.sealed_identity).unwrap();
        for i in 0..sealed.len() * 8 {
            let mut flipped = sealed.clone();
            flipped[i / 8] ^= 1 << (i % 8);
            let doc = WrappedIdentity {
                sealed_identity: STANDARD.encode(&flipped),
                ..doc.clone()
            };
            assert!(open(&key, &doc.parts().unwrap(), &context(), "kms-v2").is_err());
        }
    }

    #[test]
    fn hostile_documents_are_refused_before_work_and_name_the_problem() {
        let (_, doc) = sealed(b"AGE-SECRET-KEY-1EXAMPLE");
        let huge = vec![b' '; MAX_DOCUMENT + 1];
        assert!(
            WrappedIdentity::from_json(&huge)
                .unwrap_err()
                .to_string()
                .contains("more than")
        );
        let cases = [
            (
                WrappedIdentity {
                    version: 2,
                    ..doc.clone()
                },
                "version 2",
            ),
            (
                WrappedIdentity {
                    kek_id: String::new(),
                    ..doc.clone()
                },
                "KEK id",
            ),
            (
                WrappedIdentity {
                    wrapped_key: "A".repeat(MAX_WRAPPED * 2),
                    ..doc.clone()
                },
                "wrappedKey longer",
            ),
            (
                WrappedIdentity {
                    nonce: STANDARD.encode([0u8; 8]),
                    ..doc.clone()
                },
                "nonce is not 12 bytes",
            ),
            (
                WrappedIdentity {
                    sealed_identity: "not base64!".into(),
                    ..doc.clone()
                },
                "sealedIdentity is not base64",
            ),
        ];
        for (bad, why) in cases {
            let err = bad.parts().err().expect("refused");
            assert!(err.to_string().contains(why), "{err} should say {why}");
        }
        assert!(
            WrappedIdentity::from_json(br#"{"version":1,"extra":true}"#).is_err(),
            "unknown fields are refused"
        );
    }

    #[test]
    fn errors_and_debug_output_carry_no_identity() {
        let identity = b"AGE-SECRET-KEY-1SECRETMATERIAL";
        let (_, doc) = sealed(identity);
        let text = format!("{doc:?} {}", String::from_utf8_lossy(&doc.to_json()));
        assert!(!text.contains("SECRETMATERIAL"));
        let err = open(
            &DataKey::generate().unwrap(),
            &doc.parts().unwrap(),
            &context(),
            "kms-v2",
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("SECRETMATERIAL"));
    }
}
