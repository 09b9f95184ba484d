//! What every custodian's tests wrap: one identity, and the place it belongs.

use kseal_custody::Context;

pub const IDENTITY: &[u8] =
    b"AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSFCRUGX";

/// A key Secret's place: cluster, namespace, name and recipient.
pub fn context() -> Context {
    Context {
        cluster: "3f0c1d7e-uid-of-kube-system".into(),
        namespace: "kseal-system".into(),
        name: "kseal-key-20261206".into(),
        recipient: "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq".into(),
    }
}
