//! The custodian as a PKCS#11 token (a network HSM, a YubiHSM, a cloud HSM's PKCS#11
//! library; SoftHSM2 in the tests): an AES-256 key on the token, never extractable,
//! wraps each data key with AES-GCM. The module is loaded at run time, so the binary
//! that uses it is linked dynamically (a static binary cannot load a library).
//!
//! The KEK is found by its label on the token found by its label (slot numbers change
//! with the token's serial). A rotated KEK is a new key with a new label: keys wrapped
//! under the old one open while it stays on the token.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11 as Module};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::envelope::WrappedDataKey;
use crate::error::Error;

/// The kind written in every key this custodian wraps.
pub const KIND: &str = "pkcs11";
const IV_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Where the KEK is: the module, the token's label, the key's label and the user PIN.
pub struct Pkcs11Config {
    pub module: PathBuf,
    pub token: String,
    /// The KEK new data keys are wrapped under.
    pub key: String,
    pub pin: Zeroizing<String>,
}

/// A PKCS#11 token holding the KEK. Cloning shares the loaded module.
#[derive(Clone)]
pub struct Pkcs11 {
    inner: Arc<Inner>,
}

struct Inner {
    module_path: PathBuf,
    token: String,
    key: String,
    pin: AuthPin,
    module: Module,
    slot: Slot,
}

impl std::fmt::Debug for Pkcs11 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11({})", self.name())
    }
}

