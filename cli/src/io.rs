//! Reading inputs and writing outputs: stdin or files in, stdout or an atomically
//! replaced file out. Nothing is written until the whole output is ready, so a failed
//! run leaves no partial file.

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::cli::OutputFormat;

/// Inputs larger than this are refused before parsing: a Secret holds at most 1 MiB, so
/// even base64 and YAML overhead on many documents stays far below it.
const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Bytes read from a file or stdin, with the name to use in error messages.
pub struct Input {
    pub name: String,
    pub bytes: Zeroizing<Vec<u8>>,
}

/// Reads `path`, or stdin when it is `None` or `-`. `hint` is printed to stderr when stdin
/// is a terminal, so a user who forgot a pipe knows why nothing happens.
pub fn read_input(path: Option<&Path>, hint: &str) -> Result<Input> {
    match path {
        Some(p) if p != Path::new("-") => read_file(p),
        _ => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("({hint}; end with Ctrl-D)");
            }
            read_limited(stdin.lock(), "stdin")
        }
    }
}

pub fn read_file(path: &Path) -> Result<Input> {
    let name = path.display().to_string();
    // A private key pasted where a file name belongs must not be repeated in the error.
    let name = if name.to_ascii_uppercase().contains("AGE-SECRET-KEY-") {
        "(a private key given as a file name)".to_owned()
    } else {
        name
    };
    let file = fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    read_limited(file, &name)
}

fn read_limited(reader: impl Read, name: &str) -> Result<Input> {
    let mut bytes = Zeroizing::new(Vec::new());
    reader
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{name}: cannot read"))?;
    if bytes.len() as u64 > MAX_INPUT {
        bail!("{name}: larger than {} MiB", MAX_INPUT / (1024 * 1024));
    }
    Ok(Input {
        name: name.to_owned(),
        bytes,
    })
}

/// Renders documents: YAML documents separated by `---`, or JSON (a `List` when there is
/// more than one).
pub fn render<T: Serialize>(docs: &[T], format: OutputFormat) -> Result<Zeroizing<String>> {
    let mut out = Zeroizing::new(String::new());
    match format {
        OutputFormat::Yaml => {
            for (i, doc) in docs.iter().enumerate() {
                if i > 0 {
                    out.push_str("---\n");
                }
                // Plain one-line scalars: sealed values stay on one line each, so Git
                // diffs show exactly which items changed.
                let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
                out.push_str(
                    &serde_saphyr::to_string_with_options(doc, options)
                        .context("rendering YAML")?,
                );
            }
        }
        OutputFormat::Json => {
            let text = if docs.len() == 1 {
                serde_json::to_string_pretty(&docs[0])
            } else {
                serde_json::to_string_pretty(&serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": docs,
                }))
            }
            .context("rendering JSON")?;
            out.push_str(&text);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `print!`, returning a failed write instead of panicking: a reader that went away
/// (`kseal … | head`) ends the command quietly (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::io::write_output(None, format!($($arg)*).as_bytes())
    };
}

/// `println!`, returning a failed write instead of panicking (see [`out!`]).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::io::write_output(None, format!("{}\n", format_args!($($arg)*)).as_bytes())
    };
}

pub(crate) use {out, outln};

/// Whether an error is a write to a pipe whose reader has gone (`kseal … | head`).
pub fn closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `content` to stdout, or replaces `dest` atomically: a temporary file in the
/// same directory, synced, then renamed over the target. An existing file keeps its mode.
pub fn write_output(dest: Option<&Path>, content: &[u8]) -> Result<()> {
    let Some(dest) = dest else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(content)
            .and_then(|()| stdout.flush())
            .context("writing to stdout")?;
        return Ok(());
    };
    replace_file(dest, content)
}

pub fn replace_file(dest: &Path, content: &[u8]) -> Result<()> {
    let name = dest.display();
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mode = fs::metadata(dest).map(|m| m.permissions()).ok();
    let mut tmp = tempfile::Builder::new()
        .prefix(".kseal-")
        .tempfile_in(dir)
        .with_context(|| {
            format!(
                "{name}: cannot create a temporary file in {}",
                dir.display()
            )
        })?;
    tmp.write_all(content)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("{name}: cannot write"))?;
    let perms = mode.unwrap_or_else(|| {
        use std::os::unix::fs::PermissionsExt;
        fs::Permissions::from_mode(0o644)
    });
    fs::set_permissions(tmp.path(), perms)
        .with_context(|| format!("{name}: cannot set permissions"))?;
    tmp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("{name}: cannot replace"))?;
    Ok(())
}

/// `[KEY=]PATH` as kubectl's `--from-file` takes it; KEY defaults to the file name.
pub fn split_key_path(spec: &str) -> Result<(String, &Path)> {
    if let Some((key, path)) = spec.split_once('=') {
        if key.is_empty() || path.is_empty() {
            bail!("--from-file {spec:?}: expected [KEY=]PATH");
        }
        return Ok((key.to_owned(), Path::new(path)));
    }
    let path = Path::new(spec);
    let key = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("--from-file {spec:?}: no file name to use as the item key"))?;
    Ok((key.to_owned(), path))
}
