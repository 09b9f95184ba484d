//! Post-quantum age: the hybrid ML-KEM-768 + X25519 recipient type of C2SP `age.md`
//! ("The MLKEM768-X25519 hybrid post-quantum recipient type"), as Go age 1.3 writes it.
//!
//! - An identity is 32 random bytes (`AGE-SECRET-KEY-PQ-1…`, Bech32); its recipient is the
//!   1216-byte X-Wing encapsulation key (`age1pq1…`, Bech32 past the usual 90 characters).
//! - A stanza is `-> mlkem768x25519 <base64 enc>` with the 32-byte body: HPKE base mode
//!   (RFC 9180) with the X-Wing KEM (0x647a), HKDF-SHA256 and ChaCha20Poly1305, info
//!   `age-encryption.org/mlkem768x25519`, sealing the 16-byte file key.
//! - Decrypting, as the spec requires: stanzas of other types are ignored; exactly one
//!   argument, canonical base64 of exactly 1120 bytes; a body of exactly 32 bytes, checked
//!   before anything is decrypted; an X25519 share giving the all-zero secret is refused.
//! - Parsing a recipient, as Go age does: the ML-KEM key passes FIPS 203's modulus check
//!   (it encodes back to the same bytes) and the X25519 half is not of small order; a
//!   recipient that fails either could never open what is sealed to it.
//! - Its recipients carry age's `postquantum` label: age refuses to seal one file to
//!   them and to classic recipients (a classic stanza would undo the protection).
//!
//! The KEM is X-Wing (draft-connolly-cfrg-xwing-kem, the hpke-pq MLKEM768-X25519): ML-KEM-768
//! from RustCrypto's `ml-kem` (the version the `age` crate already builds), X25519 from
//! AWS-LC (which refuses the all-zero secret, as age must), SHA-3 for its key expansion
//! and combiner: the few lines of [`xwing`]. RustCrypto's `x-wing` crate needs a newer
//! `kem` than `age` 0.12 can share a build with. The HPKE key schedule is the few lines
//! of RFC 9180 §5.1 over `ring`'s HKDF and AEAD. The C2SP CCTV hybrid vectors run
//! against this module (`shared/tests/pq_vectors.rs`).

use std::fmt;
use std::str::FromStr;

use age_core::format::{FileKey, Stanza};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bech32::primitives::decode::CheckedHrpstring;
use bech32::{Checksum, Hrp};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{aead, hkdf};
use zeroize::{Zeroize, Zeroizing};

/// The stanza's type.
pub const TAG: &str = "mlkem768x25519";
/// age's label for recipients that must not share a file with classic ones.
pub const LABEL: &str = "postquantum";
/// The HRP of a recipient (`age1pq1…`).
pub const RECIPIENT_HRP: &str = "age1pq";
/// The HRP of an identity (`AGE-SECRET-KEY-PQ-1…`).
pub const IDENTITY_HRP: &str = "AGE-SECRET-KEY-PQ-";

const INFO: &[u8] = b"age-encryption.org/mlkem768x25519";
/// RFC 9180 `suite_id`: "HPKE", KEM 0x647a (MLKEM768-X25519), KDF 0x0001 (HKDF-SHA256),
/// AEAD 0x0003 (ChaCha20Poly1305).
const SUITE_ID: &[u8; 10] = b"HPKE\x64\x7a\x00\x01\x00\x03";
const ENC_BYTES: usize = xwing::CIPHERTEXT_BYTES;
const KEY_BYTES: usize = xwing::PUBLIC_KEY_BYTES;
const BODY_BYTES: usize = 16 + 16;

/// X-Wing: ML-KEM-768 and X25519 under a SHA3-256 combiner.
mod xwing {
    use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
    use ml_kem::kem::Decapsulate;
    use ml_kem::{B32, EncapsulateDeterministic, EncodedSizeUser, KemCore, MlKem768};
    use sha3::digest::{ExtendableOutput, Update, XofReader};
    use sha3::{Digest, Sha3_256, Shake256};
    use zeroize::Zeroizing;

