//! Secret values in the exact byte formats kube-apiserver writes to etcd, for the
//! at-rest scan tests: plaintext protobuf (`k8s\x00` + `runtime.Unknown`) and JSON,
//! aescbc, aesgcm, secretbox, KMS v1 and KMS v2 (really encrypted, with the layouts of
//! kube-apiserver's transformers in `k8s.io/apiserver/pkg/storage/value/encrypt/`).

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use crypto_secretbox::aead::{Aead, KeyInit};
use rand::RngCore;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

/// A Secret's protobuf body (`k8s.io/api/core/v1.Secret`): metadata (1) with name (1) and
/// namespace (3), data (2) as a map entry per item, type (3).
pub fn secret_protobuf(namespace: &str, name: &str, data: &[(&str, &[u8])]) -> Vec<u8> {
    let mut meta = Vec::new();
    field_bytes(&mut meta, 1, name.as_bytes());
    field_bytes(&mut meta, 3, namespace.as_bytes());
    let mut secret = Vec::new();
    field_bytes(&mut secret, 1, &meta);
    for (k, v) in data {
        let mut entry = Vec::new();
        field_bytes(&mut entry, 1, k.as_bytes());
        field_bytes(&mut entry, 2, v);
        field_bytes(&mut secret, 2, &entry);
    }
    field_bytes(&mut secret, 3, b"Opaque");
    // runtime.Unknown: typeMeta (1) {apiVersion 1, kind 2}, raw (2), contentEncoding (3),
    // contentType (4), behind the 4-byte magic.
    let mut type_meta = Vec::new();
    field_bytes(&mut type_meta, 1, b"v1");
    field_bytes(&mut type_meta, 2, b"Secret");
    let mut out = b"k8s\x00".to_vec();
    field_bytes(&mut out, 1, &type_meta);
    field_bytes(&mut out, 2, &secret);
    field_bytes(&mut out, 3, b"");
    field_bytes(&mut out, 4, b"");
    out
}

/// The JSON encoding (`--storage-media-type=application/json`), newline-terminated as
/// the apiserver's encoder writes it.
pub fn secret_json(namespace: &str, name: &str, data: &[(&str, &[u8])]) -> Vec<u8> {
    use base64::Engine as _;
    let data: serde_json::Map<String, serde_json::Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                base64::engine::general_purpose::STANDARD.encode(v).into(),
            )
        })
        .collect();
    let mut out = serde_json::to_vec(&serde_json::json!({
        "kind": "Secret", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace},
        "data": data, "type": "Opaque"
    }))
    .unwrap_or_default();
    out.push(b'\n');
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// `nonce[12]` ‖ AES-GCM(ciphertext ‖ tag) with the etcd key as additional data.
fn gcm(key: &[u8; 32], plaintext: &[u8], aad: &[u8], nonce: [u8; 12]) -> Vec<u8> {
    let Ok(unbound) = UnboundKey::new(&AES_256_GCM, key) else {
        return Vec::new();
    };
    let key = LessSafeKey::new(unbound);
    let mut sealed = plaintext.to_vec();
    let _ = key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut sealed,
    );
    let mut out = nonce.to_vec();
    out.extend(sealed);
    out
}

