//! Watches: newline-delimited JSON events on a chunked 200 response, resuming from a
//! resourceVersion out of the history, synthetic ADDED events for `resourceVersion` unset
//! or `0`, streaming initial events, bookmarks, selector transitions, `timeoutSeconds`,
//! and 410 as an ERROR event when the history no longer reaches back far enough.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::http::{Query, Shared, Target, lock};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult};
use super::store::{Event, Signal, partial};

struct Filter {
    target: Target,
    labels: LabelSelector,
    fields: FieldSelector,
    meta: bool,
}

impl Filter {
    fn same_collection(&self, e: &Event) -> bool {
        e.group == self.target.t.group
            && e.plural == self.target.t.plural
            && (self.target.namespace.is_empty() || e.namespace == self.target.namespace)
    }

    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn render(&self, obj: &Value) -> Value {
        if self.meta { partial(obj) } else { obj.clone() }
    }

    /// The event this watcher sees, after selector transitions.
    fn translate(&self, e: &Event) -> Option<Value> {
        if !self.same_collection(e) {
            return None;
        }
        let now = self.matches(&e.object);
        let kind = match (e.kind, &e.old) {
            ("MODIFIED", Some(old)) => match (self.matches(old), now) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            },
            (k, _) if now => k,
            _ => return None,
        };
        Some(json!({"type": kind, "object": self.render(&e.object)}))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Value {
        let (kind, api_version) = if self.meta {
            (
                "PartialObjectMetadata".to_owned(),
                "meta.k8s.io/v1".to_owned(),
            )
        } else {
            (self.target.t.kind.clone(), self.target.t.api_version())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": metadata}})
    }
}

fn line(v: &Value) -> Result<Bytes, Infallible> {
    let mut s = v.to_string();
    s.push('\n');
    Ok(Bytes::from(s))
}

fn expired_event(message: String) -> Value {
    json!({"type": "ERROR", "object": ApiError::expired(message).to_status()})
}

pub fn start(
    shared: Arc<Shared>,
    target: Target,
    query: &Query,
    labels: LabelSelector,
    fields: FieldSelector,
    meta: bool,
) -> ApiResult<Response> {
    let filter = Filter {
        target,
        labels,
        fields,
        meta,
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let send_initial = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let rv_param = query
        .get("resourceVersion")
        .filter(|r| !r.is_empty())
        .cloned();
    if send_initial && query.get("resourceVersionMatch").map(String::as_str) != Some("NotOlderThan")
    {
        return Err(ApiError::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        ));
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(shared.default_watch_timeout);
    let drop_after = lock(&shared.faults).drop_watches_after.map(|d| {
        let ms = d.as_millis().max(2) as u64;
        Duration::from_millis(rand::rng().random_range(ms / 2..=ms + ms / 2))
    });

    // Catch-up and subscription happen under one lock, so no event falls in between.
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1024);
    let (catchup, mut live, mut last_rv) = {
        let store = lock(&shared.store);
        let live = store.tx.subscribe();
        let mut out = Vec::new();
        let synthetic = rv_param.is_none() || rv_param.as_deref() == Some("0");
        if synthetic {
            let mut current: Vec<&Value> = store
                .list(
                    &filter.target.t,
                    (!filter.target.namespace.is_empty())
                        .then_some(filter.target.namespace.as_str()),
                )
                .into_iter()
                .filter(|o| filter.matches(o))
                .collect();
            current.sort_by_key(|o| {
                o["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            out.extend(
                current
                    .into_iter()
                    .map(|o| json!({"type": "ADDED", "object": filter.render(o)})),
            );
            if send_initial {
                out.push(filter.bookmark(store.rv, true));
            }
            (out, live, store.rv)
        } else {
            let from: u64 = rv_param
                .as_deref()
                .and_then(|r| r.parse().ok())
                .ok_or_else(|| ApiError::bad_request("invalid resourceVersion"))?;
            if from + 1 < store.oldest_rv {
                let msg = format!("too old resource version: {from} ({})", store.oldest_rv - 1);
                let _ = tx.try_send(line(&expired_event(msg)));
                drop(tx);
                return Ok(stream_response(rx));
            }
            out.extend(
                store
                    .history
                    .iter()
                    .filter(|e| e.rv > from)
                    .filter_map(|e| filter.translate(e)),
            );
            let last = store
                .history
                .back()
                .map(|e| e.rv)
                .unwrap_or(store.rv)
                .max(from);
            (out, live, last)
        }
    };
    for event in &catchup {
        if tx.try_send(line(event)).is_err() {
            break;
        }
    }
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let shared = shared;
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let dropped = tokio::time::sleep(drop_after.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(dropped);
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    if bookmarks {
                        let _ = tx.send(line(&filter.bookmark(last_rv, false))).await;
                    }
                    return;
                }
                _ = &mut dropped => {
                    shared.injected.dropped_watches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return;
                }
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(line(&filter.bookmark(last_rv, false))).await.is_err() {
                        return;
                    }
                }
                signal = live.recv() => match signal {
                    Ok(Signal::Change(e)) => {
                        if e.rv <= last_rv {
                            continue;
                        }
                        last_rv = e.rv;
                        if let Some(v) = filter.translate(&e)
                            && tx.send(line(&v)).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(Signal::Expire) => {
                        let _ = tx.send(line(&expired_event(format!("too old resource version: {last_rv} ({last_rv})")))).await;
                        return;
                    }
                    Ok(Signal::Drop) | Err(broadcast::error::RecvError::Closed) => return,
                    // Fell behind the broadcast buffer: end the stream; the client resumes
                    // from the last RV it saw, which the history still covers.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                },
            }
        }
    });
    Ok(stream_response(rx))
}

fn stream_response(rx: mpsc::Receiver<Result<Bytes, Infallible>>) -> Response {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("transfer-encoding", "chunked")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}
