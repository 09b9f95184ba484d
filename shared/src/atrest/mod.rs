//! Encryption at rest of Secrets, from the weakest check to ground truth:
//! - [`config`]: lint an `EncryptionConfiguration` file (`kseal at-rest lint`);
//! - [`evidence`]: the apiserver flags, health checks, metrics and canary write, and the
//!   verdict drawn from them (`kseal at-rest check`, the controller's policy);
//! - [`stored`]: classify what etcd holds (`kseal at-rest scan-etcd`);
//! - `probe` (feature `probe`): gather the evidence through the Kubernetes API.
//!
//! The formats, metric names and rules come from kube-apiserver's source; see
//! `docs/at-rest.md` for what each check proves and what it cannot.

pub mod config;
pub mod evidence;
#[cfg(feature = "probe")]
pub mod probe;
pub mod stored;
