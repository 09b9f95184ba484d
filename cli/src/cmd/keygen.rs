//! `kseal keygen`: a new age identity (X25519, or post-quantum with `--pq`), for escrow
//! keys, other clusters and local tests.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, bail};
use kseal_core::keys::Key;

use crate::cli::KeygenArgs;
use crate::io::write_output;

pub fn run(args: &KeygenArgs) -> Result<()> {
    if let Some(path) = &args.to_public {
        return to_public(path);
    }
    let key = if args.pq {
        Key::generate_pq()
    } else {
        Key::generate()
    };
    let created = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the creation time")?;
    let identity = key.to_identity_file(&created);
    let Some(path) = &args.output else {
        return write_output(None, identity.as_bytes());
    };
    let name = path.display();
    if fs::symlink_metadata(path).is_ok() {
        bail!("{name}: already exists; kseal keygen never overwrites a key");
    }
    // Written to a private temporary file, then linked into place: the link fails if the
    // target appeared meanwhile, so an existing key is never replaced.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kseal-key-")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(|| format!("{name}: cannot create a file in {}", dir.display()))?;
    tmp.write_all(identity.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("{name}: cannot write"))?;
    tmp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{name}: already exists; kseal keygen never overwrites a key")
        } else {
            anyhow::anyhow!("{name}: cannot write: {}", e.error)
        }
    })?;
    write_output(None, format!("{}\n", key.recipient()).as_bytes())
}

/// `-y KEYFILE`: the recipient of each identity in an existing key file, one a line.
fn to_public(path: &std::path::Path) -> Result<()> {
    let input = crate::io::read_file(path)?;
    let text =
        zeroize::Zeroizing::new(String::from_utf8(input.bytes.to_vec()).map_err(|_| {
            anyhow::anyhow!("{}: not an age identity file (not UTF-8)", input.name)
        })?);
    let keys = kseal_core::keys::parse_identity_file(&text)
        .with_context(|| format!("{}: not an age identity file", input.name))?;
    let recipients: String = keys
        .iter()
        .map(|k| format!("{}\n", k.recipient()))
        .collect();
    write_output(None, recipients.as_bytes())
}
