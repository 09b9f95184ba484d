//! `kseal merge FILE`: add, replace or remove items of a SealedSecret file in place.
//! Items not named keep their exact ciphertext, so Git diffs show only what changed.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use kseal_core::manifest::{Format, parse_documents, scrub, sealed_from_value, secret_from_value};
use kseal_core::resource::{SealedSecret, TemplateMetadata};
use kseal_core::scope::validate_item_key;
use kseal_core::sealing::{seal_items, template_annotations, template_labels};
use zeroize::Zeroizing;

use crate::cli::{MergeArgs, OutputFormat};
use crate::io::{read_file, read_input, render, replace_file, split_key_path};

pub fn run(args: &MergeArgs) -> Result<()> {
    let file = read_file(&args.file)?;
    let name = file.name.clone();
    let (format, docs) = parse_documents(&file.bytes).with_context(|| name.clone())?;
    if docs.len() != 1 {
        bail!(
            "{name}: holds {} documents; merge works on a file with exactly one SealedSecret",
            docs.len()
        );
    }
    let mut sealed = sealed_from_value(&docs[0]).with_context(|| name.clone())?;

    let items = collect_items(args, &mut sealed)?;
    for key in &args.remove {
        if items.contains_key(key) {
            bail!("item {key:?} is both added and removed");
        }
        if sealed.spec.encrypted_data.remove(key).is_none() {
            bail!("--remove {key}: {name} has no such item");
        }
    }
    if !items.is_empty() {
        // The flags, else the file's `.kseal.yaml` rule, else the cluster's key.
        let rule = crate::rules::Rules::default().for_file(&args.file)?;
        let resolved = crate::rules::Matched::resolve(rule.as_ref(), &args.recipients)?;
        let recipients = resolved.set;
        let given = recipients.fingerprints();
        if !sealed.spec.recipients.is_empty() && given != sealed.spec.recipients {
            let path = args.file.display();
            if let Some((newest, _)) = &resolved.cluster {
                bail!(
                    "{name}: its items are sealed to {} but the cluster's newest key is {newest} (keys rotate): run `kseal reseal {path}` to re-encrypt them to the newest, then merge again",
                    join(&sealed.spec.recipients),
                );
            }
            bail!(
                "{name}: its items are sealed to recipients {} but these are {}; pass the same recipients, or `kseal reseal {path}` to re-encrypt the file to the cluster's newest key",
                join(&sealed.spec.recipients),
                join(&given)
            );
        }
        sealed.spec.recipients = given;
        seal_items(
            &mut sealed,
            items.iter().map(|(k, v)| (k.as_str(), &v[..])),
            &recipients,
        )
        .with_context(|| name.clone())?;
    }
    let out = match format {
        Format::Yaml => OutputFormat::Yaml,
        Format::Json => OutputFormat::Json,
    };
    replace_file(&args.file, render(&[&sealed], out)?.as_bytes())
}

fn join(fps: &[kseal_core::recipients::Fingerprint]) -> String {
    fps.iter()
        .map(|f| f.0.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The items to seal: from the flags, or else from a Secret on stdin (whose labels and
/// annotations are merged into the template too).
fn collect_items(
    args: &MergeArgs,
    sealed: &mut SealedSecret,
) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>> {
    let mut items = BTreeMap::new();
    let mut add = |key: String, value: Zeroizing<Vec<u8>>| -> Result<()> {
        validate_item_key(&key)?;
        if value.len() > kseal_core::MAX_SECRET_BYTES {
            bail!(
                "item {key:?} is {} bytes; a Secret holds at most 1 MiB",
                value.len()
            );
        }
        if items.insert(key.clone(), value).is_some() {
            bail!("item {key:?} is given twice");
        }
        Ok(())
    };
    for literal in &args.from_literal {
        let (key, value) = literal
            .split_once('=')
            .ok_or_else(|| anyhow!("--from-literal: expected KEY=VALUE"))?;
        add(key.to_owned(), Zeroizing::new(value.as_bytes().to_vec()))?;
    }
    for spec in &args.from_file {
        let (key, path) = split_key_path(spec)?;
        add(key, read_file(path).context("--from-file")?.bytes)?;
    }
    if !(args.from_literal.is_empty() && args.from_file.is_empty() && args.remove.is_empty()) {
        return Ok(items);
    }
    let input = read_input(None, "reading a Secret to merge from stdin")?;
    let (_, mut docs) = parse_documents(&input.bytes).context("stdin")?;
    if docs.len() != 1 {
        docs.iter_mut().for_each(scrub);
        bail!(
            "stdin: holds {} documents; merge takes one Secret",
            docs.len()
        );
    }
    let secret = secret_from_value(&docs[0]);
    scrub(&mut docs[0]);
    let secret = secret.context("stdin")?;
    for (field, theirs, ours) in [
        ("name", &secret.name, &sealed.metadata.name),
        ("namespace", &secret.namespace, &sealed.metadata.namespace),
    ] {
        if let (Some(t), Some(o)) = (theirs, ours)
            && t != o
        {
            bail!("stdin: the Secret's {field} is {t:?} but the SealedSecret's is {o:?}");
        }
    }
    if !secret.labels.is_empty() || !secret.annotations.is_empty() {
        let template = sealed.spec.template.get_or_insert_with(Default::default);
        let meta = template
            .metadata
            .get_or_insert_with(TemplateMetadata::default);
        meta.labels.extend(template_labels(&secret.labels));
        meta.annotations
            .extend(template_annotations(&secret.annotations));
    }
    for (key, value) in secret.data {
        add(key, value)?;
    }
    if items.is_empty() {
        bail!(
            "nothing to merge: give --from-literal, --from-file, --remove, or a Secret with data on stdin"
        );
    }
    Ok(items)
}
