//! What a value under `<prefix>/secrets/` in etcd is: plaintext (protobuf or JSON), which
//! provider and key wrote it, or unknown. Only the prefix and the layout after it are
//! read; nothing is decrypted, and values never leave this module.

use serde::Serialize;

use crate::config::{KmsVersion, Provider, SecretsCoverage};

/// The provider a stored value names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoredProvider {
    Aescbc,
    Aesgcm,
    Secretbox,
    KmsV1,
    KmsV2,
}

impl StoredProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            StoredProvider::Aescbc => "aescbc",
            StoredProvider::Aesgcm => "aesgcm",
            StoredProvider::Secretbox => "secretbox",
            StoredProvider::KmsV1 => "kms-v1",
            StoredProvider::KmsV2 => "kms-v2",
        }
    }
}

/// The classification of one stored value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum Stored {
    /// `k8s\x00`: kube-apiserver's protobuf encoding, unencrypted.
    PlaintextProtobuf,
    /// `{`: JSON, unencrypted (`--storage-media-type=application/json`, or custom resources).
    PlaintextJson,
    Encrypted {
        provider: StoredProvider,
        /// The key name (aescbc, aesgcm, secretbox) or the KMS provider name.
        name: String,
        /// The bytes after the prefix have the provider's layout (IV, nonce and tag sizes,
        /// block multiple, KMS framing). False means corrupt or forged.
        well_formed: bool,
        /// KMS v2 only: the KEK id the plugin reported, stored in the clear.
        #[serde(skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
    },
    /// `k8s:enc:` with a provider kube-apiserver does not write, or anything else.
    Unknown,
}

impl Stored {
    pub fn is_plaintext(&self) -> bool {
        matches!(self, Stored::PlaintextProtobuf | Stored::PlaintextJson)
    }

    /// A short label for counts: `plaintext-protobuf`, `aescbc:key1`, `kms-v2:myKms`, …
    pub fn label(&self) -> String {
        match self {
            Stored::PlaintextProtobuf => "plaintext-protobuf".into(),
            Stored::PlaintextJson => "plaintext-json".into(),
            Stored::Encrypted {
                provider,
                name,
                well_formed,
                ..
            } => {
                let bad = if *well_formed { "" } else { " (malformed)" };
                format!("{}:{name}{bad}", provider.as_str())
            }
            Stored::Unknown => "unknown".into(),
        }
    }
}

const ENC: &[u8] = b"k8s:enc:";

/// Classifies a value. `known_names` are the key and KMS names from a config, used to
/// split a prefix whose key name contains `:`; without them a name ends at the first `:`.
pub fn classify(value: &[u8], known_names: &[String]) -> Stored {
    if value.starts_with(b"k8s\x00") {
        return Stored::PlaintextProtobuf;
    }
    if value.first() == Some(&b'{') {
        return Stored::PlaintextJson;
    }
    let Some(rest) = value.strip_prefix(ENC) else {
        return Stored::Unknown;
    };
    let (provider, rest) = if let Some(r) = rest.strip_prefix(b"aescbc:v1:") {
        (StoredProvider::Aescbc, r)
    } else if let Some(r) = rest.strip_prefix(b"aesgcm:v1:") {
        (StoredProvider::Aesgcm, r)
    } else if let Some(r) = rest.strip_prefix(b"secretbox:v1:") {
        (StoredProvider::Secretbox, r)
    } else if let Some(r) = rest.strip_prefix(b"kms:v1:") {
        (StoredProvider::KmsV1, r)
    } else if let Some(r) = rest.strip_prefix(b"kms:v2:") {
        (StoredProvider::KmsV2, r)
    } else {
        return Stored::Unknown;
    };
    let Some((name, body)) = split_name(rest, known_names) else {
        return Stored::Unknown;
    };
    let (well_formed, kms_key_id) = match provider {
        // IV[16] + at least one padded block.
        StoredProvider::Aescbc => (body.len() >= 32 && body.len() % 16 == 0, None),
        // nonce[12] + tag[16].
        StoredProvider::Aesgcm => (body.len() >= 28, None),
        // nonce[24] + Poly1305 tag[16].
        StoredProvider::Secretbox => (body.len() >= 40, None),
        StoredProvider::KmsV1 => (kms_v1_well_formed(body), None),
        StoredProvider::KmsV2 => match kms_v2_key_id(body) {
            Some(id) => (true, Some(id)),
            None => (false, None),
        },
    };
    Stored::Encrypted {
        provider,
        name,
        well_formed,
        kms_key_id,
    }
}

fn split_name<'a>(rest: &'a [u8], known_names: &[String]) -> Option<(String, &'a [u8])> {
    let known = known_names
        .iter()
        .filter(|n| rest.len() > n.len() && rest.starts_with(n.as_bytes()) && rest[n.len()] == b':')
        .max_by_key(|n| n.len());
    let end = match known {
        Some(n) => n.len(),
        None => rest.iter().take(256).position(|b| *b == b':')?,
    };
    let name = std::str::from_utf8(&rest[..end]).ok()?.to_owned();
    Some((name, &rest[end + 1..]))
}

