//! The names the `kseal` CLI and `kseal-controller` agree on in the cluster: the
//! recipients ConfigMap, the leader Lease, the field managers, and the labels and
//! annotations each writes for the other (or for the user) to read. One place, so that
//! the two binaries cannot drift apart.

/// The ConfigMap, in the controller's namespace, where the controller publishes its
/// public recipients and the CLI fetches them.
pub const RECIPIENTS_CONFIGMAP: &str = "kseal-recipients";
/// The key of [`RECIPIENTS_CONFIGMAP`] holding the recipients document.
pub const RECIPIENTS_KEY: &str = "recipients.json";
/// The Lease the controller's replicas elect their leader with; `kseal status` reads its
/// holder.
pub const LEADER_LEASE: &str = "kseal-controller-leader";

/// The field manager of everything the controller applies: the Secrets it unseals, the
/// key Secrets, the recipients ConfigMap and the leader Lease. A Secret whose fields this
/// manager applied is one kseal wrote.
pub const MANAGER: &str = "kseal-controller";
/// The field manager of the at-rest verdict's annotations on [`RECIPIENTS_CONFIGMAP`].
pub const AT_REST_MANAGER: &str = "kseal-controller-at-rest";
/// The `reportingController` of the controller's Events.
pub const REPORTING_CONTROLLER: &str = "kseal.dev/controller";

/// Label on every Secret the controller writes (and on the recipients ConfigMap); its
/// Secret watch is filtered by it, so memory grows with SealedSecrets, not with all the
/// Secrets of the cluster.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kseal");

/// On an existing Secret: the controller may take it over.
pub const MANAGED_ANNOTATION: &str = "kseal.dev/managed";
/// On an existing Secret: merge items into it without taking it over.
pub const PATCH_ANNOTATION: &str = "kseal.dev/patch";
/// Bitnami's take-over annotation, which keeps its meaning for both kinds of
/// SealedSecret: a Secret a Bitnami SealedSecret handed over (its template annotated, so
/// that the Bitnami controller leaves the Secret without an owner) is taken over by the
/// kseal SealedSecret that replaces it.
pub const BITNAMI_MANAGED_ANNOTATION: &str = "sealedsecrets.bitnami.com/managed";
/// Bitnami's merge annotation, read as [`PATCH_ANNOTATION`].
pub const BITNAMI_PATCH_ANNOTATION: &str = "sealedsecrets.bitnami.com/patch";
/// Existing Secrets annotated with one of these are taken over.
pub const TAKE_OVER: &[&str] = &[MANAGED_ANNOTATION, BITNAMI_MANAGED_ANNOTATION];
/// Existing Secrets annotated with one of these are merged into.
pub const MERGE_INTO: &[&str] = &[PATCH_ANNOTATION, BITNAMI_PATCH_ANNOTATION];
/// The annotations a live Secret carries for the controller that writes it: consent to
/// take it over or merge into it. They say nothing about the Secret a template describes.
pub const CONSENT_ANNOTATIONS: [&str; 4] = [
    MANAGED_ANNOTATION,
    PATCH_ANNOTATION,
    BITNAMI_MANAGED_ANNOTATION,
    BITNAMI_PATCH_ANNOTATION,
];

/// The Secret type of the controller's key Secrets.
pub const KEY_TYPE: &str = "kseal.dev/age-key";
/// The label of a key Secret, `active` while the controller may use it.
pub const KEY_LABEL: &str = "kseal.dev/key";
/// The value of [`KEY_LABEL`] on a key in use.
pub const ACTIVE: &str = "active";
/// When a key was made (RFC 3339); a restored backup keeps its original one.
pub const CREATED_ANNOTATION: &str = "kseal.dev/created";
/// A key Secret's recipient fingerprint.
pub const FINGERPRINT_ANNOTATION: &str = "kseal.dev/fingerprint";
/// A key Secret's public recipient (`age1…`): written on keys under custody, whose
/// identity cannot be read to derive it.
pub const RECIPIENT_ANNOTATION: &str = "kseal.dev/recipient";
/// The key of a key Secret under custody holding its wrapped identity (JSON, the
/// custodian's envelope). A key Secret holds this or the plaintext identity, never both.
pub const WRAPPED_IDENTITY_KEY: &str = "identity.wrapped";

/// On [`RECIPIENTS_CONFIGMAP`]: how the keys are held (`kms-v2 plugin at …: 3 wrapped, 1
/// plaintext (kseal-key-…)`), for `kseal status`.
pub const CUSTODY_ANNOTATION: &str = "kseal.dev/custody";
/// The field manager of [`CUSTODY_ANNOTATION`].
pub const CUSTODY_MANAGER: &str = "kseal-controller-custody";

/// On [`RECIPIENTS_CONFIGMAP`]: the latest encryption-at-rest verdict.
pub const AT_REST_VERDICT_ANNOTATION: &str = "kseal.dev/encryption-at-rest";
/// On [`RECIPIENTS_CONFIGMAP`]: the verdict's detail.
pub const AT_REST_DETAIL_ANNOTATION: &str = "kseal.dev/encryption-at-rest-detail";
/// On [`RECIPIENTS_CONFIGMAP`]: when the verdict was reached.
pub const AT_REST_CHECKED_ANNOTATION: &str = "kseal.dev/encryption-at-rest-checked-at";
