//! kseal-custody: the cluster's private keys under custody. With custody on, a key
//! Secret holds its identity sealed (ChaCha20-Poly1305) under a fresh data key, and that
//! data key wrapped by a custodian with a key-encryption key (KEK) that never leaves it:
//! an etcd snapshot, a backup or a reader of the Secret gets nothing that opens a value.
//! The identity's place (cluster, namespace, Secret name, recipient) is authenticated
//! beside it, so a wrapped key copied to another Secret or cluster does not open.
//!
//! - [`envelope`]: the stored format ([`WrappedIdentity`]) and the sealing of the identity
//!   under its data key, pure logic;
//! - the custodians, behind one [`Custodian`]: [`kms`], a Kubernetes KMS v2 plugin over
//!   its unix socket (`Status`, `Encrypt`, `Decrypt`), the same plugin that serves
//!   kube-apiserver's encryption at rest (AWS, Azure, GCP, Vault and others ship one);
//!   and [`pkcs11`], a non-extractable AES key on a PKCS#11 token (an HSM);
//! - [`wrap_identity`] and [`unwrap_identity`]: the envelope and a custodian together.

pub mod envelope;
mod error;
pub mod kms;
pub mod pkcs11;
mod proto;

pub use envelope::{Context, WrappedDataKey, WrappedIdentity};
pub use error::Error;
pub use kms::KmsV2;
pub use pkcs11::{Pkcs11, Pkcs11Config};

use zeroize::Zeroizing;

/// Who holds the key-encryption key.
#[derive(Clone, Debug)]
pub enum Custodian {
    KmsV2(KmsV2),
    Pkcs11(Pkcs11),
}

impl Custodian {
    /// The kind written in each key it wraps (`kms-v2`, `pkcs11`).
    pub fn kind(&self) -> &'static str {
        match self {
            Custodian::KmsV2(kms) => kms.kind(),
            Custodian::Pkcs11(token) => token.kind(),
        }
    }

    /// How messages name it: the kind and where it is.
    pub fn name(&self) -> String {
        match self {
            Custodian::KmsV2(kms) => kms.name(),
            Custodian::Pkcs11(token) => token.name(),
        }
    }

    /// The id of the KEK new data keys are wrapped under now: the KMS plugin's `Status`
    /// (which must say `ok`), the configured key label on a token. A key wrapped under
    /// another is due to be wrapped again (the KEK was rotated).
    pub async fn current_kek(&self) -> Result<String, Error> {
        match self {
            Custodian::KmsV2(kms) => {
                let status = kms.status().await?;
                if status.healthz != "ok" {
                    return Err(Error::Refused {
                        custodian: kms.name(),
                        why: format!("Status says {:?}", status.healthz),
                    });
                }
                Ok(status.key_id)
            }
            Custodian::Pkcs11(token) => Ok(token.current_kek().to_owned()),
        }
    }

    /// Wraps a data key under the current KEK.
    pub async fn encrypt(&self, data_key: &[u8]) -> Result<WrappedDataKey, Error> {
        match self {
            Custodian::KmsV2(kms) => kms.encrypt(data_key).await,
            Custodian::Pkcs11(token) => token.encrypt(data_key).await,
        }
    }

    /// Unwraps a data key, under the KEK it names.
    pub async fn decrypt(&self, wrapped: &WrappedDataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        match self {
            Custodian::KmsV2(kms) => kms.decrypt(wrapped).await,
            Custodian::Pkcs11(token) => token.decrypt(wrapped).await,
        }
    }
}

/// Seals `identity` (an age identity string) for `context` under a fresh data key that
/// `custodian` wraps.
pub async fn wrap_identity(
    custodian: &Custodian,
    identity: &[u8],
    context: &Context,
) -> Result<WrappedIdentity, Error> {
    let data_key = envelope::DataKey::generate()?;
    let wrapped = custodian.encrypt(data_key.as_bytes()).await?;
    envelope::seal(&data_key, identity, context, custodian.kind(), wrapped)
}

/// Opens what [`wrap_identity`] made: the custodian unwraps the data key, which opens the
/// identity only in the `context` it was sealed for.
pub async fn unwrap_identity(
    custodian: &Custodian,
    wrapped: &WrappedIdentity,
    context: &Context,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let parts = wrapped.parts()?;
    if wrapped.custodian != custodian.kind() {
        return Err(Error::Malformed(format!(
            "made by custodian {:?}, not {}",
            wrapped.custodian,
            custodian.kind()
        )));
    }
    let data_key = custodian.decrypt(&parts.wrapped).await?;
    let data_key = envelope::DataKey::from_unwrapped(&data_key)?;
    envelope::open(&data_key, &parts, context, &wrapped.custodian)
}
