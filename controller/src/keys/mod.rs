//! The cluster's keys: age identities stored as Secrets in the controller namespace.
//!
//! - A key Secret is labelled `kseal.dev/key`; value `active` means in use, any other
//!   value (say `compromised`) retires it. Added, relabelled or removed key Secrets are
//!   picked up from a watch, without a restart.
//! - The first key is named after the rotation period it belongs to, so replicas that
//!   start together create the *same* name and exactly one create succeeds.
//! - The public recipients (newest first) are published in the `kseal-recipients`
//!   ConfigMap, which every authenticated user may read.
//!
//! Here: [`store`] (what a key Secret holds, and the [`KeyStore`] of usable keys),
//! [`load`] (the key watches, unwrapping keys under custody), [`create`] (new key
//! Secrets and rotation) and [`publisher`] (the recipients ConfigMap).

mod create;
mod load;
mod publisher;
mod store;

pub use create::{
    create_key, ensure_fresh_key, key_name, key_secret, slot_name, wrapped_key_secret,
};
pub use load::{unwrap_stored, watch, watch_bitnami};
pub use publisher::{annotate_recipients, publish, publish_loop};
pub(crate) use store::wipe_data;
pub use store::{
    ACTIVE, CREATED_ANNOTATION, Held, IDENTITY_KEY, KEY_LABEL, KEY_TYPE, KeyStore, LoadedKey,
    Stored, Unavailable, WrappedKey, parse_key_secret,
};
