//! A `.kseal.yaml` as written (its schema) and read: every rule checked and its pattern
//! compiled, every file it names confined to the repository; and [`Matched`], the rule
//! that applies to a file, with the recipient flags it stands for.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::recipients::Recipient;
use kseal_core::scope::Scope;
use serde::Deserialize;

use crate::cli::RecipientArgs;
use crate::io::read_file;

/// The file the rules live in.
pub const FILE_NAME: &str = ".kseal.yaml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    rules: Vec<RuleSpec>,
}

/// One rule as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleSpec {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    path_regex: Option<String>,
    /// A kubeconfig context: its cluster's newest key is a recipient.
    #[serde(default)]
    pub context: Option<String>,
    /// A cluster's recipients document (a file relative to `.kseal.yaml`, or an https URL).
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub recipients_files: Vec<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

pub(super) enum Matcher {
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

/// One rule, checked and ready to match.
pub struct Rule {
    /// 1-based, as people count rules in the file.
    pub number: usize,
    /// The pattern as written (`prod/**`, or the regex).
    pub pattern: String,
    pub(super) matcher: Matcher,
    pub spec: RuleSpec,
    pub scope: Option<Scope>,
}

/// A `.kseal.yaml` read and checked.
pub struct Config {
    /// The file, as found (relative to the working directory when under it).
    pub file: PathBuf,
    /// Its directory, absolute: patterns match paths relative to it.
    pub(super) dir: PathBuf,
    pub(super) rules: Vec<Rule>,
}

impl Config {
    /// Reads and checks a `.kseal.yaml`: every pattern compiles, every scope is known,
    /// every rule names at most one cluster. Errors name the file and the rule.
    pub fn read(file: &Path) -> Result<Config> {
        let input = read_file(file)?;
        let name = input.name.clone();
        let (_, docs) =
            kseal_core::manifest::parse_documents(&input.bytes).with_context(|| name.clone())?;
        let [doc] = docs.as_slice() else {
            bail!("{name}: expected one YAML document with `rules:`");
        };
        let parsed: ConfigFile = serde_path_to_error::deserialize(doc).map_err(|e| {
            anyhow!(
                "{name}: {}: {}",
                rule_path(&e.path().to_string()),
                e.inner()
            )
        })?;
        let dir = std::path::absolute(file)
            .ok()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let mut rules = Vec::with_capacity(parsed.rules.len());
        for (i, spec) in parsed.rules.into_iter().enumerate() {
            let number = i + 1;
            let at = || format!("{name}: rule {number}");
            let (pattern, matcher) = match (&spec.path, &spec.path_regex) {
                (Some(glob), None) => (
                    glob.clone(),
                    Matcher::Glob(
                        globset::GlobBuilder::new(glob)
                            .literal_separator(true)
                            .build()
                            .with_context(|| format!("{}: path {glob:?}", at()))?
                            .compile_matcher(),
                    ),
                ),
                (None, Some(re)) => (
                    re.clone(),
                    Matcher::Regex(regex::Regex::new(re).map_err(|_| {
                        anyhow!(
                            "{}: pathRegex {re:?} is not a valid regular expression",
                            at()
                        )
                    })?),
                ),
                _ => bail!("{}: give exactly one of path (a glob) and pathRegex", at()),
            };
            if spec.context.is_some() && spec.cert.is_some() {
                bail!(
                    "{}: names a cluster twice (context and cert): a rule has one cluster; put further keys in recipients",
                    at()
                );
            }
            let scope = spec
                .scope
                .as_deref()
                .map(|s| s.parse::<Scope>().map_err(|e| anyhow!("{}: {e}", at())))
                .transpose()?;
            for r in &spec.recipients {
                r.parse::<Recipient>()
                    .with_context(|| format!("{}: recipients", at()))?;
            }
            let root = search_root(&dir);
            let cert_file = spec
                .cert
                .iter()
                .filter(|c| !c.starts_with("https://") && !c.starts_with("http://"));
            for (field, path) in spec
                .recipients_files
                .iter()
                .map(|f| ("recipientsFiles", f))
                .chain(cert_file.map(|c| ("cert", c)))
            {
                confined(&dir, &root, path).map_err(|why| anyhow!("{}: {field}: {why}", at()))?;
            }
            rules.push(Rule {
                number,
                pattern,
                matcher,
                spec,
                scope,
            });
        }
        Ok(Config {
            file: file.to_path_buf(),
            dir,
            rules,
        })
    }

