//! The etcd v3 calls kseal makes, and nothing else: `KV.Range` for `kseal at-rest
//! scan-etcd`, `KV.Put` and `KV.Txn` (puts only) for the tests that fill an etcd the way
//! kube-apiserver does. It talks to an etcd server over gRPC (HTTP/2, optionally TLS with
//! a client certificate, as kubeadm's etcd requires).
//!
//! The messages are etcd's own (`etcdserverpb`, `mvccpb`), written out with prost's derive
//! for the fields used here: no `protoc` at build time, and none of the other etcd
//! services compiled in. Unknown fields in etcd's answers are skipped by prost, so newer
//! etcd versions stay readable.

mod proto;

use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

pub use proto::{Event, KeyValue, RangeResponse};

/// The largest answer accepted: one page of Secrets can be hundreds of MiB.
const MAX_MESSAGE: usize = 512 * 1024 * 1024;

/// What went wrong talking to etcd. Messages name the endpoint and etcd's own status,
/// never a key's value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{endpoint:?} is not a valid endpoint")]
    BadEndpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot connect")]
    Connect(#[source] tonic::transport::Error),
    #[error("no endpoints given")]
    NoEndpoints,
    #[error("{0}")]
    Status(String),
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let message = s.message();
        Error::Status(if message.is_empty() {
            format!("{:?}", s.code())
        } else {
            format!("{:?}: {message}", s.code())
        })
    }
}

/// TLS for an etcd that requires it: the CA that signed its serving certificate and,
/// where it checks clients, a client certificate and key (PEM).
#[derive(Clone, Default)]
pub struct Tls {
    pub ca: Option<Vec<u8>>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    pub tls: Option<Tls>,
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection to one member of an etcd cluster.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
}

/// One `Range` call: keys in `[key, range_end)`, at most `limit` of them (0: no limit),
/// at `revision` (0: the newest).
#[derive(Clone, Debug, Default)]
pub struct Range {
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    pub limit: i64,
    pub revision: i64,
}

impl Client {
    /// Connects to the first of `endpoints` that answers (`http://host:port`,
    /// `https://host:port`; a bare `host:port` takes the scheme from `options.tls`).
    pub async fn connect(
        endpoints: &[impl AsRef<str>],
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let mut last = None;
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref();
            let uri = endpoint_uri(endpoint, options.tls.is_some());
            let bad = |source| Error::BadEndpoint {
                endpoint: endpoint.to_owned(),
                source,
            };
            let mut target = Endpoint::from_shared(uri)
                .map_err(bad)?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true);
            if let Some(tls) = &options.tls {
                let mut config = ClientTlsConfig::new();
                if let Some(ca) = &tls.ca {
                    config = config.ca_certificate(Certificate::from_pem(ca));
                }
                if let Some((cert, key)) = &tls.identity {
                    config = config.identity(Identity::from_pem(cert, key));
                }
                target = target.tls_config(config).map_err(bad)?;
            }
            match target.connect().await {
                Ok(channel) => {
                    let grpc = tonic::client::Grpc::new(channel)
                        .max_decoding_message_size(MAX_MESSAGE)
                        .max_encoding_message_size(MAX_MESSAGE);
                    return Ok(Client { grpc });
                }
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(source) => Err(Error::Connect(source)),
            None => Err(Error::NoEndpoints),
        }
    }

    async fn unary<Req, Resp>(&mut self, path: &'static str, request: Req) -> Result<Resp, Error>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| Error::Status(format!("not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
        let response = self
            .grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(response.into_inner())
    }

    /// `KV.Range`.
    pub async fn range(&mut self, range: Range) -> Result<RangeResponse, Error> {
        let request = proto::RangeRequest {
            key: range.key,
            range_end: range.range_end,
            limit: range.limit,
            revision: range.revision,
            ..Default::default()
        };
        self.unary("/etcdserverpb.KV/Range", request).await
    }

    /// `KV.Put`. Returns the revision it was written at.
    pub async fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<i64, Error> {
        let response: proto::PutResponse = self
            .unary(
                "/etcdserverpb.KV/Put",
                proto::PutRequest {
                    key,
                    value,
                    ..Default::default()
                },
            )
            .await?;
        Ok(response.header.map(|h| h.revision).unwrap_or_default())
    }

    /// `KV.Txn` with no comparisons whose success branch puts every pair: all are written
    /// at one revision, which is returned.
    pub async fn put_all(&mut self, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> Result<i64, Error> {
        let success = pairs
            .into_iter()
            .map(|(key, value)| proto::RequestOp {
                request: Some(proto::request_op::Request::RequestPut(proto::PutRequest {
                    key,
                    value,
                    ..Default::default()
                })),
            })
            .collect();
        let response: proto::TxnResponse = self
            .unary("/etcdserverpb.KV/Txn", proto::TxnRequest { success })
            .await?;
        Ok(response.header.map(|h| h.revision).unwrap_or_default())
    }
}

