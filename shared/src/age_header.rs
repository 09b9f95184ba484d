//! Read an age header without any key: the stanza types and count, for `kseal inspect`
//! and `kseal validate`. X25519 stanzas do not say which recipient they are for, so this
//! can count recipients but not name them; the fingerprints in the SealedSecret do that.

use crate::item::AGE_MAGIC;

/// One recipient stanza: `-> <kind> <args…>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    pub kind: String,
    pub args: usize,
}

/// The parts of an age file that can be read without a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgeHeader {
    pub stanzas: Vec<Stanza>,
    /// Bytes of the header including the MAC line.
    pub header_len: usize,
    /// Bytes after the header (nonce and encrypted chunks).
    pub payload_len: usize,
}

impl AgeHeader {
    /// How many stanzas of the given kind the file has.
    pub fn count(&self, kind: &str) -> usize {
        self.stanzas.iter().filter(|s| s.kind == kind).count()
    }
}

/// Why the header could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("not an age file")]
    NotAgeFile,
    #[error("the age header ends early")]
    Truncated,
    #[error("malformed age header: {0}")]
    Malformed(&'static str),
}

/// The smallest payload a valid age file has: a 16-byte nonce and one 16-byte tag.
const MIN_PAYLOAD: usize = 32;

/// Parses the header of a binary age file.
pub fn parse(bytes: &[u8]) -> Result<AgeHeader, HeaderError> {
    if !bytes.starts_with(AGE_MAGIC) {
        return Err(if AGE_MAGIC.starts_with(bytes) {
            HeaderError::Truncated
        } else {
            HeaderError::NotAgeFile
        });
    }
    let mut pos = AGE_MAGIC.len();
    let mut stanzas = Vec::new();
    let mut in_body = false;
    loop {
        let rest = &bytes[pos..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(HeaderError::Truncated)?;
        let line = &rest[..end];
        pos += end + 1;
        if let Some(mac) = line.strip_prefix(b"--- ") {
            if in_body {
                return Err(HeaderError::Malformed("stanza body not terminated"));
            }
            if mac.len() != 43 {
                return Err(HeaderError::Malformed("bad MAC line"));
            }
            break;
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
            stanzas.push(Stanza {
                kind,
                args: parts.count(),
            });
            in_body = true;
        } else if in_body {
            // Body lines are 64 columns until the last, shorter one.
            if line.len() > 64 {
                return Err(HeaderError::Malformed("stanza body line too long"));
            }
            in_body = line.len() == 64;
        } else {
            return Err(HeaderError::Malformed("unexpected line"));
        }
    }
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
}
