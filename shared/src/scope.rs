//! Scopes and bindings: where a sealed value may be opened.
//!
//! A [`Binding`] is what the envelope inside each ciphertext authenticates. The scope
//! decides which parts of the location it pins: `strict` pins namespace and name,
//! `namespace-wide` the namespace, `cluster-wide` neither. The item key is always pinned.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a sealed value may be opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Only in the SealedSecret's own namespace and under its own name.
    #[default]
    Strict,
    /// In any SealedSecret of the same namespace.
    NamespaceWide,
    /// In any SealedSecret of any namespace.
    ClusterWide,
}

impl Scope {
    /// The scope's name as written in the format and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }

    /// Whether the namespace is part of the binding.
    pub fn binds_namespace(self) -> bool {
        self != Scope::ClusterWide
    }

    /// Whether the name is part of the binding.
    pub fn binds_name(self) -> bool {
        self == Scope::Strict
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the three scope names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown scope {0:?} (expected strict, namespace-wide or cluster-wide)")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "strict" => Ok(Scope::Strict),
            "namespace-wide" => Ok(Scope::NamespaceWide),
            "cluster-wide" => Ok(Scope::ClusterWide),
            other => Err(UnknownScope(other.to_owned())),
        }
    }
}

/// A name that breaks the Kubernetes rules for its field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} is required for {scope} scope")]
    Missing { what: &'static str, scope: Scope },
    #[error("{what} {value:?} is not valid: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// The location a sealed item is bound to. Fields the scope does not bind are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub scope: Scope,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub item: String,
}

impl Binding {
    /// The binding for `item` of a SealedSecret at `namespace`/`name` under `scope`.
    /// Parts the scope does not bind are dropped; parts it binds must be present and valid.
    pub fn new(
        scope: Scope,
        namespace: Option<&str>,
        name: Option<&str>,
        item: &str,
    ) -> Result<Self, NameError> {
        validate_item_key(item)?;
        let namespace = if scope.binds_namespace() {
            let ns = namespace.ok_or(NameError::Missing {
                what: "namespace",
                scope,
            })?;
            validate_namespace(ns)?;
            Some(ns.to_owned())
        } else {
            None
        };
        let name = if scope.binds_name() {
            let n = name.ok_or(NameError::Missing {
                what: "name",
                scope,
            })?;
            validate_name(n)?;
            Some(n.to_owned())
        } else {
            None
        };
        Ok(Binding {
            scope,
            namespace,
            name,
            item: item.to_owned(),
        })
    }
}

fn invalid(what: &'static str, value: &str, reason: &'static str) -> NameError {
    NameError::Invalid {
        what,
        value: value.to_owned(),
        reason,
    }
}

/// A namespace: an RFC 1123 label (lowercase alphanumerics and `-`, at most 63).
pub fn validate_namespace(ns: &str) -> Result<(), NameError> {
    if ns.len() > 63 {
        return Err(invalid("namespace", ns, "longer than 63 characters"));
    }
    check_label(ns).map_err(|reason| invalid("namespace", ns, reason))
}

/// An object name: an RFC 1123 subdomain (labels joined by `.`, at most 253).
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.len() > 253 {
        return Err(invalid("name", name, "longer than 253 characters"));
    }
    name.split('.')
        .try_for_each(check_label)
        .map_err(|reason| invalid("name", name, reason))
}

fn check_label(label: &str) -> Result<(), &'static str> {
    let bytes = label.as_bytes();
    if bytes.is_empty() {
        return Err("must not be empty");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
    {
        return Err("only lowercase letters, digits, '-' and '.' are allowed");
    }
    if bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

/// A Secret data key: `[-._a-zA-Z0-9]+`, at most 253, not `.` or `..`.
pub fn validate_item_key(key: &str) -> Result<(), NameError> {
    if key.is_empty() {
        return Err(invalid("item key", key, "must not be empty"));
    }
    if key.len() > 253 {
        return Err(invalid("item key", key, "longer than 253 characters"));
    }
    if key == "." || key == ".." {
        return Err(invalid("item key", key, "must not be '.' or '..'"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(
            "item key",
            key,
            "only letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip() {
        for scope in [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide] {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("Strict".parse::<Scope>().is_err());
    }

    #[test]
    fn binding_drops_what_the_scope_does_not_bind() {
        let b = Binding::new(Scope::NamespaceWide, Some("prod"), Some("db"), "pw").unwrap();
        assert_eq!(b.namespace.as_deref(), Some("prod"));
        assert_eq!(b.name, None);
        let b = Binding::new(Scope::ClusterWide, None, None, "pw").unwrap();
        assert_eq!((b.namespace, b.name), (None, None));
    }

    #[test]
    fn binding_requires_what_the_scope_binds() {
        assert_eq!(
            Binding::new(Scope::Strict, Some("prod"), None, "pw"),
            Err(NameError::Missing {
                what: "name",
                scope: Scope::Strict
            })
        );
        assert!(Binding::new(Scope::NamespaceWide, None, None, "pw").is_err());
    }

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(validate_namespace("kube-system").is_ok());
        assert!(validate_namespace("Kube").is_err());
        assert!(validate_namespace("-a").is_err());
        assert!(validate_namespace(&"a".repeat(64)).is_err());
        assert!(validate_name("db.creds-1").is_ok());
        assert!(validate_name("db..creds").is_err());
        assert!(validate_item_key("tls.crt").is_ok());
        assert!(validate_item_key("a b").is_err());
        assert!(validate_item_key("..").is_err());
    }
}
