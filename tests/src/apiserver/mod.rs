//! A Kubernetes API test server that unmodified kube-rs clients and `kubectl` talk to
//! through a kubeconfig: HTTPS with its own CA, bearer tokens, discovery, CRDs,
//! list/watch/get/create/update/patch/apply/delete with the API conventions, status
//! subresources, garbage collection, RBAC, programmable non-resource endpoints and fault
//! injection. What it reproduces, and what it leaves out, is listed in
//! `docs/test-apiserver.md`; the facts it follows are in `shared/reference/k8s-api-wire.md`.

mod discovery;
pub mod fields;
mod http;
mod patch;
pub mod rbac;
mod registry;
pub mod selectors;
mod server;
mod status;
mod storage;
mod store;
mod watch;

pub use http::{Faults, Programmed};
pub use server::{Config, TestServer};
pub use storage::SecretStorage;
