//! `.kseal.yaml` creation rules: which recipients, scope and namespace a file's
//! SealedSecrets get, by where the file is in the repository. Found the way SOPS finds
//! `.sops.yaml`, the nearest one in the file's directory or above it, but never above the
//! repository's root (the nearest directory holding `.git`; outside a repository, the
//! home directory, or the file's own directory when it is not under it): a `.kseal.yaml`
//! someone else left in a parent directory must not choose the recipients. The first rule
//! whose pattern matches the file's path (relative to the directory of `.kseal.yaml`, with
//! `/` separators) applies; a file no rule matches behaves as if there were no rules.
//! Command-line flags win over a rule. The files a rule names (`recipientsFiles`, a `cert`
//! file) must lie inside that root too.
//!
//! ```yaml
//! rules:
//!   - path: prod/**                # a glob (`*` stays within a directory, `**` crosses
//!     context: prod                #   them), or pathRegex: a regular expression
//!     recipientsFiles: [keys/escrow.txt]
//!     scope: strict
//!     namespace: payments
//!   - path: staging/**
//!     cert: certs/staging.json     # the cluster's recipients document, read offline
//!   - path: dev/**
//!     recipients: [age1…]
//! ```
//!
//! A rule names at most one cluster: a kubeconfig `context` (its newest key is read from
//! the cluster, and `kseal reseal` asks its controller), or a `cert` (the recipients
//! document `kseal recipients` prints, committed beside the files: every key the cluster
//! holds, newest first, known offline). `recipients` and `recipientsFiles` are further
//! recipients (an escrow key, a team's keys), every one required.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::recipients::{Fingerprint, Recipient, RecipientsDocument, parse_cert};
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

enum Matcher {
    Glob(globset::GlobMatcher),
    Regex(regex::Regex),
}

/// One rule, checked and ready to match.
pub struct Rule {
    /// 1-based, as people count rules in the file.
    pub number: usize,
    /// The pattern as written (`prod/**`, or the regex).
    pub pattern: String,
    matcher: Matcher,
    pub spec: RuleSpec,
    pub scope: Option<Scope>,
}

/// A `.kseal.yaml` read and checked.
pub struct Config {
    /// The file, as found (relative to the working directory when under it).
    pub file: PathBuf,
    /// Its directory, absolute: patterns match paths relative to it.
    dir: PathBuf,
    rules: Vec<Rule>,
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
    fn resolve(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }
}