    pub const PUBLIC_KEY_BYTES: usize = 1184 + 32;
    pub const CIPHERTEXT_BYTES: usize = 1088 + 32;
    pub const RANDOMNESS_BYTES: usize = 64;
    const LABEL: &[u8] = br"\.//^\";

    type DecapsulationKey = <MlKem768 as KemCore>::DecapsulationKey;
    type EncapsulationKey = <MlKem768 as KemCore>::EncapsulationKey;

    /// A private key expanded from its 32-byte seed.
    pub struct Expanded {
        ml_kem: DecapsulationKey,
        x25519: PrivateKey,
        pub public: Box<[u8; PUBLIC_KEY_BYTES]>,
    }

    /// `expandKey`: SHAKE256(seed, 96) is the ML-KEM seed (d ‖ z) and the X25519 scalar.
    pub fn expand(seed: &[u8; 32]) -> Expanded {
        let mut xof = Shake256::default();
        xof.update(seed);
        let mut wide = Zeroizing::new([0u8; 96]);
        xof.finalize_xof().read(&mut wide[..]);
        let d = B32::try_from(&wide[..32]).expect("32 bytes");
        let z = B32::try_from(&wide[32..64]).expect("32 bytes");
        let (ml_kem, ek) = MlKem768::generate_deterministic(&d, &z);
        let x25519 = PrivateKey::from_private_key(&X25519, &wide[64..])
            .expect("any 32 bytes are an X25519 scalar");
        let mut public = Box::new([0u8; PUBLIC_KEY_BYTES]);
        public[..1184].copy_from_slice(&ek.as_bytes());
        public[1184..].copy_from_slice(
            x25519
                .compute_public_key()
                .expect("an X25519 key has a public key")
                .as_ref(),
        );
        Expanded {
            ml_kem,
            x25519,
            public,
        }
    }

    fn combine(ss_m: &[u8], ss_x: &[u8], ct_x: &[u8], pk_x: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut hash = Sha3_256::new();
        for part in [ss_m, ss_x, ct_x, pk_x, LABEL] {
            Digest::update(&mut hash, part);
        }
        Zeroizing::new(hash.finalize().into())
    }

    /// Encapsulates to `public` with `randomness` (32 bytes for ML-KEM, 32 for the
    /// ephemeral X25519 key). `None` when the X25519 half is a low-order point.
    pub fn encapsulate(
        public: &[u8; PUBLIC_KEY_BYTES],
        randomness: &[u8; RANDOMNESS_BYTES],
    ) -> Option<([u8; CIPHERTEXT_BYTES], Zeroizing<[u8; 32]>)> {
        let encoded = ml_kem::Encoded::<EncapsulationKey>::try_from(&public[..1184]).ok()?;
        let ek = EncapsulationKey::from_bytes(&encoded);
        let m = B32::try_from(&randomness[..32]).ok()?;
        let (ct_m, ss_m) = ek.encapsulate_deterministic(&m).ok()?;
        let ephemeral = PrivateKey::from_private_key(&X25519, &randomness[32..]).ok()?;
        let ct_x = ephemeral.compute_public_key().ok()?;
        let pk_x = &public[1184..];
        // AWS-LC refuses an all-zero shared secret.
        let ss = agreement::agree(
            &ephemeral,
            UnparsedPublicKey::new(&X25519, pk_x),
            (),
            |ss_x| Ok(combine(&ss_m, ss_x, ct_x.as_ref(), pk_x)),
        )
        .ok()?;
        let mut ct = [0u8; CIPHERTEXT_BYTES];
        ct[..1088].copy_from_slice(&ct_m);
        ct[1088..].copy_from_slice(ct_x.as_ref());
        Some((ct, ss))
    }

