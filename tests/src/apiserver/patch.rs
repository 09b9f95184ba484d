//! Patch bodies: JSON merge (RFC 7386), JSON patch (RFC 6902 with the apiserver's
//! evanphx semantics), and strategic merge (treated as a merge patch, for built-in kinds
//! only: custom resources answer 415 as the real server does).

use serde_json::Value;

use super::registry::ResourceType;
use super::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

pub fn unsupported_media_type() -> ApiError {
    ApiError::new(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
    )
}

/// Applies a non-apply patch to `target`.
pub fn apply_patch(
    t: &ResourceType,
    kind: PatchType,
    target: &mut Value,
    body: &[u8],
) -> ApiResult<()> {
    match kind {
        PatchType::Strategic if t.custom => Err(unsupported_media_type()),
        PatchType::Merge | PatchType::Strategic => {
            let patch: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::merge(target, &without_directives(patch));
            Ok(())
        }
        PatchType::Json => {
            let ops: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            let Value::Array(ops) = ops else {
                return Err(ApiError::bad_request(
                    "json patch must be an array of operations",
                ));
            };
            if ops.len() > 10_000 {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                ));
            }
            // evanphx/json-patch: `test` of null against a missing path passes.
            let ops: Vec<Value> = ops
                .into_iter()
                .filter(|op| {
                    !(op["op"] == "test"
                        && op["value"].is_null()
                        && op["path"]
                            .as_str()
                            .is_some_and(|p| target.pointer(p).is_none()))
                })
                .collect();
            let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(target, &patch.0).map_err(|_| {
                ApiError::new(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                )
            })
        }
        PatchType::Apply => Err(ApiError::bad_request("apply is not a plain patch")),
    }
}

/// Drops strategic-merge directives (`$setElementOrder/…`, `$retainKeys`, `$patch`) that a
/// plain merge would otherwise write into the object.
fn without_directives(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k, without_directives(v)))
                .collect(),
        ),
        other => other,
    }
}
