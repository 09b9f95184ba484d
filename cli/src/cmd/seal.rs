//! `kseal seal`: Secrets in, SealedSecrets out; `--raw` for a single value.

use std::io::IsTerminal;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::item;
use kseal_core::manifest::{SecretInput, parse_documents, scrub, secret_from_value};
use kseal_core::policy;
use kseal_core::recipients::RecipientSet;
use kseal_core::scope::{Binding, Scope};
use kseal_core::sealing::{scope_from_annotations, seal_secret};

use super::{doc_label, output_format};
use crate::cli::SealArgs;
use crate::io::{read_file, read_input, render, split_key_path, write_output};
use crate::rules::{Matched, Rules};

pub fn run(args: &SealArgs) -> Result<()> {
    if args.raw {
        return raw(args);
    }
    if args.key.is_some() || args.from_file.is_some() {
        bail!("--key and --from-file only apply with --raw");
    }
    let rule = rule_for(args)?;
    let input = read_input(args.file.as_deref(), "reading Secrets from stdin")?;
    let (_, mut docs) = parse_documents(&input.bytes).with_context(|| input.name.clone())?;
    let resolved = Matched::resolve(rule.as_ref(), &args.recipients)?;
    if let Some(rule) = &rule
        && args.recipients.is_empty()
        && !args.recipients.with_cluster
    {
        // What a rule chose is said, so that a rule someone changed (a recipient added, a
        // scope widened) shows the first time it is used.
        eprintln!("{}", rule_note(rule, &resolved));
    }
    let (recipients, context_namespace) = (resolved.set, resolved.cluster.map(|(_, ns)| ns));
    let total = docs.len();
    let mut sealed = Vec::with_capacity(total);
    for (i, doc) in docs.iter_mut().enumerate() {
        let result = seal_one(
            args,
            rule.as_ref(),
            doc,
            &recipients,
            context_namespace.as_deref(),
        );
        scrub(doc);
        sealed.push(result.with_context(|| doc_label(&input.name, i, total))?);
    }
    let format = output_format(args.output, args.write.as_deref());
    let text = render(&sealed, format)?;
    write_output(args.write.as_deref(), text.as_bytes())
}

/// One line: the rule that applied, the recipients it chose (by fingerprint; the cluster's
/// marked) and the scope and namespace it sets.
fn rule_note(rule: &Matched, resolved: &crate::recipient_flags::Resolved) -> String {
    let cluster = resolved.cluster.as_ref().map(|(fp, _)| fp);
    let recipients: Vec<String> = resolved
        .set
        .fingerprints()
        .iter()
        .map(|fp| match cluster {
            Some(c) if c == fp => format!("{fp} (the cluster's)"),
            _ => fp.to_string(),
        })
        .collect();
    let spec = &rule.rule().spec;
    let scope = rule.rule().scope.map_or_else(
        || "the Secret's own (strict unless annotated)".to_owned(),
        |s| s.to_string(),
    );
    let namespace = spec
        .namespace
        .as_deref()
        .map(|n| format!(", namespace {n}"))
        .unwrap_or_default();
    format!(
        "note: {rule} applies: sealed to {} ({}), scope {scope}{namespace}",
        super::plural(recipients.len(), "recipient"),
        recipients.join(", ")
    )
}

/// The `.kseal.yaml` rule for the file written (`-w`), else the file read (`-f`).
fn rule_for(args: &SealArgs) -> Result<Option<Matched>> {
    match args.write.as_deref().or(args.file.as_deref()) {
        Some(path) => Rules::default().for_file(path),
        None => Ok(None),
    }
}

fn seal_one(
    args: &SealArgs,
    rule: Option<&Matched>,
    doc: &serde_json::Value,
    recipients: &RecipientSet,
    context_namespace: Option<&str>,
) -> Result<kseal_core::resource::SealedSecret> {
    let mut secret = secret_from_value(doc)?;
    let rule = rule.map(Matched::rule);
    let scope = scope_for(args.scope, rule.and_then(|r| r.scope), &secret)?;
    resolve_location(&mut secret, args)?;
    // The rule's namespace (where its objects go, in any scope), then (sealing against a
    // cluster, like kubectl) the context's.
    if secret.namespace.is_none() {
        secret.namespace = rule.and_then(|r| r.spec.namespace.clone());
    }
    if secret.namespace.is_none() && scope.binds_namespace() {
        secret.namespace = context_namespace.map(str::to_owned);
    }
    if scope.binds_namespace() && secret.namespace.is_none() {
        bail!("namespace is required for {scope} scope: set metadata.namespace or pass -n");
    }
    if secret.data.is_empty() && !args.allow_empty_data {
        bail!("no data or stringData to seal (pass --allow-empty-data to seal an empty Secret)");
    }
    if secret.namespace.as_deref() == Some(policy::DEFAULT_CONTROLLER_NAMESPACE) {
        bail!(
            "namespace {:?} is kseal-controller's own: it never unseals into it",
            policy::DEFAULT_CONTROLLER_NAMESPACE
        );
    }
    if secret.namespace.as_deref() == Some(policy::KUBE_SYSTEM) && !args.allow_kube_system {
        bail!(
            "namespace \"kube-system\": the controller refuses it unless it runs with --allow-kube-system (pass --allow-kube-system if yours does)"
        );
    }
    let sealed = seal_secret(&secret, scope, recipients)?;
    policy::check_template(sealed.spec.template.as_ref(), &[])
        .map_err(|e| anyhow!("{e}: the controller would refuse it"))?;
    Ok(sealed)
}

