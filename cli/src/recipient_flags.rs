//! Turning `--recipient`, `--recipients-file` and `--cert` into the set of public keys
//! to seal to.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use kseal_core::recipients::{
    Fingerprint, Recipient, RecipientSet, parse_cert, parse_recipients_file,
};

use crate::cli::RecipientArgs;
use crate::io::read_file;

/// Largest recipients document accepted from a URL.
const MAX_CERT_BYTES: u64 = 1024 * 1024;

/// The recipients to seal to, and what the cluster added to them.
pub struct Resolved {
    pub set: RecipientSet,
    /// The cluster's newest key, and the kubeconfig context's namespace, when the
    /// cluster's key is among them.
    pub cluster: Option<(Fingerprint, String)>,
}

impl RecipientArgs {
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty() && self.recipients_files.is_empty() && self.certs.is_empty()
    }

    /// Every recipient named by the flags, deduplicated, plus the cluster's newest key
    /// (through the kubeconfig) when no flag names one or `--cluster` asks for it too.
    /// Errors name the flag and source.
    pub fn resolve(&self) -> Result<Resolved> {
        let mut all = self.named()?;
        let mut cluster = None;
        if self.is_empty() || self.with_cluster {
            let connected = self.connect()?;
            let recipient = connected.sealing_recipient()?;
            cluster = Some((recipient.fingerprint(), connected.default_namespace.clone()));
            all.push(recipient);
        }
        let set = if self.allow_classic_with_pq {
            RecipientSet::new_allowing_mixed(all)?
        } else {
            RecipientSet::new(all)?
        };
        Ok(Resolved { set, cluster })
    }

    /// The cluster named by the kubeconfig flags; an error when there is no kubeconfig.
    pub fn connect(&self) -> Result<crate::cluster::Cluster> {
        crate::cluster::Cluster::connect(&self.cluster)?.ok_or_else(|| {
            if let (true, Some(context)) = (self.with_cluster, &self.cluster.context) {
                anyhow::anyhow!(
                    "context {context}: no kubeconfig to find it in (--kubeconfig, $KUBECONFIG, ~/.kube/config)"
                )
            } else if self.is_empty() {
                anyhow::anyhow!(
                    "no recipients: pass --recipient age1…, --recipients-file FILE or --cert FILE|URL, or a kubeconfig (--kubeconfig, $KUBECONFIG) to use the cluster's key"
                )
            } else {
                anyhow::anyhow!(
                    "--cluster: no kubeconfig to find the cluster with (--kubeconfig, $KUBECONFIG, ~/.kube/config)"
                )
            }
        })
    }

    /// The recipients the flags name (none without flags).
    pub fn named(&self) -> Result<Vec<Recipient>> {
        let mut all: Vec<Recipient> = Vec::new();
        for r in &self.recipients {
            if std::path::Path::new(r).is_file() && !r.starts_with("age1") {
                anyhow::bail!("--recipient {r}: a file, not a recipient: did you mean -R {r}?");
            }
            all.push(
                r.trim()
                    .parse()
                    .with_context(|| "--recipient".to_string())?,
            );
        }
        for path in &self.recipients_files {
            let input = read_file(path).context("--recipients-file")?;
            let text = std::str::from_utf8(&input.bytes)
                .map_err(|_| anyhow::anyhow!("--recipients-file {}: not UTF-8 text", input.name))?;
            all.extend(
                parse_recipients_file(text)
                    .with_context(|| format!("--recipients-file {}", input.name))?,
            );
        }
        for cert in &self.certs {
            let text = fetch_cert(cert)?;
            all.extend(parse_cert(&text).with_context(|| format!("--cert {cert}"))?);
        }
        Ok(all)
    }
}

/// Redirects `--cert` follows, all within the URL's own scheme, host and port.
const MAX_REDIRECTS: usize = 5;

/// Whether a URL's host is this machine.
fn is_loopback(location: &str) -> bool {
    match url::Url::parse(location)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
    {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Reads a recipients document from a file, or from an `https://` URL. Plain `http://` is
/// refused except to this machine (`kubectl port-forward`): anyone on the path could hand
/// over their own key, and the document's fingerprints are computed from the recipients
/// it carries, so they cannot tell. A redirect is followed only within the same scheme,
/// host and port: one to plain HTTP, or to another host, would undo that check.
pub fn fetch_cert(location: &str) -> Result<String> {
    if location.starts_with("http://") && !is_loopback(location) {
        bail!(
            "--cert {location}: plain HTTP is refused (anyone on the path could substitute their own key); use https://, a file, http://localhost through kubectl port-forward, or the cluster through your kubeconfig"
        );
    }
    if location.starts_with("http://") || location.starts_with("https://") {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .max_redirects(0)
            .build()
            .new_agent();
        let origin = url::Url::parse(location)
            .map_err(|_| anyhow::anyhow!("--cert {location}: not a valid URL"))?;
        let mut at = origin.clone();
        let mut response = None;
        for _ in 0..=MAX_REDIRECTS {
            let got = agent
                .get(at.as_str())
                .call()
                .map_err(|e| anyhow::anyhow!("--cert {location}: cannot fetch: {e}"))?;
            if !got.status().is_redirection() {
                response = Some(got);
                break;
            }
            let next = got
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| at.join(l).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!("--cert {location}: a redirect without a valid Location")
                })?;
            if next.scheme() != origin.scheme()
                || next.host_str() != origin.host_str()
                || next.port_or_known_default() != origin.port_or_known_default()
            {
                bail!(
                    "--cert {location}: redirected to {}://{}, another scheme, host or port: not followed",
                    next.scheme(),
                    next.host_str().unwrap_or_default()
                );
            }
            at = next;
        }
        let Some(mut response) = response else {
            bail!("--cert {location}: more than {MAX_REDIRECTS} redirects");
        };
        return response
            .body_mut()
            .with_config()
            .limit(MAX_CERT_BYTES)
            .read_to_string()
            .map_err(|e| anyhow::anyhow!("--cert {location}: cannot read the response: {e}"));
    }
    let path = location.strip_prefix("file://").unwrap_or(location);
    let input = read_file(path.as_ref()).context("--cert")?;
    String::from_utf8(input.bytes.to_vec())
        .map_err(|_| anyhow::anyhow!("--cert {location}: not UTF-8 text"))
}