/// `uint16 BE len(encDEK)` ‖ encDEK ‖ AES-GCM (nonce 12, tag 16) or, before 1.25,
/// AES-CBC (IV 16 + blocks).
fn kms_v1_well_formed(body: &[u8]) -> bool {
    let [hi, lo, rest @ ..] = body else {
        return false;
    };
    let dek_len = usize::from(u16::from_be_bytes([*hi, *lo]));
    dek_len > 0 && rest.len() >= dek_len + 28
}

/// The `keyID` (field 2) of a KMS v2 `EncryptedObject`, requiring the non-empty
/// `encryptedData` (1) and `encryptedDEKSource` (3) that kube-apiserver always writes.
fn kms_v2_key_id(mut body: &[u8]) -> Option<String> {
    let (mut data, mut key_id, mut dek) = (false, None, false);
    while !body.is_empty() {
        let (tag, rest) = varint(body)?;
        body = rest;
        match tag & 7 {
            0 => body = varint(body)?.1,
            2 => {
                let (len, rest) = varint(body)?;
                let len = usize::try_from(len).ok()?;
                if rest.len() < len {
                    return None;
                }
                let (field, rest) = rest.split_at(len);
                body = rest;
                match tag >> 3 {
                    1 => data = !field.is_empty(),
                    2 => key_id = Some(String::from_utf8(field.to_vec()).ok()?),
                    3 => dek = !field.is_empty(),
                    _ => {}
                }
            }
            _ => return None,
        }
    }
    key_id.filter(|k| data && dek && !k.is_empty())
}

fn varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// Where a stored value stands against the config the cluster runs now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    /// Written by the provider and key that write today.
    Current,
    /// Readable, but by a provider or key that is not first: a rewrite moves it.
    Stale,
    /// Stored in plaintext.
    Plaintext,
    /// The config has no provider or key for it: the apiserver cannot read it.
    Unreadable,
}

/// Compares a classification with the providers that apply to Secrets.
pub fn standing(stored: &Stored, coverage: &SecretsCoverage) -> Standing {
    let writer = coverage.writer();
    match stored {
        Stored::PlaintextProtobuf | Stored::PlaintextJson => {
            if coverage.providers.is_empty() || coverage.providers.contains(&Provider::Identity) {
                Standing::Plaintext
            } else {
                Standing::Unreadable
            }
        }
        Stored::Unknown => Standing::Unreadable,
        Stored::Encrypted {
            provider,
            name,
            well_formed,
            ..
        } => {
            if !well_formed {
                return Standing::Unreadable;
            }
            let matches = |p: &Provider| match (p, provider) {
                (Provider::Aescbc { keys }, StoredProvider::Aescbc)
                | (Provider::Aesgcm { keys }, StoredProvider::Aesgcm)
                | (Provider::Secretbox { keys }, StoredProvider::Secretbox) => {
                    keys.iter().position(|k| k == name)
                }
                (
                    Provider::Kms {
                        version: KmsVersion::V1,
                        name: n,
                    },
                    StoredProvider::KmsV1,
                )
                | (
                    Provider::Kms {
                        version: KmsVersion::V2,
                        name: n,
                    },
                    StoredProvider::KmsV2,
                ) => (n == name).then_some(0),
                _ => None,
            };
            match writer.and_then(matches) {
                Some(0) => Standing::Current,
                Some(_) => Standing::Stale,
                None if coverage
                    .providers
                    .iter()
                    .skip(1)
                    .any(|p| matches(p).is_some()) =>
                {
                    Standing::Stale
                }
                None => Standing::Unreadable,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_colons_split_by_config() {
        let value = b"k8s:enc:aescbc:v1:a:b:0123456789abcdef0123456789abcdef";
        let Stored::Encrypted { name, .. } = classify(value, &[]) else {
            panic!("not encrypted")
        };
        assert_eq!(name, "a");
        let Stored::Encrypted {
            name, well_formed, ..
        } = classify(value, &["a:b".to_owned()])
        else {
            panic!("not encrypted")
        };
        assert_eq!(name, "a:b");
        assert!(well_formed);
    }

    #[test]
    fn bare_prefixes_are_unknown_or_malformed() {
        assert_eq!(classify(b"k8s:enc:rot13:v1:k:xx", &[]), Stored::Unknown);
        assert_eq!(classify(b"k8s:enc:aescbc:v1:nocolon", &[]), Stored::Unknown);
        assert_eq!(classify(b"", &[]), Stored::Unknown);
        assert!(matches!(
            classify(b"k8s:enc:aescbc:v1:key1:short", &[]),
            Stored::Encrypted {
                well_formed: false,
                ..
            }
        ));
    }
}
