//! Why custody failed: the custodian unreachable or refusing, a malformed wrapped key, or
//! one made for another place. No variant ever carries key material.

/// Why a key could not be wrapped or unwrapped. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The custodian did not answer (down, socket missing, timed out).
    #[error("custodian {custodian} unreachable: {why}")]
    Unreachable { custodian: String, why: String },
    /// The custodian answered with a refusal (wrong KEK, unhealthy, denied).
    #[error("custodian {custodian} refused: {why}")]
    Refused { custodian: String, why: String },
    /// The stored wrapped key is not in kseal's format, or is out of bounds.
    #[error("wrapped key: {0}")]
    Malformed(String),
    /// The data key opened, the identity did not: the wrapped key was made for another
    /// Secret or cluster, or was altered.
    #[error(
        "wrapped key does not open for {0}: it was made for another Secret or cluster, or altered"
    )]
    WrongContext(String),
}
