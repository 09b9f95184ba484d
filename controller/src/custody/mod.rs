//! Key custody in the controller: the flags that choose a custodian, the cluster identity
//! every wrapped key is bound to, and a key Secret's two forms (the identity in plaintext,
//! or wrapped by the custodian, `kseal_custody`).
//!
//! - With `--custody` on, every key the controller (or `rotate-key`) makes is stored
//!   wrapped; a plaintext key found is still used, and reported until
//!   `kseal-controller custody wrap` wraps it.
//! - A wrapped key is unwrapped once per version of its Secret and kept in memory only
//!   ([`crate::keys`]); nothing writes an unwrapped identity back but `custody unwrap`,
//!   the documented way off custody.
//! - [`moves`]: `custody wrap|unwrap`, existing key Secrets changed between the forms;
//!   [`upkeep`]: the leader's rewrap under a rotated KEK, and its reports.

pub mod moves;
pub mod upkeep;

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kseal_core::keys::{Key, parse_identity_file};
use kseal_custody::{Context, Custodian, Error, KmsV2, Pkcs11, Pkcs11Config, WrappedIdentity};
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::flags::{CustodyArgs, CustodyKind};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

/// The token's PIN: `--custody-pkcs11-pin-file` (one line; its newline dropped) or
/// `--custody-pkcs11-pin`.
fn pin(args: &CustodyArgs) -> anyhow::Result<Zeroizing<String>> {
    if let Some(path) = &args.custody_pkcs11_pin_file {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                anyhow::anyhow!("--custody-pkcs11-pin-file {}: {e}", path.display())
            })?);
        return Ok(Zeroizing::new(
            text.trim_end_matches(['\r', '\n']).to_owned(),
        ));
    }
    args.custody_pkcs11_pin
        .as_ref()
        .map(|pin| pin.0.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--custody pkcs11 needs --custody-pkcs11-pin-file or --custody-pkcs11-pin (KSEAL_CUSTODY_PKCS11_PIN)"
            )
        })
}

/// How the controller wraps and unwraps keys: the custodian (a PKCS#11 token is opened
/// on first use, and again after a failure, so a token that is down at start is retried)
/// and the cluster's identity.
pub struct Custody {
    kind: CustodyKind,
    kms: Option<KmsV2>,
    pkcs11: Option<Pkcs11Settings>,
    opened: tokio::sync::Mutex<Option<Custodian>>,
    client: Client,
    cluster: OnceCell<String>,
}

struct Pkcs11Settings {
    module: PathBuf,
    token: String,
    key: String,
    pin: Zeroizing<String>,
}

impl Custody {
    /// The custody the flags ask for (`None`: `--custody none`). Checks the flags only:
    /// the custodian is reached on first use.
    pub fn from_args(args: &CustodyArgs, client: &Client) -> anyhow::Result<Option<Arc<Custody>>> {
        let (kms, pkcs11) = match args.kind {
            CustodyKind::None => return Ok(None),
            CustodyKind::KmsV2 => (
                Some(KmsV2::new(&args.custody_kms_socket, args.custody_timeout)),
                None,
            ),
            CustodyKind::Pkcs11 => {
                if cfg!(target_feature = "crt-static") {
                    anyhow::bail!(
                        "--custody pkcs11: this kseal-controller is statically linked and cannot load a PKCS#11 module; use the dynamically linked build (docs/operations.md, key custody)"
                    );
                }
                let need = |value: &Option<String>, flag: &str| {
                    value
                        .clone()
                        .ok_or_else(|| anyhow::anyhow!("--custody pkcs11 needs {flag}"))
                };
                let module = args.custody_pkcs11_module.clone().ok_or_else(|| {
                    anyhow::anyhow!("--custody pkcs11 needs --custody-pkcs11-module")
                })?;
                let settings = Pkcs11Settings {
                    module,
                    token: need(&args.custody_pkcs11_token, "--custody-pkcs11-token")?,
                    key: need(&args.custody_pkcs11_key, "--custody-pkcs11-key")?,
                    pin: pin(args)?,
                };
                (None, Some(settings))
            }
        };
        let cluster = OnceCell::new();
        if let Some(id) = &args.custody_cluster_id {
            let _ = cluster.set(id.clone());
        }
        Ok(Some(Arc::new(Custody {
            kind: args.kind,
            kms,
            pkcs11,
            opened: tokio::sync::Mutex::new(None),
            client: client.clone(),
            cluster,
        })))
    }

