//! images, inspect, tag, rmi.

use crate::cli::{ImagesArgs, InspectArgs, OutputFormat, RmiArgs, TagArgs};
use crate::render::{age, human_size, table};
use anyhow::{Context, Result};
use kiln_oci::Reference;
use kiln_store::Store;
use serde_json::{json, Value};
use std::process::ExitCode;

pub fn images(store: &Store, a: &ImagesArgs) -> Result<ExitCode> {
    let list = store.list_images()?;
    let short = |d: &kiln_oci::Digest| {
        if a.no_trunc {
            d.to_string()
        } else {
            d.hex()[..12].to_string()
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for img in &list {
            if seen.insert(img.id.clone()) {
                println!("{}", short(&img.id));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    match a.format {
        OutputFormat::Json => {
            let rows: Vec<Value> = list
                .iter()
                .map(|img| {
                    json!({
                        "reference": img.reference.as_ref().map(|r| r.to_string()),
                        "repository": img.reference.as_ref().map(|r| r.name()),
                        "tag": img.reference.as_ref().and_then(|r| r.tag().map(str::to_string)),
                        "name": img.name,
                        "id": img.id.to_string(),
                        "digest": img.digest.to_string(),
                        "manifest_digest": img.manifest_digest.to_string(),
                        "created": img.created,
                        "size": img.size,
                        "platform": img.platform,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        OutputFormat::Table => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|img| {
                    let (repo, tag) = match &img.reference {
                        Some(r) => {
                            let familiar =
                                r.with_tag("x").map(|r| r.familiar()).unwrap_or_default();
                            (
                                familiar.trim_end_matches(":x").to_string(),
                                r.tag().unwrap_or("<none>").to_string(),
                            )
                        }
                        None => (
                            img.name.clone().unwrap_or_else(|| "<none>".into()),
                            "<none>".into(),
                        ),
                    };
                    vec![
                        repo,
                        tag,
                        short(&img.id),
                        age(img.created.as_deref()),
                        human_size(img.size),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn inspect(store: &Store, a: &InspectArgs) -> Result<ExitCode> {
    let mut out = Vec::new();
    for input in &a.images {
        let img = store.resolve(input)?;
        let config_desc = img.manifest.config();
        let config_digest = kiln_oci::Digest::try_from(config_desc.digest())?;
        // The config is shown as stored, not re-serialised, so fields kiln does not model
        // are visible too.
        let config_bytes = store.read_blob_verified(&config_digest, Some(config_desc.size()))?;
        let config: Value = serde_json::from_slice(&config_bytes)
            .with_context(|| format!("config {config_digest} of {input}"))?;
        let manifest_digest = kiln_oci::Digest::try_from(img.manifest_descriptor.digest())?;
        let manifest_bytes =
            store.read_blob_verified(&manifest_digest, Some(img.manifest_descriptor.size()))?;
        let manifest: Value = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("manifest {manifest_digest} of {input}"))?;
        let tags: Vec<String> = store
            .index_entries()?
            .into_iter()
            .filter(|e| e.descriptor.digest() == img.target.digest())
            .filter_map(|e| e.reference.map(|r| r.to_string()))
            .collect();
        out.push(json!({
            "Id": img.id.to_string(),
            "RepoTags": tags,
            "Digest": img.target.digest().to_string(),
            "ManifestDigest": manifest_digest.to_string(),
            "Manifest": manifest,
            "Config": config,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

pub fn tag(store: &Store, a: &TagArgs) -> Result<ExitCode> {
    let img = store.resolve(&a.source)?;
    let target = Reference::parse(&a.target)?;
    store.tag(&target, &img.target)?;
    Ok(ExitCode::SUCCESS)
}

pub fn rmi(store: &Store, a: &RmiArgs) -> Result<ExitCode> {
    let mut failed = false;
    for input in &a.images {
        match store.remove(input) {
            Ok(removed) => {
                for e in removed {
                    let name = e
                        .reference
                        .map(|r| r.familiar())
                        .or(e.name)
                        .unwrap_or_else(|| e.descriptor.digest().to_string());
                    println!("Untagged: {name}");
                }
            }
            Err(e) => {
                eprintln!("kiln: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
