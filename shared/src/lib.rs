//! kseal-core: the sealing format, the `SealedSecret` resource types and the pure logic
//! both binaries share. Nothing here talks to a cluster or touches the filesystem: the
//! `kseal` CLI and `kseal-controller` do the I/O and call these functions.
//!
//! Map of the crate:
//! - [`scope`]: where a sealed value may be opened (strict, namespace-wide, cluster-wide)
//!   and the Kubernetes name rules behind it.
//! - [`envelope`]: the versioned header inside every age payload that authenticates the
//!   scope and the item key.
//! - [`recipients`] and [`keys`]: public recipients with their fingerprints, and private
//!   identities.
//! - [`pq`]: the hybrid post-quantum age recipient type (`age1pq1…`, ML-KEM-768 + X25519).
//! - [`item`]: seal and open one value; [`rewrap`]: move one to a new cluster key,
//!   keeping every recipient the cluster does not own.
//! - [`age_header`] and [`checks`]: what can be read and checked without a key (for
//!   `inspect` and `validate`).
//! - [`resource`]: the `SealedSecret` and `SealedSecretRequest` custom resources, as
//!   plain types (`object`: their shared shape on the wire; kube's client takes them
//!   through `k8s_openapi::Resource`, so this crate does not depend on kube).
//! - [`contract`]: the names the CLI and the controller agree on in the cluster (the
//!   recipients ConfigMap, the leader Lease, field managers, labels and annotations).
//! - [`manifest`]: read Secret and SealedSecret documents from YAML or JSON.
//! - [`sealing`]: whole objects: Secret → SealedSecret and back.
//! - `bitnami` (feature `bitnami`): Bitnami sealed-secrets keys, values and objects,
//!   for `kseal migrate` and the controller's drop-in mode.
//! - [`limits`]: how many items, and key trials, one object may cost to open.
//! - [`policy`]: where a SealedSecret may be unsealed and what its template may set.
//! - [`reason`]: why a SealedSecret is or is not unsealed, one vocabulary for the
//!   controller's condition, Event and metric, the verify answers and the CLI.

pub mod age_header;
#[cfg(feature = "bitnami")]
pub mod bitnami;
pub mod checks;
pub mod contract;
pub mod envelope;
pub mod item;
pub mod keys;
pub mod limits;
pub mod manifest;
mod object;
pub mod policy;
pub mod pq;
pub mod reason;
pub mod recipients;
pub mod resource;
pub mod rewrap;
pub mod scope;
pub mod sealing;

pub use limits::MAX_SECRET_BYTES;