    /// Whether `public` is a key anything can be sealed to: FIPS 203's encapsulation-key
    /// check (decoding and encoding again gives the same bytes, so every coefficient is
    /// below q; `ml-kem` 0.2 reduces them silently, and Go age refuses such a key) and an
    /// X25519 half that is not of small order (its shared secret would be all zeros).
    pub fn is_valid_public(public: &[u8; PUBLIC_KEY_BYTES]) -> bool {
        let Ok(encoded) = ml_kem::Encoded::<EncapsulationKey>::try_from(&public[..1184]) else {
            return false;
        };
        if EncapsulationKey::from_bytes(&encoded).as_bytes()[..] != public[..1184] {
            return false;
        }
        // Any scalar works: clamping makes it a multiple of the cofactor, so a point of
        // small order gives the all-zero secret, which AWS-LC refuses.
        let Ok(probe) = PrivateKey::from_private_key(&X25519, &[0x5a; 32]) else {
            return false;
        };
        agreement::agree(
            &probe,
            UnparsedPublicKey::new(&X25519, &public[1184..]),
            (),
            |_| Ok(()),
        )
        .is_ok()
    }

    /// Decapsulates `ct`. `None` when the X25519 half gives the all-zero secret.
    pub fn decapsulate(key: &Expanded, ct: &[u8; CIPHERTEXT_BYTES]) -> Option<Zeroizing<[u8; 32]>> {
        let ct_m = ml_kem::Ciphertext::<MlKem768>::try_from(&ct[..1088]).ok()?;
        let mut ss_m = Zeroizing::new([0u8; 32]);
        ss_m.copy_from_slice(&key.ml_kem.decapsulate(&ct_m).ok()?);
        let ct_x = &ct[1088..];
        let pk_x = &key.public[1184..];
        agreement::agree(
            &key.x25519,
            UnparsedPublicKey::new(&X25519, ct_x),
            (),
            |ss_x| Ok(combine(&ss_m[..], ss_x, ct_x, pk_x)),
        )
        .ok()
    }
}

/// Bech32 (BIP-173's checksum) without its 1023-character bound: an `age1pq1…` recipient
/// is about 1960 characters, as age's own encoder writes it.
pub enum LongBech32 {}

impl Checksum for LongBech32 {
    type MidstateRepr = u32;
    const CODE_LENGTH: usize = usize::MAX;
    const CHECKSUM_LENGTH: usize = 6;
    const GENERATOR_SH: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    const TARGET_RESIDUE: u32 = 1;
}

/// Decodes `text` with the HRP `hrp` (either case, not mixed).
fn bech32_decode(text: &str, hrp: &str) -> Option<Vec<u8>> {
    let checked = CheckedHrpstring::new::<LongBech32>(text).ok()?;
    if !checked.hrp().as_str().eq_ignore_ascii_case(hrp) {
        return None;
    }
    Some(checked.byte_iter().collect())
}

/// Why a post-quantum recipient or identity string was refused. Never holds key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PqError {
    #[error("not a valid post-quantum age recipient (age1pq1…)")]
    Recipient,
    #[error("not a valid post-quantum age identity (AGE-SECRET-KEY-PQ-1…)")]
    Identity,
}

/// A hybrid post-quantum recipient (`age1pq1…`).
#[derive(Clone)]
pub struct PqRecipient {
    key: Box<[u8; KEY_BYTES]>,
}

impl FromStr for PqRecipient {
    type Err = PqError;

    fn from_str(s: &str) -> Result<Self, PqError> {
        // Recipients are lowercase, as age writes and reads them.
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(PqError::Recipient);
        }
        let bytes = bech32_decode(s, RECIPIENT_HRP).ok_or(PqError::Recipient)?;
        let key: [u8; KEY_BYTES] = bytes[..].try_into().map_err(|_| PqError::Recipient)?;
        // A key nothing could be opened with is refused here, where the user typed it,
        // rather than found out when nobody can unseal what was sealed to it.
        if !xwing::is_valid_public(&key) {
            return Err(PqError::Recipient);
        }
        Ok(PqRecipient { key: Box::new(key) })
    }
}