impl Pkcs11 {
    /// Loads the module and finds the token and the KEK (blocking: call it from a
    /// blocking context). Fails with [`Error::Unreachable`] when the module or the token
    /// is not there, [`Error::Refused`] when the PIN or the key is wrong.
    pub fn open(config: Pkcs11Config) -> Result<Self, Error> {
        let name = describe(&config.module, &config.token, &config.key);
        let unreachable = |why: String| Error::Unreachable {
            custodian: name.clone(),
            why,
        };
        let module = Module::new(&config.module)
            .map_err(|e| unreachable(format!("cannot load the module: {e}")))?;
        match module.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(unreachable(format!("cannot initialize the module: {e}"))),
        }
        let slots = module
            .get_slots_with_token()
            .map_err(|e| unreachable(format!("cannot list its slots: {e}")))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                module
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == config.token)
            })
            .ok_or_else(|| unreachable("no token with that label".into()))?;
        let custodian = Pkcs11 {
            inner: Arc::new(Inner {
                module_path: config.module,
                token: config.token,
                key: config.key,
                pin: AuthPin::from(config.pin.as_str().to_owned()),
                module,
                slot,
            }),
        };
        // The KEK must be there, and the PIN right, before anything is wrapped.
        let session = custodian.session()?;
        custodian.find_key(&session, &custodian.inner.key)?;
        Ok(custodian)
    }

    /// `pkcs11`.
    pub fn kind(&self) -> &'static str {
        KIND
    }

    /// How messages name it: `pkcs11 key kek-1 on token kseal (/usr/lib/…/libsofthsm2.so)`.
    pub fn name(&self) -> String {
        describe(&self.inner.module_path, &self.inner.token, &self.inner.key)
    }

    /// The label of the KEK new data keys are wrapped under.
    pub fn current_kek(&self) -> &str {
        &self.inner.key
    }

    /// Wraps `data_key` under the KEK with AES-GCM (a fresh IV, the KEK's label as
    /// associated data).
    pub async fn encrypt(&self, data_key: &[u8]) -> Result<WrappedDataKey, Error> {
        let this = self.clone();
        let data_key = Zeroizing::new(data_key.to_vec());
        blocking(move || this.encrypt_now(&data_key)).await
    }

    /// Unwraps a data key, with the KEK its label names.
    pub async fn decrypt(&self, wrapped: &WrappedDataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        let this = self.clone();
        let wrapped = wrapped.clone();
        blocking(move || this.decrypt_now(&wrapped)).await
    }

    fn encrypt_now(&self, data_key: &[u8]) -> Result<WrappedDataKey, Error> {
        let session = self.session()?;
        let key = self.find_key(&session, &self.inner.key)?;
        let mut iv = [0u8; IV_LEN];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| Error::Malformed("no randomness for an IV".into()))?;
        let aad = aad(&self.inner.key);
        let sealed = {
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
                .map_err(|e| self.refused(format!("AES-GCM parameters: {e}")))?;
            session
                .encrypt(&Mechanism::AesGcm(params), key, data_key)
                .map_err(|e| self.refused(format!("AES-GCM encrypt: {e}")))?
        };
        // Stored as the token left it: a module in FIPS mode makes the IV itself and
        // writes it back into the parameters.
        let mut ciphertext = iv.to_vec();
        ciphertext.extend_from_slice(&sealed);
        Ok(WrappedDataKey {
            kek_id: self.inner.key.clone(),
            ciphertext,
            annotations: BTreeMap::new(),
        })
    }

    fn decrypt_now(&self, wrapped: &WrappedDataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        if wrapped.ciphertext.len() <= IV_LEN {
            return Err(Error::Malformed(
                "wrapped data key shorter than its IV".into(),
            ));
        }
        let session = self.session()?;
        let key = self.find_key(&session, &wrapped.kek_id)?;
        let (iv, sealed) = wrapped.ciphertext.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv.try_into().unwrap_or([0; IV_LEN]);
        let aad = aad(&wrapped.kek_id);
        let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())
            .map_err(|e| self.refused(format!("AES-GCM parameters: {e}")))?;
        // SoftHSM answers a failed tag check with CKR_GENERAL_ERROR: a refusal of this
        // ciphertext, not an outage.
        let opened = session
            .decrypt(&Mechanism::AesGcm(params), key, sealed)
            .map_err(|e| {
                self.refused(format!(
                    "AES-GCM decrypt under {:?} failed ({e}): another KEK's data key, or altered",
                    wrapped.kek_id
                ))
            })?;
        Ok(Zeroizing::new(opened))
    }

    /// A session on the token, logged in as its user.
    fn session(&self) -> Result<Session, Error> {
        let session = self
            .inner
            .module
            .open_ro_session(self.inner.slot)
            .map_err(|e| Error::Unreachable {
                custodian: self.name(),
                why: format!("cannot open a session: {e}"),
            })?;
        match session.login(UserType::User, Some(&self.inner.pin)) {
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(e) => Err(self.refused(format!("login: {e}"))),
        }
    }

    /// The secret key labelled `label`: exactly one.
    fn find_key(&self, session: &Session, label: &str) -> Result<ObjectHandle, Error> {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(|e| self.refused(format!("finding key {label:?}: {e}")))?;
        match found.as_slice() {
            [key] => Ok(*key),
            [] => Err(self.refused(format!("no secret key labelled {label:?} on the token"))),
            _ => Err(self.refused(format!(
                "{} secret keys labelled {label:?}: a KEK's label must be unique",
                found.len()
            ))),
        }
    }

    fn refused(&self, why: String) -> Error {
        Error::Refused {
            custodian: self.name(),
            why,
        }
    }
}

/// How messages name a token key: `pkcs11 key "kek-1" on token "kseal" (/usr/lib/…/libsofthsm2.so)`.
pub fn describe(module: &Path, token: &str, key: &str) -> String {
    format!(
        "{KIND} key {key:?} on token {token:?} ({})",
        module.display()
    )
}

/// The associated data of a wrapped data key: the KEK's label under a fixed prefix.
fn aad(key: &str) -> Vec<u8> {
    let mut aad = b"kseal.dev/custody pkcs11 v1 ".to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}

/// Runs PKCS#11 calls (blocking C calls) off the async runtime.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(Error::Malformed(format!("a PKCS#11 call panicked: {e}"))))
}