/// The rule that applies to a file.
#[derive(Clone)]
pub struct Matched {
    pub config: Arc<Config>,
    index: usize,
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
    fn key(&self) -> (PathBuf, usize) {
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

/// What a rule asks of an object's recipients, resolved once per rule.
#[derive(Clone, Debug)]
pub struct Wanted {
    /// `recipients` and `recipientsFiles`: each must be there.
    pub named: Vec<Recipient>,
    /// Where each of `named` was given: `recipients`, or the file as the rule writes it.
    pub named_from: HashMap<Fingerprint, String>,
    /// The rule's cluster, when it names one.
    pub cluster: Option<ClusterKeys>,
}

/// A cluster's keys, newest first, and where they were read.
#[derive(Clone, Debug)]
pub struct ClusterKeys {
    /// `context prod`, or `cert certs/prod.json`.
    pub source: String,
    /// The kubeconfig context, when it is read live.
    pub context: Option<String>,
    /// Newest first; empty for a context not read (offline).
    pub keys: Vec<Recipient>,
    /// Creation times, as the recipients document gives them, by fingerprint.
    pub created: HashMap<Fingerprint, String>,
}

impl Wanted {
    /// Where the rule gets the recipient `fp` from, as `kseal inspect` names it: a file
    /// of `recipientsFiles`, `recipients`, or its cluster (and which of its keys).
    pub fn source_of(&self, fp: &Fingerprint) -> Option<String> {
        if let Some(c) = &self.cluster
            && let Some(i) = c.keys.iter().position(|k| k.fingerprint() == *fp)
        {
            let which = if i == 0 { "newest key" } else { "older key" };
            return Some(format!("{}, {which}", c.source));
        }
        self.named_from.get(fp).cloned()
    }

    /// The expected recipients for `kseal_core::checks::check_recipients`. A context not
    /// read (offline) counts as one recipient beside the named ones, unchecked.
    pub fn expected(&self) -> kseal_core::checks::ExpectedRecipients {
        let cluster = self.cluster.as_ref();
        let unread = cluster.is_some_and(|c| c.keys.is_empty());
        kseal_core::checks::ExpectedRecipients {
            named: self.named.iter().map(Recipient::fingerprint).collect(),
            cluster: cluster
                .filter(|_| !unread)
                .map(|c| c.keys.iter().map(Recipient::fingerprint).collect()),
            unread_cluster: unread,
        }
    }
}

/// Finds and caches `.kseal.yaml` files and what their rules resolve to.
#[derive(Default)]
pub struct Rules {
    /// Per directory searched: the config that applies there, if any.
    found: HashMap<PathBuf, Option<Arc<Config>>>,
    wanted: HashMap<(PathBuf, usize, bool), Wanted>,
    /// No network: a rule's `cert` URL is not fetched (its keys stay unknown, as a
    /// context's do offline).
    offline: bool,
}

impl Rules {
    /// Rules that never reach the network: for `kseal scan`, a guard that runs on every
    /// commit and must not be made to fetch what a rule names.
    pub fn offline() -> Self {
        Rules {
            offline: true,
            ..Rules::default()
        }
    }

    /// The rule that applies to `file` (which need not exist yet): the first rule of the
    /// nearest `.kseal.yaml` at or above its directory whose pattern matches.
    pub fn for_file(&mut self, file: &Path) -> Result<Option<Matched>> {
        if file == Path::new("-") {
            return Ok(None);
        }
        let absolute = std::path::absolute(file)
            .with_context(|| format!("{}: cannot resolve the path", file.display()))?;
        let Some(config) = self.config_above(&absolute)? else {
            return Ok(None);
        };
        let Ok(relative) = absolute.strip_prefix(&config.dir) else {
            return Ok(None);
        };
        let relative: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let relative = relative.join("/");
        let index = config.rules.iter().position(|rule| match &rule.matcher {
            Matcher::Glob(g) => g.is_match(&relative),
            Matcher::Regex(r) => r.is_match(&relative),
        });
        Ok(index.map(|index| Matched { config, index }))
    }

    fn config_above(&mut self, file: &Path) -> Result<Option<Arc<Config>>> {
        let mut searched = Vec::new();
        let mut dir = file.parent();
        let top = file.parent().map(search_root);
        let mut found = None;
        while let Some(d) = dir {
            if let Some(cached) = self.found.get(d) {
                found = cached.clone();
                break;
            }
            searched.push(d.to_path_buf());
            let candidate = d.join(FILE_NAME);
            if candidate.is_file() {
                found = Some(Arc::new(Config::read(&shorten(&candidate))?));
                break;
            }
            if Some(d) == top.as_deref() {
                break;
            }
            dir = d.parent();
        }
        for d in searched {
            self.found.insert(d, found.clone());
        }
        Ok(found)
    }

    /// What `matched` asks for. `live` reads a rule's context from the cluster (its keys
    /// and their ages); otherwise a context's keys stay unknown. A cert is always read.
    pub fn wanted(
        &mut self,
        matched: &Matched,
        flags: &RecipientArgs,
        live: bool,
    ) -> Result<Wanted> {
        let (file, index) = matched.key();
        if let Some(w) = self.wanted.get(&(file.clone(), index, live)) {
            return Ok(w.clone());
        }
        let args = matched.recipient_args(&RecipientArgs {
            cluster: flags.cluster.clone(),
            allow_classic_with_pq: flags.allow_classic_with_pq,
            ..RecipientArgs::default()
        });
        let spec = &matched.rule().spec;
        let at = matched.to_string();
        // The named recipients alone: the cert is the cluster, read whole below.
        let named = RecipientArgs {
            certs: Vec::new(),
            ..args.clone()
        }
        .named()
        .with_context(|| at.clone())?;
        let remote = |cert: &str| cert.starts_with("https://") || cert.starts_with("http://");
        let cluster = if let Some(cert) = args.certs.first().filter(|c| self.offline && remote(c)) {
            Some(ClusterKeys {
                source: format!("cert {cert} (not fetched offline)"),
                context: None,
                keys: Vec::new(),
                created: HashMap::new(),
            })
        } else if let Some(cert) = args.certs.first() {
            let text = crate::recipient_flags::fetch_cert(cert).with_context(|| at.clone())?;
            let (keys, created) = cert_keys(&text).with_context(|| format!("{at}: cert {cert}"))?;
            Some(ClusterKeys {
                source: format!("cert {}", spec.cert.as_deref().unwrap_or(cert)),
                context: None,
                keys,
                created,
            })
        } else if let Some(context) = &args
            .cluster
            .context
            .clone()
            .filter(|_| spec.context.is_some())
        {
            let (keys, created) = if live {
                let cluster = args.connect().with_context(|| at.clone())?;
                let (doc, _) = cluster
                    .configmap_with_annotations()
                    .with_context(|| format!("{at}: context {context}"))?;
                document_keys(&doc).with_context(|| format!("{at}: context {context}"))?
            } else {
                (Vec::new(), HashMap::new())
            };
            Some(ClusterKeys {
                source: format!("context {context}"),
                context: Some(context.clone()),
                keys,
                created,
            })
        } else {
            None
        };
        // Each named recipient's source, one file at a time.
        let mut named_from = HashMap::new();
        for text in &spec.recipients {
            if let Ok(r) = text.parse::<Recipient>() {
                named_from.insert(r.fingerprint(), "recipients".to_owned());
            }
        }
        for file in &spec.recipients_files {
            let from_file = RecipientArgs {
                recipients_files: vec![matched.config.resolve(file)],
                ..RecipientArgs::default()
            }
            .named()
            .with_context(|| format!("{at}: recipientsFiles {file}"))?;
            for r in from_file {
                named_from
                    .entry(r.fingerprint())
                    .or_insert_with(|| file.clone());
            }
        }
        let wanted = Wanted {
            named,
            named_from,
            cluster,
        };
        self.wanted.insert((file, index, live), wanted.clone());
        Ok(wanted)
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

/// A path under the working directory as a relative one, for messages.
fn shorten(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
}

/// A recipients document's keys, newest first, and their creation times.
pub fn document_keys(
    doc: &RecipientsDocument,
) -> Result<(Vec<Recipient>, HashMap<Fingerprint, String>)> {
    let keys = doc.keys()?;
    let created = doc
        .recipients
        .iter()
        .filter_map(|p| Some((p.fingerprint.clone(), p.created.clone()?)))
        .collect();
    Ok((keys, created))
}

/// Every key a recipients document (or a recipients file) names, newest first.
fn cert_keys(text: &str) -> Result<(Vec<Recipient>, HashMap<Fingerprint, String>)> {
    if text.trim_start().starts_with('{') {
        // parse_cert checks the document and says what is wrong in one line.
        parse_cert(text)?;
        let doc: RecipientsDocument = serde_json::from_str(text)?;
        return document_keys(&doc);
    }
    Ok((parse_cert(text)?, HashMap::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, text: &str) -> Result<Config> {
        let file = dir.join(FILE_NAME);
        std::fs::write(&file, text).unwrap();
        Config::read(&file)
    }

    #[test]
    fn the_first_matching_rule_of_the_nearest_file_applies() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("prod/eu")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        config(
            root,
            "rules:\n  - path: prod/*.yaml\n    namespace: a\n  - path: prod/**\n    namespace: b\n  - pathRegex: ^dev/\n    namespace: c\n",
        )
        .unwrap();
        let mut rules = Rules::default();
        let namespace = |rules: &mut Rules, file: &str| {
            rules
                .for_file(&root.join(file))
                .unwrap()
                .map(|m| m.rule().spec.namespace.clone().unwrap())
        };
        assert_eq!(namespace(&mut rules, "prod/db.yaml").as_deref(), Some("a"));
        // `*` stays within a directory; `**` crosses them.
        assert_eq!(
            namespace(&mut rules, "prod/eu/db.yaml").as_deref(),
            Some("b")
        );
        assert_eq!(namespace(&mut rules, "dev/x/db.yaml").as_deref(), Some("c"));
        assert_eq!(namespace(&mut rules, "staging/db.yaml"), None);
        // A nearer file hides the one above, even with no matching rule.
        config(&root.join("prod/eu"), "rules:\n  - path: none/**\n").unwrap();
        let mut rules = Rules::default();
        assert_eq!(namespace(&mut rules, "prod/eu/db.yaml"), None);
        assert_eq!(namespace(&mut rules, "prod/db.yaml").as_deref(), Some("a"));
    }

    #[test]
    fn a_bad_rule_file_names_the_file_and_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        for (text, says) in [
            (
                "rules:\n  - path: a\n  - path: b\n    recipient: x\n",
                "rule 2: recipient: unknown field `recipient`",
            ),
            (
                "rules:\n  - namespace: a\n",
                "rule 1: give exactly one of path (a glob) and pathRegex",
            ),
            (
                "rules:\n  - path: a\n    pathRegex: b\n",
                "rule 1: give exactly one of path",
            ),
            (
                "rules:\n  - pathRegex: '(['\n",
                "rule 1: pathRegex \"([\" is not a valid regular expression",
            ),
            ("rules:\n  - path: a\n    scope: wide\n", "rule 1: "),
            (
                "rules:\n  - path: a\n    context: x\n    cert: c.json\n",
                "rule 1: names a cluster twice",
            ),
            (
                "rules:\n  - path: a\n    recipients: [age1nope]\n",
                "rule 1: recipients",
            ),
            ("rule: []\n", "unknown field `rule`"),
        ] {
            let err = format!("{:#}", config(dir.path(), text).err().unwrap());
            assert!(err.contains(FILE_NAME), "{err}");
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    /// The third review's N6: a `.kseal.yaml` above the repository (a shared parent
    /// directory) sealed a value to a stranger's key. The search stops at the root.
    #[test]
    fn the_search_stops_at_the_repository_root() {
        let dir = tempfile::tempdir().unwrap();
        let outer = dir.path();
        let repo = outer.join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("prod")).unwrap();
        config(outer, "rules:\n  - path: '**'\n    namespace: stranger\n").unwrap();
        let mut rules = Rules::default();
        assert!(
            rules
                .for_file(&repo.join("prod/db.yaml"))
                .unwrap()
                .is_none()
        );
        // Outside any repository (and the home directory), only the file's own directory.
        std::fs::create_dir_all(outer.join("loose/sub")).unwrap();
        let mut rules = Rules::default();
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        if !outer.starts_with(&home) {
            assert!(
                rules
                    .for_file(&outer.join("loose/sub/db.yaml"))
                    .unwrap()
                    .is_none()
            );
        }
        assert_eq!(search_root(&repo.join("prod")), repo);
    }

    /// N7: a rule's files must be inside the repository: no absolute path, no `..` out.
    #[test]
    fn rule_files_are_confined_to_the_repository() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("keys")).unwrap();
        for (text, says) in [
            (
                "rules:\n  - path: a\n    recipientsFiles: [/etc/passwd]\n",
                "rule 1: recipientsFiles: \"/etc/passwd\" is an absolute path",
            ),
            (
                "rules:\n  - path: a\n    recipientsFiles: [../outside.txt]\n",
                "rule 1: recipientsFiles: \"../outside.txt\" is outside the repository",
            ),
            (
                "rules:\n  - path: a\n    cert: keys/../../x.json\n",
                "rule 1: cert: \"keys/../../x.json\" is outside the repository",
            ),
        ] {
            let err = format!("{:#}", config(&repo, text).err().unwrap());
            assert!(err.contains(says), "{text}: {err}");
        }
        assert!(
            config(
                &repo,
                "rules:\n  - path: a\n    recipientsFiles: [keys/../keys/x.txt]\n"
            )
            .is_ok()
        );
    }
}
