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

mod config;
mod wanted;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::cli::RecipientArgs;

pub use config::{Config, FILE_NAME, Matched};
use config::{Matcher, search_root};
pub use wanted::{ClusterKeys, Wanted, document_keys};

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

    /// What `matched` asks for, resolved once per rule (see [`wanted::resolve`]).
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
        let resolved = wanted::resolve(matched, flags, live, self.offline)?;
        self.wanted.insert((file, index, live), resolved.clone());
        Ok(resolved)
    }
}

/// A path under the working directory as a relative one, for messages.
fn shorten(path: &Path) -> PathBuf {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
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