/// `--scope`, else the Secret's own annotation (`kseal.dev/scope`, or kubeseal's), else
/// the rule's, else strict.
fn scope_for(flag: Option<Scope>, rule: Option<Scope>, secret: &SecretInput) -> Result<Scope> {
    if let Some(scope) = flag {
        return Ok(scope);
    }
    let annotated = scope_from_annotations(&secret.annotations).map_err(|e| anyhow!(e))?;
    Ok(annotated.or(rule).unwrap_or(Scope::Strict))
}

/// Fills in namespace and name from the flags, refusing contradictions.
fn resolve_location(secret: &mut SecretInput, args: &SealArgs) -> Result<()> {
    for (field, flag, value) in [
        ("namespace", "-n", args.namespace.as_ref()),
        ("name", "--name", args.name.as_ref()),
    ] {
        let slot = if field == "namespace" {
            &mut secret.namespace
        } else {
            &mut secret.name
        };
        match (slot.as_ref(), value) {
            (Some(have), Some(want)) if have != want => {
                bail!("{field} mismatch: the Secret says {have:?} but {flag} says {want:?}")
            }
            (None, Some(want)) => *slot = Some(want.clone()),
            _ => {}
        }
    }
    Ok(())
}

/// `--raw`: one value from stdin or `--from-file`, printed as the sealed value alone.
fn raw(args: &SealArgs) -> Result<()> {
    if args.file.is_some() || args.write.is_some() || args.output.is_some() {
        bail!("--raw prints one sealed value: it takes no -f, -w or -o");
    }
    let (key, value) = match &args.from_file {
        Some(spec) => {
            let (default_key, path) = split_key_path(spec)?;
            let key = args.key.clone().unwrap_or(default_key);
            (key, read_file(path).context("--from-file")?)
        }
        None => {
            let key = args.key.clone().ok_or_else(|| {
                anyhow!("--raw needs the item key: pass --key KEY or --from-file KEY=PATH")
            })?;
            (
                key,
                read_input(None, "reading the value to seal from stdin")?,
            )
        }
    };
    if value.bytes.len() > kseal_core::MAX_SECRET_BYTES {
        bail!(
            "{}: {} bytes; a Secret holds at most 1 MiB",
            value.name,
            value.bytes.len()
        );
    }
    let scope = args.scope.unwrap_or_default();
    let binding = Binding::new(scope, args.namespace.as_deref(), args.name.as_deref(), &key)
        .map_err(|e| match e {
            kseal_core::scope::NameError::Missing {
                what: "namespace",
                scope,
            } => {
                anyhow!("namespace is required for {scope} scope: pass -n")
            }
            kseal_core::scope::NameError::Missing {
                what: "name",
                scope,
            } => {
                anyhow!("name is required for {scope} scope: pass --name")
            }
            other => anyhow!(other),
        })?;
    let recipients = args.recipients.resolve()?.set;
    let sealed = item::seal(&recipients, &binding, &value.bytes)?;
    // kubeseal's --raw binds no item key; kseal's does, and a value pasted under another
    // key will not open. Said once, since --from-file picks the key from the file's name.
    eprintln!(
        "note: sealed for item key {:?} ({scope} scope{}): it opens only under that key",
        binding.item,
        match (&binding.namespace, &binding.name) {
            (Some(ns), Some(name)) => format!(", {ns}/{name}"),
            (Some(ns), None) => format!(", namespace {ns}"),
            _ => String::new(),
        }
    );
    // The hint a hand-written SealedSecret around the value carries (kseal seal writes
    // it itself): which keys to try first, and what `kseal audit` reads.
    eprintln!(
        "note: a SealedSecret holding it names its recipients as spec.recipients: [{}]",
        recipients
            .fingerprints()
            .iter()
            .map(|f| f.0.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let newline = if std::io::stdout().is_terminal() {
        "\n"
    } else {
        ""
    };
    write_output(None, format!("{sealed}{newline}").as_bytes())
}
