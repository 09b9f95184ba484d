//! Key custody fixtures: a SoftHSM2 token with a KEK on it (Debian's softhsm2, the same
//! module an operator points `--custody-pkcs11-module` at), and the scan for usable age
//! identities in stored bytes, which the custody tests run over etcd and Secrets.

use std::path::{Path, PathBuf};
use std::process::Command;

use kseal_core::keys::{Key, parse_identity_file};

/// Debian's SoftHSM2 module.
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const TOKEN: &str = "kseal";
pub const PIN: &str = "31415926";

/// A SoftHSM2 token in a directory of its own: a process reaches it with
/// `SOFTHSM2_CONF` set to [`SoftHsm::conf`]. Removed on drop.
pub struct SoftHsm {
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// A fresh token, label [`TOKEN`], user PIN [`PIN`].
    pub fn new() -> Result<SoftHsm, crate::cluster::Error> {
        let dir = tempfile::Builder::new()
            .prefix("kseal-softhsm-")
            .tempdir()?;
        let tokens = dir.path().join("tokens");
        std::fs::create_dir_all(&tokens)?;
        let hsm = SoftHsm { dir };
        std::fs::write(
            hsm.conf(),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )?;
        let init = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", TOKEN, "--pin", PIN])
            .args(["--so-pin", "27182818"])
            .env("SOFTHSM2_CONF", hsm.conf())
            .output()
            .map_err(|e| {
                format!("softhsm2-util (Debian's softhsm2, which .ci/run installs): {e}")
            })?;
        if !init.status.success() {
            return Err(String::from_utf8_lossy(&init.stderr).into_owned().into());
        }
        Ok(hsm)
    }

    pub fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// Makes a KEK on the token as an HSM administrator would (AES-256, sensitive, never
    /// extractable), with the `kseal-test-hsm` tool built beside the tests.
    pub fn make_kek(&self, label: &str) -> Result<(), crate::cluster::Error> {
        let out = Command::new(sibling_binary("kseal-test-hsm")?)
            .args(["make-kek", SOFTHSM_MODULE, TOKEN, PIN, label])
            .env("SOFTHSM2_CONF", self.conf())
            .output()?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned().into());
        }
        Ok(())
    }

    /// The controller's flags for this token and `kek`, and its environment.
    pub fn controller_flags(&self, kek: &str) -> Vec<String> {
        [
            "--custody",
            "pkcs11",
            "--custody-pkcs11-module",
            SOFTHSM_MODULE,
            "--custody-pkcs11-token",
            TOKEN,
            "--custody-pkcs11-key",
            kek,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The PIN in a file, as the chart mounts it from a Secret (with the newline an
    /// editor leaves).
    pub fn pin_file(&self) -> Result<PathBuf, crate::cluster::Error> {
        let path = self.dir.path().join("pin");
        std::fs::write(&path, format!("{PIN}\n"))?;
        Ok(path)
    }

    /// `SOFTHSM2_CONF` and the PIN, as the controller's environment.
    pub fn controller_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "SOFTHSM2_CONF".into(),
                self.conf().to_string_lossy().into_owned(),
            ),
            ("KSEAL_CUSTODY_PKCS11_PIN".into(), PIN.into()),
        ]
    }
}

/// A binary of this workspace's build, beside the running test's executable.
fn sibling_binary(name: &str) -> Result<PathBuf, crate::cluster::Error> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    if !path.exists() {
        return Err(format!(
            "{} missing: build the workspace (cargo nextest run --workspace builds it)",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// Every usable age identity in `bytes`: each `AGE-SECRET-KEY-` string in it (classic or
/// post-quantum, in any case) tried as an identity, and the whole of `bytes` as an
/// identity file. Returns the recipients of those that parse (never the keys).
pub fn usable_identities(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let upper = bytes.to_ascii_uppercase();
    let mut from = 0;
    while let Some(at) = find(&upper[from..], b"AGE-SECRET-KEY-") {
        let start = from + at;
        let end = upper[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'-'))
            .map_or(upper.len(), |n| start + n);
        if let Ok(text) = std::str::from_utf8(&upper[start..end]) {
            found.extend(keys_in(text));
        }
        from = start + 1;
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        found.extend(keys_in(text));
    }
    found.sort();
    found.dedup();
    found
}

fn keys_in(text: &str) -> Vec<String> {
    parse_identity_file(text)
        .unwrap_or_default()
        .iter()
        .map(|k: &Key| k.recipient().to_string())
        .collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_an_identity_inside_other_bytes_and_nothing_in_a_wrapped_one() {
        let key = Key::generate();
        let file = key.to_identity_file("2026-12-06T00:00:00Z");
        let mut stored = b"k8s\x00\x0a\x0bv1 Secret identity\x12".to_vec();
        stored.extend_from_slice(file.as_bytes());
        stored.extend_from_slice(b"\x1a\x05other");
        assert_eq!(
            usable_identities(&stored),
            vec![key.recipient().to_string()]
        );
        assert!(usable_identities(b"{\"sealedIdentity\":\"3q2+7w==\"}").is_empty());
    }
}
