//! Read an age header without any key: the stanza types and count, for `kseal inspect`
//! and `kseal validate`. X25519 stanzas do not say which recipient they are for, so this
//! can count recipients but not name them; the fingerprints in the SealedSecret do that.

/// The first line of every age file.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// One recipient stanza: `-> <kind> <args…>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    pub kind: String,
    pub args: usize,
    /// Where the stanza (its `->` line and body) stands in the file.
    pub span: std::ops::Range<usize>,
}

/// The parts of an age file that can be read without a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeHeader {
    pub stanzas: Vec<Stanza>,
    /// Bytes of the header including the MAC line.
    pub header_len: usize,
    /// Where the MAC line (`--- …`) starts.
    pub mac_at: usize,
    /// Bytes after the header (nonce and encrypted chunks).
    pub payload_len: usize,
}

impl AgeHeader {
    /// How many stanzas of the given kind the file has.
    pub fn count(&self, kind: &str) -> usize {
        self.stanzas.iter().filter(|s| s.kind == kind).count()
    }
}

/// The most recipient stanzas a sealed value may have (the cluster, other clusters, an
/// escrow key, and age's grease stanza fit many times over). Every stanza is tried with
/// every key, so the count bounds the work an untrusted value can ask for.
pub const MAX_STANZAS: usize = 16;

/// The largest header a sealed value may have: 16 post-quantum stanzas of about 1.5 KiB
/// fit, with room to spare.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Why the header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("the age header has more than {MAX_STANZAS} recipient stanzas")]
    TooManyStanzas,
    #[error("the age header is larger than {MAX_HEADER_BYTES} bytes")]
    TooLarge,
    #[error("not an age file")]
    NotAgeFile,
    #[error("the age header ends early")]
    Truncated,
    #[error("malformed age header: {0}")]
    Malformed(&'static str),
}

/// The smallest payload a valid age file has: a 16-byte nonce and one 16-byte tag.
const MIN_PAYLOAD: usize = 32;

/// Parses the header of a binary age file, in one pass and within [`MAX_HEADER_BYTES`]
/// and [`MAX_STANZAS`], whatever the input: the check to run before handing untrusted
/// bytes to age.
pub fn parse(bytes: &[u8]) -> Result<AgeHeader, HeaderError> {
    if !bytes.starts_with(AGE_MAGIC) {
        return Err(if AGE_MAGIC.starts_with(bytes) {
            HeaderError::Truncated
        } else {
            HeaderError::NotAgeFile
        });
    }
    let mut pos = AGE_MAGIC.len();
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut in_body = false;
    let window = &bytes[..bytes.len().min(MAX_HEADER_BYTES)];
    let mac_at = loop {
        let rest = &window[pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(if window.len() < bytes.len() {
                HeaderError::TooLarge
            } else {
                HeaderError::Truncated
            });
        };
        let line = &rest[..end];
        let line_at = pos;
        pos += end + 1;
        if let Some(mac) = line.strip_prefix(b"--- ") {
            if in_body {
                return Err(HeaderError::Malformed("stanza body not terminated"));
            }
            if mac.len() != 43 {
                return Err(HeaderError::Malformed("bad MAC line"));
            }
            break line_at;
        } else if let Some(stanza) = line.strip_prefix(b"-> ") {
            if in_body {
                return Err(HeaderError::Malformed("stanza body not terminated"));
            }
            let text = std::str::from_utf8(stanza)
                .map_err(|_| HeaderError::Malformed("stanza is not text"))?;
            let mut parts = text.split(' ');
            let kind = parts.next().unwrap_or_default().to_owned();
            if kind.is_empty() {
                return Err(HeaderError::Malformed("empty stanza type"));
            }
            if stanzas.len() == MAX_STANZAS {
                return Err(HeaderError::TooManyStanzas);
            }
            stanzas.push(Stanza {
                kind,
                args: parts.count(),
                span: line_at..pos,
            });
            in_body = true;
        } else if in_body {
            // Body lines are 64 columns until the last, shorter one.
            if line.len() > 64 {
                return Err(HeaderError::Malformed("stanza body line too long"));
            }
            in_body = line.len() == 64;
            if let Some(last) = stanzas.last_mut() {
                last.span.end = pos;
            }
        } else {
            return Err(HeaderError::Malformed("unexpected line"));
        }
    };
    if stanzas.is_empty() {
        return Err(HeaderError::Malformed("no recipient stanzas"));
    }
    let payload_len = bytes.len() - pos;
    if payload_len < MIN_PAYLOAD {
        return Err(HeaderError::Truncated);
    }
    Ok(AgeHeader {
        stanzas,
        header_len: pos,
        mac_at,
        payload_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Key;
    use crate::recipients::RecipientSet;
    use crate::scope::{Binding, Scope};
    use base64::Engine;

    #[test]
    fn counts_one_stanza_per_recipient() {
        let keys = [Key::generate(), Key::generate(), Key::generate()];
        let set = RecipientSet::new(keys.iter().map(|k| k.recipient().clone())).unwrap();
        let b = Binding::new(Scope::ClusterWide, None, None, "k").unwrap();
        let sealed = crate::item::seal(&set, &b, b"v").unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .unwrap();
        let header = parse(&bytes).unwrap();
        assert_eq!(header.count("X25519"), 3);
        // age may add a "grease" stanza of a random type, which identities ignore.
        assert!(header.stanzas.len() >= 3);
        assert!(parse(&bytes[..header.header_len - 10]).is_err());
        assert_eq!(parse(b"hello"), Err(HeaderError::NotAgeFile));
    }

    /// The hostile headers of the security review: hundreds of stanzas, and one stanza
    /// with a huge argument. Both are refused at the bound, not parsed to the end.
    #[test]
    fn hostile_headers_are_refused_at_the_bound() {
        let mut many = AGE_MAGIC.to_vec();
        for _ in 0..800 {
            many.extend_from_slice(b"-> X25519 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
            many.extend_from_slice(b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        }
        many.extend_from_slice(b"--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        many.extend_from_slice(&[0u8; 64]);
        assert_eq!(parse(&many), Err(HeaderError::TooManyStanzas));

        let mut wide = AGE_MAGIC.to_vec();
        wide.extend_from_slice(b"-> grease ");
        wide.extend(std::iter::repeat_n(b'a', 200_000));
        wide.extend_from_slice(b"\n\n--- AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n");
        wide.extend_from_slice(&[0u8; 64]);
        assert_eq!(parse(&wide), Err(HeaderError::TooLarge));
    }
}