    /// A path relative to the directory of `.kseal.yaml` (files and certs in rules).
    pub(super) fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// Where a rule's file may be: `relative` (never absolute) inside `root` once `..` are
/// resolved; the path, or why not.
fn confined(dir: &Path, root: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    if path.is_absolute() {
        return Err(format!(
            "{relative:?} is an absolute path: name a file inside the repository, relative to {FILE_NAME}"
        ));
    }
    let mut resolved = dir.to_path_buf();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                resolved.pop();
            }
            std::path::Component::Normal(p) => resolved.push(p),
            _ => {}
        }
    }
    // A link inside the repository may still lead out of it.
    let real = resolved.canonicalize().unwrap_or_else(|_| resolved.clone());
    let real_root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    if !resolved.starts_with(root) || !real.starts_with(&real_root) {
        return Err(format!(
            "{relative:?} is outside the repository ({})",
            root.display()
        ));
    }
    Ok(resolved)
}

/// `rules[1].recipient` as people count rules: `rule 2: recipient`.
fn rule_path(path: &str) -> String {
    let numbered = path.strip_prefix("rules[").and_then(|rest| {
        let (n, field) = rest.split_once(']')?;
        let n: usize = n.parse().ok()?;
        let field = field.trim_start_matches('.');
        Some(if field.is_empty() {
            format!("rule {}", n + 1)
        } else {
            format!("rule {}: {field}", n + 1)
        })
    });
    numbered.unwrap_or_else(|| path.to_owned())
}

/// The rule that applies to a file.
#[derive(Clone)]
pub struct Matched {
    pub config: Arc<Config>,
    pub(super) index: usize,
}

impl std::fmt::Display for Matched {
    /// `.kseal.yaml rule 2 (prod/**)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rule = self.rule();
        write!(
            f,
            "{} rule {} ({})",
            self.config.file.display(),
            rule.number,
            rule.pattern
        )
    }
}

impl Matched {
    pub fn rule(&self) -> &Rule {
        &self.config.rules[self.index]
    }

    /// Identifies the rule, for caches.
    pub(super) fn key(&self) -> (PathBuf, usize) {
        (self.config.file.clone(), self.index)
    }

    /// The recipient flags a command runs with: the command line's when it names any
    /// recipient (flags win), else the rule's. Cluster flags (`--kubeconfig`,
    /// `--controller-namespace`) carry over; the rule's context is used unless
    /// `--context` was given.
    pub fn recipient_args(&self, flags: &RecipientArgs) -> RecipientArgs {
        if !flags.is_empty() || flags.with_cluster {
            return flags.clone();
        }
        let spec = &self.rule().spec;
        let mut cluster = flags.cluster.clone();
        if cluster.context.is_none() {
            cluster.context.clone_from(&spec.context);
        }
        RecipientArgs {
            recipients: spec.recipients.clone(),
            recipients_files: spec
                .recipients_files
                .iter()
                .map(|f| self.config.resolve(f))
                .collect(),
            certs: spec.cert.iter().map(|c| self.cert_location(c)).collect(),
            with_cluster: spec.context.is_some(),
            allow_classic_with_pq: flags.allow_classic_with_pq,
            cluster,
        }
    }

    /// The recipients to seal to under `rule` (see [`Matched::recipient_args`]), or the
    /// flags' without one; errors name the rule.
    pub fn resolve(
        rule: Option<&Matched>,
        flags: &RecipientArgs,
    ) -> Result<crate::recipient_flags::Resolved> {
        match rule {
            Some(rule) => rule
                .recipient_args(flags)
                .resolve()
                .with_context(|| rule.to_string()),
            None => flags.resolve(),
        }
    }

    fn cert_location(&self, cert: &str) -> String {
        if cert.starts_with("https://") || cert.starts_with("http://") {
            cert.to_owned()
        } else {
            self.config.resolve(cert).display().to_string()
        }
    }
}

/// The highest directory the search for `.kseal.yaml` from `dir` reaches (see the module
/// doc): the repository's root, else the home directory above `dir`, else `dir`.
pub fn search_root(dir: &Path) -> PathBuf {
    if let Some(repo) = dir.ancestors().find(|d| d.join(".git").exists()) {
        return repo.to_path_buf();
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if !home.as_os_str().is_empty() && dir.starts_with(&home) => home,
        _ => dir.to_path_buf(),
    }
}