impl fmt::Display for PqRecipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = Hrp::parse(RECIPIENT_HRP).map_err(|_| fmt::Error)?;
        let text =
            bech32::encode_lower::<LongBech32>(hrp, &self.key[..]).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// The RFC 9180 key schedule of base mode for this suite: the AEAD key and nonce of the
/// one message sealed under `shared_secret`.
fn key_schedule(shared_secret: &[u8]) -> (aead::LessSafeKey, aead::Nonce) {
    // LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" ‖ suite_id ‖ label ‖ ikm),
    // and HKDF-Extract is HMAC-SHA256 keyed with the salt (an empty salt is the all-zero
    // key RFC 5869 defaults to).
    let labeled_extract = |salt: &[u8], label: &[u8], ikm: &[u8]| -> Zeroizing<[u8; 32]> {
        let mut hmac =
            ring::hmac::Context::with_key(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt));
        for part in [b"HPKE-v1".as_slice(), SUITE_ID, label, ikm] {
            hmac.update(part);
        }
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(hmac.sign().as_ref());
        out
    };
    let mut context = [0u8; 65];
    context[1..33].copy_from_slice(&labeled_extract(b"", b"psk_id_hash", b"")[..]);
    context[33..].copy_from_slice(&labeled_extract(b"", b"info_hash", INFO)[..]);
    // secret = LabeledExtract(shared_secret, "secret", psk = "")
    let secret = hkdf::Prk::new_less_safe(
        hkdf::HKDF_SHA256,
        &labeled_extract(shared_secret, b"secret", b"")[..],
    );
    // LabeledExpand(prk, label, info, L) = Expand(prk, I2OSP(L, 2) ‖ "HPKE-v1" ‖ suite_id ‖ label ‖ info, L)
    let expand = |label: &[u8], out: &mut [u8]| {
        let length = (out.len() as u16).to_be_bytes();
        let parts: [&[u8]; 5] = [&length, b"HPKE-v1", SUITE_ID, label, &context];
        secret
            .expand(&parts, Len(out.len()))
            .and_then(|okm| okm.fill(out))
            .expect("HKDF-SHA256 gives 32 and 12 bytes");
    };
    let mut key = Zeroizing::new([0u8; 32]);
    expand(b"key", &mut key[..]);
    let mut nonce = [0u8; 12];
    expand(b"base_nonce", &mut nonce);
    let key = aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key[..])
        .expect("a ChaCha20Poly1305 key is 32 bytes");
    (
        aead::LessSafeKey::new(key),
        aead::Nonce::assume_unique_for_key(nonce),
    )
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

impl age::Recipient for PqRecipient {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, std::collections::HashSet<String>), age::EncryptError> {
        use age::secrecy::ExposeSecret;
        let mut randomness = Zeroizing::new([0u8; xwing::RANDOMNESS_BYTES]);
        SystemRandom::new()
            .fill(&mut randomness[..])
            .map_err(|_| age::EncryptError::Io(std::io::Error::other("no randomness")))?;
        let (enc, shared) = xwing::encapsulate(&self.key, &randomness).ok_or_else(|| {
            age::EncryptError::Io(std::io::Error::other(
                "the post-quantum recipient's X25519 half is not a usable key",
            ))
        })?;
        let (key, nonce) = key_schedule(&shared[..]);
        let mut body = file_key.expose_secret().to_vec();
        key.seal_in_place_append_tag(nonce, aead::Aad::empty(), &mut body)
            .map_err(|_| age::EncryptError::Io(std::io::Error::other("sealing failed")))?;
        let stanza = Stanza {
            tag: TAG.to_owned(),
            args: vec![STANDARD_NO_PAD.encode(enc)],
            body,
        };
        Ok((vec![stanza], [LABEL.to_owned()].into()))
    }
}