    /// How messages name the custodian (`kms-v2 plugin at /var/run/…/kms.sock`).
    pub fn name(&self) -> String {
        match (&self.kms, &self.pkcs11) {
            (Some(kms), _) => kms.name(),
            (_, Some(p)) => kseal_custody::pkcs11::describe(&p.module, &p.token, &p.key),
            _ => format!("{:?}", self.kind),
        }
    }

    /// The custodian, opening the PKCS#11 module on first use.
    async fn custodian(&self) -> Result<Custodian, Error> {
        if let Some(kms) = &self.kms {
            return Ok(Custodian::KmsV2(kms.clone()));
        }
        let mut opened = self.opened.lock().await;
        if let Some(custodian) = opened.as_ref() {
            return Ok(custodian.clone());
        }
        let Some(p) = &self.pkcs11 else {
            return Err(Error::Malformed("no custodian configured".into()));
        };
        let config = Pkcs11Config {
            module: p.module.clone(),
            token: p.token.clone(),
            key: p.key.clone(),
            pin: p.pin.clone(),
        };
        let token = tokio::task::spawn_blocking(move || Pkcs11::open(config))
            .await
            .unwrap_or_else(|e| {
                Err(Error::Malformed(format!(
                    "opening the PKCS#11 module panicked: {e}"
                )))
            })?;
        let custodian = Custodian::Pkcs11(token);
        *opened = Some(custodian.clone());
        Ok(custodian)
    }

    /// The cluster's identity: `--custody-cluster-id`, else the UID of `kube-system`
    /// (read once; the UID of a namespace never changes, and a new cluster has another).
    pub async fn cluster(&self) -> Result<String, Error> {
        self.cluster
            .get_or_try_init(|| async {
                let namespace = Api::<Namespace>::all(self.client.clone())
                    .get("kube-system")
                    .await
                    .map_err(|e| Error::Unreachable {
                        custodian: "the cluster identity (the kube-system namespace's UID)".into(),
                        why: e.to_string(),
                    })?;
                namespace
                    .uid()
                    .ok_or_else(|| Error::Malformed("the kube-system namespace has no UID".into()))
            })
            .await
            .cloned()
    }

    async fn context(
        &self,
        namespace: &str,
        name: &str,
        recipient: &str,
    ) -> Result<Context, Error> {
        Ok(Context {
            cluster: self.cluster().await?,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            recipient: recipient.to_owned(),
        })
    }

    /// Wraps `key` for the key Secret `namespace/name`.
    pub async fn wrap(
        &self,
        key: &Key,
        namespace: &str,
        name: &str,
        created: &str,
    ) -> Result<WrappedIdentity, Error> {
        let recipient = key.recipient().to_string();
        let context = self.context(namespace, name, &recipient).await?;
        let identity = key.to_identity_file(created);
        let result = match self.custodian().await {
            Ok(custodian) => {
                kseal_custody::wrap_identity(&custodian, identity.as_bytes(), &context).await
            }
            Err(e) => Err(e),
        };
        self.forget_on_failure(&result).await;
        result
    }

    /// Unwraps the key stored in `namespace/name`, which publishes `recipient`: the key
    /// must be that recipient's, or it is refused as made for another place.
    pub async fn unwrap(
        &self,
        wrapped: &WrappedIdentity,
        namespace: &str,
        name: &str,
        recipient: &str,
    ) -> Result<Key, Error> {
        let context = self.context(namespace, name, recipient).await?;
        let result = match self.custodian().await {
            Ok(custodian) => kseal_custody::unwrap_identity(&custodian, wrapped, &context).await,
            Err(e) => Err(e),
        };
        self.forget_on_failure(&result).await;
        let identity = result?;
        let text = std::str::from_utf8(&identity)
            .map_err(|_| Error::Malformed("the unwrapped identity is not text".into()))?;
        let key = parse_identity_file(text)
            .ok()
            .and_then(|keys| keys.into_iter().next())
            .ok_or_else(|| Error::Malformed("the unwrapped identity is not an age key".into()))?;
        if key.recipient().to_string() != recipient {
            return Err(Error::WrongContext(context.describe()));
        }
        Ok(key)
    }

    /// The KEK new keys are wrapped under now.
    pub async fn current_kek(&self) -> Result<String, Error> {
        let result = match self.custodian().await {
            Ok(custodian) => custodian.current_kek().await,
            Err(e) => Err(e),
        };
        self.forget_on_failure(&result).await;
        result
    }

    /// A token that stopped answering is opened afresh next time (its session may be
    /// gone: an HSM restarted, a network HSM failed over).
    async fn forget_on_failure<T>(&self, result: &Result<T, Error>) {
        if matches!(result, Err(Error::Unreachable { .. })) && self.pkcs11.is_some() {
            *self.opened.lock().await = None;
        }
    }
}