impl Client {
    /// The store's current revision (from the header of a one-key range).
    pub async fn revision(&mut self) -> Result<i64, Error> {
        let response = self
            .range(Range {
                key: b"/".to_vec(),
                limit: 1,
                ..Range::default()
            })
            .await?;
        Ok(response.header.map(|h| h.revision).unwrap_or_default())
    }

    /// `KV.Compact` at `revision`: older revisions are gone, and a watch that asks for
    /// them is refused (as the apiserver's are, with `410 Gone`).
    pub async fn compact(&mut self, revision: i64) -> Result<(), Error> {
        let _: proto::CompactionResponse = self
            .unary(
                "/etcdserverpb.KV/Compact",
                proto::CompactionRequest {
                    revision,
                    physical: true,
                },
            )
            .await?;
        Ok(())
    }

    /// `Watch.Watch` on the keys under `prefix` from `start_revision` (0: from now on).
    pub async fn watch_prefix(
        &mut self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<Watch, Error> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Error::Status(format!("not ready: {e}")))?;
        let create = proto::WatchRequest {
            create_request: Some(proto::WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                start_revision,
            }),
        };
        // The request side stays open: etcd ends a watch whose client has hung up.
        let requests =
            tokio_stream::StreamExt::chain(tokio_stream::once(create), tokio_stream::pending());
        let codec = tonic_prost::ProstCodec::<proto::WatchRequest, proto::WatchResponse>::default();
        let stream = self
            .grpc
            .streaming(
                tonic::Request::new(requests),
                PathAndQuery::from_static("/etcdserverpb.Watch/Watch"),
                codec,
            )
            .await?
            .into_inner();
        Ok(Watch { stream })
    }
}

/// An open etcd watch.
pub struct Watch {
    stream: tonic::Streaming<proto::WatchResponse>,
}

impl Watch {
    /// The next batch of events; `None` when the watch has ended.
    pub async fn next(&mut self) -> Result<Option<Vec<Event>>, Error> {
        loop {
            let Some(response) = self.stream.message().await? else {
                return Ok(None);
            };
            if response.canceled {
                return Err(Error::Status(format!(
                    "watch canceled (compacted at {}): {}",
                    response.compact_revision, response.cancel_reason
                )));
            }
            if !response.events.is_empty() {
                return Ok(Some(response.events));
            }
        }
    }
}

/// `endpoint` with its scheme: as given when it has one, else `https://` with TLS and
/// `http://` without.
pub fn endpoint_uri(endpoint: &str, tls: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

/// The end of the range holding every key that starts with `prefix`: the prefix with its
/// last byte that is not 0xff incremented (and what follows it dropped), as etcd's
/// `--prefix` computes it. An empty answer means "to the end of the keyspace" (`\0`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_are_etcds() {
        assert_eq!(prefix_end(b"/registry/secrets/"), b"/registry/secrets0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }
}
