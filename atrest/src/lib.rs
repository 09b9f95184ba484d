//! kseal-atrest: whether a cluster stores Secrets encrypted at rest, from the weakest
//! check to ground truth. Unlike `kseal-core`, this crate talks to a cluster: [`probe`]
//! gathers its evidence through the Kubernetes API.
//! - [`config`]: lint an `EncryptionConfiguration` file (`kseal at-rest lint`): its
//!   schema, kube-apiserver's validation, kseal's policy;
//! - [`evidence`]: the apiserver flags, health checks, metrics and canary write, read
//!   from kube-apiserver's `/metrics` with [`metrics_text`];
//! - [`verdict`]: the verdict drawn from the evidence (`kseal at-rest check`, the
//!   controller's policy);
//! - [`stored`]: classify what etcd holds (`kseal at-rest scan-etcd`);
//! - [`probe`]: gather the evidence through the Kubernetes API.
//!
//! The formats, metric names and rules come from kube-apiserver's source; see
//! `docs/at-rest.md` for what each check proves and what it cannot.

pub mod config;
pub mod evidence;
pub mod metrics_text;
pub mod probe;
pub mod stored;
pub mod verdict;
