//! kseal-controller: unseals SealedSecrets into Secrets, owns and rotates the cluster's
//! keys, publishes their recipients, serves health and metrics. `main.rs` parses the
//! [`flags`] and calls [`run`]. The parts:
//! - [`replica`]: what every replica runs (the key watches, HTTP, leader election), and
//!   [`leader`]: what only the leader runs, over the [`watch`] plumbing of its Controllers;
//! - [`reconcile`] (kseal's SealedSecrets) and [`bitnami`] (Bitnami's, in drop-in mode),
//!   with [`cached`] (what the watch keeps of a SealedSecret), [`owned`] (of a Secret it
//!   wrote), [`refused`] (the Secrets it was refused on) and [`failure`] (why a reconcile
//!   failed, and the backoff);
//! - [`keys`]: the key Secrets, rotation and the recipients publisher; [`custody`]: keys
//!   wrapped by a custodian (`kseal-custody`), moved between their plaintext and wrapped
//!   forms, and the leader's custody upkeep; [`crypto`]: where decryption runs;
//! - [`answer`]: what the controller answers about one SealedSecret (verify, reseal,
//!   migrate), asked in [`requests`] (SealedSecretRequests) or over the HTTP
//!   [`services`], served with health and metrics by [`http`];
//! - [`atrest`]: the encryption-at-rest policy; [`events`] and [`metrics`]: what it reports,
//!   with [`census`]: the leader's counts of the SealedSecrets it watches;
//! - [`crd`]: the CustomResourceDefinitions, generated from kseal-core's types.

pub mod answer;
pub mod atrest;
pub mod bitnami;
pub mod cached;
pub mod census;
pub mod crd;
pub mod crypto;
pub mod custody;
pub mod events;
pub mod failure;
pub mod flags;
pub mod http;
pub mod keys;
pub mod leader;
pub mod metrics;
pub mod owned;
pub mod reconcile;
pub mod refused;
pub mod replica;
pub mod requests;
pub mod services;
pub mod watch;

pub use flags::client;
pub use replica::run;
