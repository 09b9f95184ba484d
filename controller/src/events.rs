//! The controller's Events (`events.k8s.io/v1`): one builder for every Event it
//! publishes, about a SealedSecret or about the recipients ConfigMap (the at-rest check).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kseal_core::contract::REPORTING_CONTROLLER;
use kube::Client;
use kube::api::{Api, PostParams};

/// What happened, in an Event's words.
pub struct Happened<'a> {
    /// What the controller did (`Unseal`, `CheckEncryptionAtRest`).
    pub action: &'a str,
    /// Why, in one CamelCase word.
    pub reason: &'a str,
    /// A `Warning` rather than a `Normal` Event.
    pub warning: bool,
    /// For a person; never holds a value or a key.
    pub note: String,
}

/// An Event about `regarding`, reported by this replica (`identity`), named as client-go
/// names Events: the object's name and the time in hex nanoseconds. (`generateName:
/// "<name>."` is invalid: a generated name must end with an alphanumeric character, and
/// kube-apiserver refuses the prefix.)
pub fn event(regarding: ObjectReference, identity: &str, happened: Happened<'_>) -> Event {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut event = Event {
        action: Some(happened.action.into()),
        reason: Some(happened.reason.into()),
        note: Some(happened.note),
        type_: Some(
            if happened.warning {
                "Warning"
            } else {
                "Normal"
            }
            .into(),
        ),
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        reporting_controller: Some(REPORTING_CONTROLLER.into()),
        reporting_instance: Some(identity.into()),
        ..Event::default()
    };
    let name = regarding.name.as_deref().unwrap_or_default();
    event.metadata.name = Some(format!("{name}.{nanos:x}"));
    event.metadata.namespace = regarding.namespace.clone();
    event.regarding = Some(regarding);
    event
}

/// Creates the Event in its namespace. A failure is logged, never returned: an Event
/// is a report, and nothing waits on it.
pub async fn publish(client: Client, event: Event) {
    let namespace = event.metadata.namespace.clone().unwrap_or_default();
    if let Err(e) = Api::<Event>::namespaced(client, &namespace)
        .create(&PostParams::default(), &event)
        .await
    {
        tracing::warn!(error = %e, "could not publish an event");
    }
}
