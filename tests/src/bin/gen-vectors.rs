//! Writes the frozen test vectors in `tests/vectors/`. Run once when the format gains a
//! case (`cargo run -p kseal-tests --bin gen-vectors`); the committed files are the
//! contract, and regenerating them changes every ciphertext (age is randomized).

use std::io::Write;

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use kseal_core::keys::Key;
use kseal_core::recipients::RecipientSet;
use kseal_core::scope::{Binding, Scope};
use kseal_core::{envelope, item};
use kseal_tests::{Expect, OpenedAt, Vector, vectors_dir};

const VALUE: &[u8] = b"p@ss\nword\x00\xff";

fn at(binding: &Binding) -> OpenedAt {
    OpenedAt {
        scope: binding.scope.to_string(),
        namespace: binding.namespace.clone(),
        name: binding.name.clone(),
        item: binding.item.clone(),
    }
}

fn raw_age(key: &Key, payload: &[u8]) -> Result<String> {
    let recipient: age::x25519::Recipient = key
        .recipient()
        .to_string()
        .parse()
        .map_err(anyhow::Error::msg)?;
    let mut out = Vec::new();
    let mut w =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))?
            .wrap_output(&mut out)?;
    w.write_all(payload)?;
    w.finish()?;
    Ok(STANDARD.encode(out))
}

fn main() -> Result<()> {
    let key = Key::generate();
    let other = Key::generate();
    let identity = key.to_identity_file("2026-11-26T00:00:00Z").to_string();
    let other_identity = other.to_identity_file("2026-11-26T00:00:00Z").to_string();
    let set = RecipientSet::new([key.recipient().clone()])?;
    let strict = Binding::new(Scope::Strict, Some("prod"), Some("db"), "password")?;
    let wide = Binding::new(Scope::NamespaceWide, Some("prod"), None, "password")?;
    let cluster = Binding::new(Scope::ClusterWide, None, None, "password")?;
    let sealed_strict = item::seal(&set, &strict, VALUE)?;
    let value = Expect::Value(STANDARD.encode(VALUE));
    let err = |reason: &str, message: &str| Expect::Error {
        reason: reason.into(),
        message: message.into(),
    };

    let mut bytes = STANDARD.decode(&sealed_strict)?;
    let header_len = kseal_core::age_header::parse(&bytes)?.header_len;
    let truncated_header = STANDARD.encode(&bytes[..header_len - 20]);
    let truncated_payload = STANDARD.encode(&bytes[..bytes.len() - 5]);
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    let flipped_payload = STANDARD.encode(&bytes);
    // The header ends with "--- <43 base64 chars>\n": flip one bit of the decoded MAC and
    // re-encode it canonically, so only the MAC check can catch it.
    let mut file = STANDARD.decode(&sealed_strict)?;
    let mac_range = header_len - 44..header_len - 1;
    let mut mac = STANDARD_NO_PAD.decode(&file[mac_range.clone()])?;
    mac[0] ^= 0x01;
    file.splice(mac_range, STANDARD_NO_PAD.encode(&mac).into_bytes());
    let flipped_mac = STANDARD.encode(&file);

    let v2 = raw_age(&key, b"kseal/v2 strict prod db password\nvalue")?;
    let no_header = raw_age(&key, b"a plain age file\nwithout a kseal envelope")?;
    let _ = envelope::VERSION;

    let cases: Vec<(&str, &str, &str, Binding, String, Expect)> = vec![
        (
            "ok-strict",
            "strict scope opened where it was sealed",
            &identity,
            strict.clone(),
            sealed_strict.clone(),
            value.clone(),
        ),
        (
            "ok-namespace-wide",
            "namespace-wide scope",
            &identity,
            wide.clone(),
            item::seal(&set, &wide, VALUE)?,
            value.clone(),
        ),
        (
            "ok-cluster-wide",
            "cluster-wide scope",
            &identity,
            cluster.clone(),
            item::seal(&set, &cluster, VALUE)?,
            value.clone(),
        ),
        (
            "wrong-key",
            "a key that is not a recipient",
            &other_identity,
            strict.clone(),
            sealed_strict.clone(),
            err(
                "NoMatchingKey",
                "no key matches: the value was sealed to other recipients",
            ),
        ),
        (
            "wrong-namespace",
            "strict value opened in another namespace",
            &identity,
            Binding::new(Scope::Strict, Some("dev"), Some("db"), "password")?,
            sealed_strict.clone(),
            err(
                "ScopeMismatch",
                "sealed for namespace \"prod\", but found at namespace \"dev\"",
            ),
        ),
        (
            "wrong-name",
            "strict value opened under another name",
            &identity,
            Binding::new(Scope::Strict, Some("prod"), Some("web"), "password")?,
            sealed_strict.clone(),
            err(
                "ScopeMismatch",
                "sealed for name \"db\", but found at name \"web\"",
            ),
        ),
        (
            "wrong-item-key",
            "value moved to another item key",
            &identity,
            Binding::new(Scope::Strict, Some("prod"), Some("db"), "token")?,
            sealed_strict.clone(),
            err(
                "ScopeMismatch",
                "sealed for item key \"password\", but found at item key \"token\"",
            ),
        ),
        (
            "wrong-scope",
            "namespace-wide value opened as strict",
            &identity,
            strict.clone(),
            item::seal(&set, &wide, VALUE)?,
            err(
                "ScopeMismatch",
                "sealed for scope namespace-wide, but found at scope strict",
            ),
        ),
        (
            "truncated",
            "cut inside the age header",
            &identity,
            strict.clone(),
            truncated_header,
            err("DecryptionFailed", "truncated: the age file ends early"),
        ),
        (
            "truncated-payload",
            "last 5 bytes of the payload cut",
            &identity,
            strict.clone(),
            truncated_payload,
            err(
                "DecryptionFailed",
                "decryption failed: the value was modified or damaged",
            ),
        ),
        (
            "bit-flipped",
            "one payload bit flipped",
            &identity,
            strict.clone(),
            flipped_payload,
            err(
                "DecryptionFailed",
                "decryption failed: the value was modified or damaged",
            ),
        ),
        (
            "bit-flipped-mac",
            "one bit of the header MAC flipped",
            &identity,
            strict.clone(),
            flipped_mac,
            err(
                "DecryptionFailed",
                "decryption failed: the value was modified or damaged",
            ),
        ),
        (
            "bad-encoding",
            "not base64",
            &identity,
            strict.clone(),
            "c2VhbGVk*".into(),
            err("MalformedSealedValue", "not valid base64"),
        ),
        (
            "not-age",
            "base64, but not an age file",
            &identity,
            strict.clone(),
            STANDARD.encode("hello, world"),
            err("MalformedSealedValue", "not an age file"),
        ),
        (
            "unknown-envelope-version",
            "envelope kseal/v2",
            &identity,
            strict.clone(),
            v2,
            err(
                "UnsupportedFormat",
                "envelope version 2 is not supported (this kseal reads version 1)",
            ),
        ),
        (
            "no-envelope",
            "age payload without a kseal envelope",
            &identity,
            strict.clone(),
            no_header,
            err(
                "MalformedSealedValue",
                "malformed envelope: not a kseal envelope",
            ),
        ),
    ];
    let dir = vectors_dir();
    std::fs::create_dir_all(&dir)?;
    for (name, description, identity, binding, sealed, expect) in cases {
        let vector = Vector {
            description: description.into(),
            identity: identity.to_owned(),
            opened_at: at(&binding),
            sealed,
            expect,
        };
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(&vector)? + "\n",
        )?;
    }
    println!("wrote {}", dir.display());
    Ok(())
}
