//! The envelope: the first line of every age payload kseal writes.
//!
//! ```text
//! kseal/v1 strict <namespace> <name> <item>\n<value bytes>
//! kseal/v1 namespace-wide <namespace> <item>\n<value bytes>
//! kseal/v1 cluster-wide <item>\n<value bytes>
//! ```
//!
//! The age payload is authenticated, so the binding in this line cannot be changed
//! without the key; copying the ciphertext elsewhere leaves it pointing at its original
//! location. Kubernetes names and item keys contain neither spaces nor newlines, so a
//! single space-separated line is unambiguous, and `tail -n +2` strips it in a disaster
//! recovery. The full specification is `docs/format.md`.

use zeroize::Zeroizing;

use crate::scope::{Binding, Scope};

/// The envelope version this crate writes and the only one it reads.
pub const VERSION: u32 = 1;

const PREFIX: &str = "kseal/v";
/// Longest header line accepted: `kseal/v1 strict`, a 63-byte namespace, a 253-byte
/// name and a 253-byte item key with separators fit well within it.
const MAX_HEADER: usize = 1024;

/// An age payload that is not a valid kseal envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("envelope version {0} is not supported (this kseal reads version {VERSION})")]
    UnsupportedVersion(String),
    #[error("malformed envelope: {0}")]
    Malformed(&'static str),
}

/// The envelope for `value` bound to `binding`.
pub fn encode(binding: &Binding, value: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut line = format!("{PREFIX}{VERSION} {}", binding.scope);
    for part in [&binding.namespace, &binding.name].into_iter().flatten() {
        line.push(' ');
        line.push_str(part);
    }
    line.push(' ');
    line.push_str(&binding.item);
    line.push('\n');
    let mut out = Zeroizing::new(Vec::with_capacity(line.len() + value.len()));
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits an envelope into the binding it authenticates and the value.
pub fn decode(payload: &[u8]) -> Result<(Binding, &[u8]), EnvelopeError> {
    let window = &payload[..payload.len().min(MAX_HEADER)];
    let end = window
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(EnvelopeError::Malformed("no header line"))?;
    let line = std::str::from_utf8(&payload[..end])
        .map_err(|_| EnvelopeError::Malformed("header is not UTF-8"))?;
    let value = &payload[end + 1..];

    let mut parts = line.split(' ');
    let version = parts
        .next()
        .and_then(|v| v.strip_prefix(PREFIX))
        .ok_or(EnvelopeError::Malformed("not a kseal envelope"))?;
    if version != VERSION.to_string() {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            return Err(EnvelopeError::UnsupportedVersion(version.to_owned()));
        }
        return Err(EnvelopeError::Malformed("bad version"));
    }
    let scope: Scope = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(EnvelopeError::Malformed("unknown scope"))?;
    let fields: Vec<&str> = parts.collect();
    let expected = 1 + usize::from(scope.binds_namespace()) + usize::from(scope.binds_name());
    if fields.len() != expected {
        return Err(EnvelopeError::Malformed(
            "wrong number of fields for the scope",
        ));
    }
    let Some((item, location)) = fields.split_last() else {
        return Err(EnvelopeError::Malformed("no item key"));
    };
    let namespace = scope.binds_namespace().then(|| location[0]);
    let name = scope.binds_name().then(|| location[1]);
    let binding = Binding::new(scope, namespace, name, item)
        .map_err(|_| EnvelopeError::Malformed("invalid name in header"))?;
    Ok((binding, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn binding(scope: Scope) -> Binding {
        Binding::new(scope, Some("prod"), Some("db-creds"), "password").unwrap()
    }

    #[test]
    fn header_is_one_line_per_scope() {
        let cases = [
            (Scope::Strict, "kseal/v1 strict prod db-creds password\n"),
            (
                Scope::NamespaceWide,
                "kseal/v1 namespace-wide prod password\n",
            ),
            (Scope::ClusterWide, "kseal/v1 cluster-wide password\n"),
        ];
        for (scope, header) in cases {
            let env = encode(&binding(scope), b"s3cr3t");
            assert_eq!(&env[..], [header.as_bytes(), b"s3cr3t"].concat().as_slice());
        }
    }

    #[test]
    fn rejects_unknown_versions_and_garbage() {
        assert_eq!(
            decode(b"kseal/v2 strict a b c\nx"),
            Err(EnvelopeError::UnsupportedVersion("2".into()))
        );
        assert!(matches!(decode(b"hello"), Err(EnvelopeError::Malformed(_))));
        assert!(matches!(
            decode(b"kseal/v1 strict a c\nx"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"kseal/v1 sideways a b c\nx"),
            Err(EnvelopeError::Malformed(_))
        ));
        assert!(matches!(
            decode(b"kseal/vX strict a b c\nx"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trips_any_value(value in proptest::collection::vec(any::<u8>(), 0..2048),
                                 scope in prop_oneof![Just(Scope::Strict), Just(Scope::NamespaceWide), Just(Scope::ClusterWide)]) {
            let b = binding(scope);
            let env = encode(&b, &value);
            let (got, v) = decode(&env).unwrap();
            prop_assert_eq!(got, b);
            prop_assert_eq!(v, value.as_slice());
        }
    }
}
