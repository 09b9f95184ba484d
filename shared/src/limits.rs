//! How much work one object may cost the controller: what a writer of a SealedSecret (in
//! Git or in the cluster), of a `SealedSecretRequest` or of a request body can make it do,
//! decided before any decryption.
//!
//! Every sealed value is bounded on its own (`age_header`: 16 stanzas, 32 KiB header, a
//! Secret's size). What is bounded here is the object: how many items it holds, and how
//! many times a private key is tried on a stanza to open them all. One key trial is one
//! X25519 agreement (tens of microseconds); a post-quantum one costs [`PQ_TRIAL`] of
//! them; a Bitnami RSA decryption is counted apart ([`bitnami_trials`]). The figures
//! behind these numbers come from `cargo bench -p kseal-controller --bench work`.

/// The largest Secret the API server accepts: the sum of all values, in bytes.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// Items one SealedSecret (kseal's or Bitnami's) or one request may hold.
pub const MAX_ITEMS: usize = 256;

/// Key trials one kseal SealedSecret may cost to open: every item sealed to all 16
/// recipients an item may carry, each tried with the one key its hint names.
pub const MAX_KEY_TRIALS: usize = MAX_ITEMS * crate::age_header::MAX_STANZAS;

/// What one post-quantum key trial counts as, in X25519 trials (ML-KEM-768
/// decapsulation, an X25519 agreement and the SHA-3 combiner).
pub const PQ_TRIAL: usize = 3;

/// RSA decryptions one Bitnami SealedSecret may cost with `keys` Bitnami keys: one per
/// item with the key that opened the item before it, and four full rounds of the keys
/// for the items that were sealed with another (a `kubeseal --merge-into` after a key
/// renewal).
pub fn bitnami_trials(keys: usize) -> usize {
    MAX_ITEMS + 4 * keys
}

/// A SealedSecret refused whole, before any decryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("{0} items, more than the {MAX_ITEMS} one SealedSecret may hold: split it")]
    TooManyItems(usize),
    #[error(
        "opening it would try a key {0} times (items × recipient stanzas × keys), more than the {MAX_KEY_TRIALS} one SealedSecret may cost"
    )]
    TooManyTrials(usize),
    #[error(
        "opening it took more than the {0} RSA decryptions one Bitnami SealedSecret may cost (its items were sealed with many different keys)"
    )]
    TooManyBitnamiTrials(usize),
}

/// Refuses more than [`MAX_ITEMS`] items.
pub fn check_items(items: usize) -> Result<(), LimitError> {
    if items > MAX_ITEMS {
        return Err(LimitError::TooManyItems(items));
    }
    Ok(())
}