/// A post-quantum recipient without age's `postquantum` label, so age lets it share a
/// file with classic recipients: only for a set the user asked to mix
/// ([`crate::recipients::RecipientSet::new_allowing_mixed`]).
pub struct Unlabelled<'a>(pub &'a PqRecipient);

impl age::Recipient for Unlabelled<'_> {
    fn wrap_file_key(
        &self,
        file_key: &FileKey,
    ) -> Result<(Vec<Stanza>, std::collections::HashSet<String>), age::EncryptError> {
        let (stanzas, _) = self.0.wrap_file_key(file_key)?;
        Ok((stanzas, Default::default()))
    }
}

/// A hybrid post-quantum identity (`AGE-SECRET-KEY-PQ-1…`).
#[derive(Clone)]
pub struct PqIdentity {
    seed: Zeroizing<[u8; 32]>,
    key: std::sync::Arc<xwing::Expanded>,
}

impl PqIdentity {
    /// A fresh random identity.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(&mut seed[..])
            .expect("the operating system's random source works");
        Self::from_seed(seed)
    }

    fn from_seed(seed: Zeroizing<[u8; 32]>) -> Self {
        let key = std::sync::Arc::new(xwing::expand(&seed));
        PqIdentity { seed, key }
    }

    pub fn to_public(&self) -> PqRecipient {
        PqRecipient {
            key: self.key.public.clone(),
        }
    }

    /// The identity string, `AGE-SECRET-KEY-PQ-1…` (key material: keep it out of logs).
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let hrp = Hrp::parse(IDENTITY_HRP).expect("a valid HRP");
        Zeroizing::new(
            bech32::encode_upper::<LongBech32>(hrp, &self.seed[..])
                .expect("32 bytes always encode"),
        )
    }
}

impl FromStr for PqIdentity {
    type Err = PqError;

    fn from_str(s: &str) -> Result<Self, PqError> {
        // Identities are uppercase, as age writes and reads them.
        if s.bytes().any(|b| b.is_ascii_lowercase()) {
            return Err(PqError::Identity);
        }
        let bytes = Zeroizing::new(bech32_decode(s, IDENTITY_HRP).ok_or(PqError::Identity)?);
        let seed: [u8; 32] = bytes[..].try_into().map_err(|_| PqError::Identity)?;
        Ok(Self::from_seed(Zeroizing::new(seed)))
    }
}