/// `k8s:enc:aescbc:v1:<key>:` ‖ IV[16] ‖ AES-CBC(PKCS#7).
pub fn aescbc(key_name: &str, key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let iv = random::<16>();
    let ct = cbc::Encryptor::<aes::Aes256>::new(key.into(), &iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
    let mut out = format!("k8s:enc:aescbc:v1:{key_name}:").into_bytes();
    out.extend(iv);
    out.extend(ct);
    out
}

/// `k8s:enc:aesgcm:v1:<key>:` ‖ nonce[12] ‖ ciphertext ‖ tag[16], bound to the etcd key.
pub fn aesgcm(key_name: &str, key: &[u8; 32], plaintext: &[u8], etcd_key: &str) -> Vec<u8> {
    let mut out = format!("k8s:enc:aesgcm:v1:{key_name}:").into_bytes();
    out.extend(gcm(key, plaintext, etcd_key.as_bytes(), random()));
    out
}

/// `k8s:enc:secretbox:v1:<key>:` ‖ nonce[24] ‖ NaCl secretbox (tag first).
pub fn secretbox(key_name: &str, key: &[u8; 32], plaintext: &[u8]) -> Vec<u8> {
    let nonce = random::<24>();
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(key.into());
    let sealed = cipher.encrypt(&nonce.into(), plaintext).unwrap_or_default();
    let mut out = format!("k8s:enc:secretbox:v1:{key_name}:").into_bytes();
    out.extend(nonce);
    out.extend(sealed);
    out
}

/// `k8s:enc:kms:v1:<name>:` ‖ uint16 BE len(encDEK) ‖ encDEK ‖ AES-GCM(DEK). The
/// "plugin" here wraps the DEK by prefixing a marker: only the framing matters.
pub fn kms_v1(name: &str, plaintext: &[u8], etcd_key: &str) -> Vec<u8> {
    let dek = random::<32>();
    let mut enc_dek = b"plugin-wrapped:".to_vec();
    enc_dek.extend(random::<32>());
    let mut out = format!("k8s:enc:kms:v1:{name}:").into_bytes();
    out.extend((enc_dek.len() as u16).to_be_bytes());
    out.extend(&enc_dek);
    out.extend(gcm(&dek, plaintext, etcd_key.as_bytes(), random()));
    out
}

/// `k8s:enc:kms:v2:<name>:` ‖ protobuf `EncryptedObject`: encryptedData (1) =
/// info[32] ‖ nonce[12] ‖ AES-GCM with HKDF-SHA256(seed, info), keyID (2),
/// encryptedDEKSource (3), one annotation (4), encryptedDEKSourceType (5) = 1.
pub fn kms_v2(name: &str, key_id: &str, plaintext: &[u8], etcd_key: &str) -> Vec<u8> {
    let seed = random::<32>();
    let info = random::<32>();
    let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]);
    let mut dek = [0u8; 32];
    let infos = [info.as_slice()];
    if let Ok(okm) = salt.extract(&seed).expand(&infos, ring::hkdf::HKDF_SHA256) {
        let _ = okm.fill(&mut dek);
    }
    let mut data = info.to_vec();
    data.extend(gcm(&dek, plaintext, etcd_key.as_bytes(), random()));
    let mut object = Vec::new();
    field_bytes(&mut object, 1, &data);
    field_bytes(&mut object, 2, key_id.as_bytes());
    let mut enc_seed = b"plugin-wrapped-seed:".to_vec();
    enc_seed.extend(random::<32>());
    field_bytes(&mut object, 3, &enc_seed);
    let mut annotation = Vec::new();
    field_bytes(&mut annotation, 1, b"version.kms.example.com");
    field_bytes(&mut annotation, 2, b"1");
    field_bytes(&mut object, 4, &annotation);
    varint(&mut object, 5 << 3);
    varint(&mut object, 1);
    let mut out = format!("k8s:enc:kms:v2:{name}:").into_bytes();
    out.extend(object);
    out
}

/// `runtime.Unknown` as kube-apiserver stores it: only `raw` (2) is read.
#[derive(Clone, PartialEq, prost::Message)]
struct Unknown {
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
}

/// `k8s.io/api/core/v1.Secret`: only `data` (2) is read.
#[derive(Clone, PartialEq, prost::Message)]
struct SecretData {
    #[prost(btree_map = "string, bytes", tag = "2")]
    data: std::collections::BTreeMap<String, Vec<u8>>,
}

/// The item names of a Secret as kube-apiserver stored it unencrypted (`k8s\x00` +
/// protobuf), or `None` when the value is not that.
pub fn stored_secret_items(stored: &[u8]) -> Option<Vec<String>> {
    use prost::Message;
    let body = stored.strip_prefix(b"k8s\x00")?;
    let unknown = Unknown::decode(body).ok()?;
    let secret = SecretData::decode(unknown.raw.as_slice()).ok()?;
    Some(secret.data.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_items_read_back_what_was_written() {
        let stored = secret_protobuf("ns", "db", &[("b", b"2"), ("a", b"1")]);
        assert_eq!(stored_secret_items(&stored).unwrap(), ["a", "b"]);
        let empty = secret_protobuf("ns", "db", &[]);
        assert!(stored_secret_items(&empty).unwrap().is_empty());
        assert_eq!(stored_secret_items(b"k8s:enc:aescbc:v1:key1:..."), None);
    }
}
