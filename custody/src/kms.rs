//! The custodian as a Kubernetes KMS v2 plugin: a gRPC client on the plugin's unix socket
//! (`Status`, `Encrypt`, `Decrypt`). Any KMS v2 plugin serves: the one beside the
//! apiserver on a control-plane node, or one run as a sidecar in the controller's pod
//! (the socket on an `emptyDir`, the pod's cloud identity). The plugin sees only data
//! keys, never an identity.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::uri::PathAndQuery;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};
use zeroize::Zeroizing;

use crate::envelope::WrappedDataKey;
use crate::error::Error;
use crate::proto;

/// The kind written in every key this custodian wraps.
pub const KIND: &str = "kms-v2";
/// Every answer is far smaller; a plugin sending more is refused.
const MAX_MESSAGE: usize = 64 * 1024;

/// What the plugin's `Status` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// `ok` when healthy.
    pub healthz: String,
    /// The KEK new data keys are wrapped under.
    pub key_id: String,
    pub version: String,
}

/// A KMS v2 plugin, reached on its unix socket. Cloning shares the connection.
#[derive(Clone)]
pub struct KmsV2 {
    socket: PathBuf,
    grpc: tonic::client::Grpc<Channel>,
    timeout: Duration,
}

impl std::fmt::Debug for KmsV2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KmsV2({})", self.socket.display())
    }
}

impl KmsV2 {
    /// A client of the plugin at `socket`. It connects on first use (and again after the
    /// plugin restarts); each call gives up after `timeout`.
    pub fn new(socket: &Path, timeout: Duration) -> Self {
        let path = socket.to_path_buf();
        // The URI is not used to connect: every connection goes to the socket.
        let channel = Endpoint::from_static("http://kms.invalid")
            .timeout(timeout)
            .connect_timeout(timeout)
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        let grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        KmsV2 {
            socket: socket.to_path_buf(),
            grpc,
            timeout,
        }
    }

    /// `kms-v2`.
    pub fn kind(&self) -> &'static str {
        KIND
    }

    /// How messages name it: `kms-v2 plugin at /path/to.sock`.
    pub fn name(&self) -> String {
        format!("{KIND} plugin at {}", self.socket.display())
    }

    /// `Status`: the plugin's health and the KEK it wraps under now.
    pub async fn status(&self) -> Result<Status, Error> {
        let answer: proto::StatusResponse = self
            .unary("/v2.KeyManagementService/Status", proto::StatusRequest {})
            .await?;
        Ok(Status {
            healthz: answer.healthz,
            key_id: answer.key_id,
            version: answer.version,
        })
    }

    /// `Encrypt`: the plugin wraps `data_key` under its current KEK.
    pub async fn encrypt(&self, data_key: &[u8]) -> Result<WrappedDataKey, Error> {
        let answer: proto::EncryptResponse = self
            .unary(
                "/v2.KeyManagementService/Encrypt",
                proto::EncryptRequest {
                    plaintext: data_key.to_vec(),
                    uid: request_uid(),
                },
            )
            .await?;
        if answer.ciphertext.is_empty() || answer.key_id.is_empty() {
            return Err(Error::Refused {
                custodian: self.name(),
                why: "Encrypt answered without a ciphertext or a key id".into(),
            });
        }
        Ok(WrappedDataKey {
            kek_id: answer.key_id,
            ciphertext: answer.ciphertext,
            annotations: answer.annotations,
        })
    }

    /// `Decrypt`: the plugin unwraps a data key it wrapped (under any KEK version it
    /// still holds).
    pub async fn decrypt(&self, wrapped: &WrappedDataKey) -> Result<Zeroizing<Vec<u8>>, Error> {
        let answer: proto::DecryptResponse = self
            .unary(
                "/v2.KeyManagementService/Decrypt",
                proto::DecryptRequest {
                    ciphertext: wrapped.ciphertext.clone(),
                    uid: request_uid(),
                    key_id: wrapped.kek_id.clone(),
                    annotations: wrapped.annotations.clone(),
                },
            )
            .await?;
        Ok(Zeroizing::new(answer.plaintext))
    }

    /// One call, within the timeout. A connection the plugin dropped (it restarted) is
    /// reopened once: the first call after a restart meets the old connection's end.
    async fn unary<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, Error>
    where
        Req: prost::Message + Clone + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let calls = async {
            match self.call(path, request.clone()).await {
                Err(Error::Unreachable { .. }) => self.call(path, request).await,
                answer => answer,
            }
        };
        tokio::time::timeout(self.timeout, calls)
            .await
            .map_err(|_| Error::Unreachable {
                custodian: self.name(),
                why: format!("no answer in {:?}", self.timeout),
            })?
    }

    async fn call<Req, Resp>(&self, path: &'static str, request: Req) -> Result<Resp, Error>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| Error::Unreachable {
            custodian: self.name(),
            why: format!("not ready: {e}"),
        })?;
        let answer = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<Req, Resp>::default(),
            )
            .await
            .map_err(|status| self.failed(status))?;
        Ok(answer.into_inner())
    }

    /// A gRPC failure: the plugin's own refusal, or no plugin to talk to (no connection,
    /// or one that broke: tonic gives those the transport error as their source).
    fn failed(&self, status: tonic::Status) -> Error {
        let why = format!("{:?}: {}", status.code(), status.message());
        let transport = std::error::Error::source(&status).is_some();
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                Error::Unreachable {
                    custodian: self.name(),
                    why,
                }
            }
            _ if transport => Error::Unreachable {
                custodian: self.name(),
                why,
            },
            _ => Error::Refused {
                custodian: self.name(),
                why,
            },
        }
    }
}

/// KMS v2 asks for a unique id per request, for the plugin's logs.
fn request_uid() -> String {
    format!("kseal-{:032x}", rand::random::<u128>())
}