impl age::Identity for PqIdentity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, age::DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        let invalid = Some(Err(age::DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else {
            return invalid;
        };
        // Canonical: unpadded, and the decoder refuses non-zero trailing bits.
        let Some(enc) = STANDARD_NO_PAD
            .decode(arg)
            .ok()
            .filter(|e| e.len() == ENC_BYTES)
        else {
            return invalid;
        };
        // Checked before any decryption (a partitioning oracle otherwise).
        if stanza.body.len() != BODY_BYTES {
            return invalid;
        }
        let enc: &[u8; ENC_BYTES] = enc[..].try_into().ok()?;
        // The all-zero X25519 secret (a low-order share) is refused.
        let Some(shared) = xwing::decapsulate(&self.key, enc) else {
            return invalid;
        };
        let (key, nonce) = key_schedule(&shared[..]);
        let mut body = stanza.body.clone();
        // Not this identity's stanza (there is no telling which key a stanza is for).
        let file_key = key
            .open_in_place(nonce, aead::Aad::empty(), &mut body)
            .ok()
            .map(|k| FileKey::init_with_mut(|out| out.copy_from_slice(k)));
        body.zeroize();
        file_key.map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_age() {
        let identity = PqIdentity::generate();
        let recipient = identity.to_public();
        let text = recipient.to_string();
        assert!(
            text.starts_with("age1pq1") && text.len() > 1900,
            "{}",
            text.len()
        );
        assert_eq!(text.parse::<PqRecipient>().unwrap().to_string(), text);
        let secret = identity.to_secret_string();
        assert!(secret.starts_with("AGE-SECRET-KEY-PQ-1"));
        let again: PqIdentity = secret.parse().unwrap();
        assert_eq!(again.to_public().to_string(), text);

        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .unwrap();
        let mut sealed = Vec::new();
        let mut w = encryptor.wrap_output(&mut sealed).unwrap();
        std::io::Write::write_all(&mut w, b"harvest now, decrypt never").unwrap();
        w.finish().unwrap();
        let decryptor = age::Decryptor::new_buffered(&sealed[..]).unwrap();
        let mut r = decryptor
            .decrypt(std::iter::once(&again as &dyn age::Identity))
            .unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut r, &mut out).unwrap();
        assert_eq!(out, b"harvest now, decrypt never");
    }

    #[test]
    fn a_file_for_pq_and_classic_recipients_is_refused() {
        let pq = PqIdentity::generate().to_public();
        let classic = age::x25519::Identity::generate().to_public();
        let recipients: [&dyn age::Recipient; 2] = [&pq, &classic];
        let err = age::Encryptor::with_recipients(recipients.into_iter())
            .err()
            .unwrap();
        assert!(
            matches!(err, age::EncryptError::IncompatibleRecipients { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn strings_in_the_wrong_case_or_kind_are_refused() {
        let identity = PqIdentity::generate();
        let recipient = identity.to_public().to_string();
        assert_eq!(
            recipient.to_uppercase().parse::<PqRecipient>().err(),
            Some(PqError::Recipient)
        );
        assert_eq!(
            identity
                .to_secret_string()
                .to_lowercase()
                .parse::<PqIdentity>()
                .err(),
            Some(PqError::Identity)
        );
        let classic = age::x25519::Identity::generate().to_public().to_string();
        assert!(classic.parse::<PqRecipient>().is_err());
    }

    /// `text` with its key bytes changed by `edit`, under a valid checksum: what an
    /// attacker (or a corrupted copy-paste that kept the checksum) hands `kseal seal`.
    pub(crate) fn crafted(text: &str, edit: impl FnOnce(&mut [u8])) -> String {
        let mut key = bech32_decode(text, RECIPIENT_HRP).unwrap();
        edit(&mut key);
        let hrp = Hrp::parse(RECIPIENT_HRP).unwrap();
        bech32::encode_lower::<LongBech32>(hrp, &key).unwrap()
    }

    #[test]
    fn an_ml_kem_key_out_of_range_is_refused() {
        // FIPS 203's encapsulation-key check: every 12-bit coefficient below q = 3329.
        // Coefficient 0 is byte 0 and the low nibble of byte 1.
        let good = PqIdentity::generate().to_public().to_string();
        for (low, high) in [(0xff, 0x0f), (0x01, 0x0d)] {
            let bad = crafted(&good, |k| {
                k[0] = low;
                k[1] = (k[1] & 0xf0) | high;
            });
            assert_eq!(bad.parse::<PqRecipient>().err(), Some(PqError::Recipient));
        }
        // the largest valid coefficient, 3328, is accepted
        let edge = crafted(&good, |k| {
            k[0] = 0x00;
            k[1] = (k[1] & 0xf0) | 0x0d;
        });
        assert!(edge.parse::<PqRecipient>().is_ok());
    }

    #[test]
    fn a_low_order_x25519_half_is_refused() {
        let good = PqIdentity::generate().to_public().to_string();
        // u = 0 and u = 1 are of small order; so is p + 1 written non-canonically
        let mut one_plus_p = [0xffu8; 32];
        one_plus_p[0] = 0xee;
        one_plus_p[31] = 0x7f;
        let mut one = [0u8; 32];
        one[0] = 1;
        for point in [[0u8; 32], one, one_plus_p] {
            let bad = crafted(&good, |k| k[1184..].copy_from_slice(&point));
            assert_eq!(bad.parse::<PqRecipient>().err(), Some(PqError::Recipient));
        }
    }
}
