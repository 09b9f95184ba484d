//! SealedSecrets made in-process, as `kseal seal` makes them, for tests and benchmarks
//! that need many (a thousand CLI processes would cost more than what they measure).

use kseal_core::manifest::SecretInput;
use kseal_core::recipients::RecipientSet;
use kseal_core::resource::SealedSecret;
use kseal_core::scope::Scope;
use zeroize::Zeroizing;

/// `namespace/name` with these items, sealed strict to `recipients`.
pub fn sealed(
    namespace: &str,
    name: &str,
    items: &[(&str, &str)],
    recipients: &RecipientSet,
) -> SealedSecret {
    let mut input = SecretInput {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        ..SecretInput::default()
    };
    for (key, value) in items {
        input
            .data
            .insert((*key).into(), Zeroizing::new(value.as_bytes().to_vec()));
    }
    kseal_core::sealing::seal_secret(&input, Scope::Strict, recipients)
        .expect("sealing a well-formed Secret")
}
