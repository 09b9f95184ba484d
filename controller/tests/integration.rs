//! kseal-controller's integration tests, built as one test binary: one compile of
//! `common` and one link for all of them, instead of one per file. Each file is a module
//! named after it (`custody::…`, `keys::…`); nextest still runs every test in a process
//! of its own.

mod common;

#[path = "at_rest.rs"]
mod at_rest;
#[path = "attacks.rs"]
mod attacks;
#[path = "bitnami.rs"]
mod bitnami;
#[path = "crd.rs"]
mod crd;
#[path = "custody.rs"]
mod custody;
#[path = "docs.rs"]
mod docs;
#[path = "e2e.rs"]
mod e2e;
#[path = "failover.rs"]
mod failover;
#[path = "faults.rs"]
mod faults;
#[path = "flux.rs"]
mod flux;
#[path = "health.rs"]
mod health;
#[path = "install.rs"]
mod install;
#[path = "keys.rs"]
mod keys;
#[path = "man.rs"]
mod man;
#[path = "monitoring.rs"]
mod monitoring;
#[path = "rbac.rs"]
mod rbac;
#[path = "repository.rs"]
mod repository;
#[path = "requests.rs"]
mod requests;
#[path = "startup.rs"]
mod startup;
