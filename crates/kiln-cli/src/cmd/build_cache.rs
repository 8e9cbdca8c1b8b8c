//! `kiln build --cache-from / --cache-to`: specs → transports → kiln-cache / kiln-ops.
//! The only place that knows which transports exist: a local OCI layout directory
//! (`kiln_cache::LocalDir`) or a registry (`kiln_registry::RegistryCache`, whose client is
//! made exactly as for `kiln pull`/`kiln push`: same credentials, TLS roots and
//! plain-HTTP policy).

use super::registry::Registries;
use crate::progress::ProgressMode;
use crate::render::human_size;
use anyhow::{bail, Context as _, Result};
use kiln_cache::{
    CacheSink, CacheSource, ExportSpec, ImportSpec, ImportedCache, LocalDir, Transport,
};
use kiln_oci::Reference;
use kiln_ops::{CacheImport, Executor, KEY_SCHEME};
use kiln_registry::RegistryCache;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Both flags parsed before anything is built, so a typo fails at once.
pub struct CacheArgs {
    pub imports: Vec<ImportSpec>,
    pub exports: Vec<ExportSpec>,
}

pub fn parse(cache_from: &[String], cache_to: &[String]) -> Result<CacheArgs> {
    let imports = cache_from
        .iter()
        .map(|s| kiln_cache::parse_import(s))
        .collect::<Result<Vec<_>, _>>()?;
    let exports = cache_to
        .iter()
        .map(|s| kiln_cache::parse_export(s))
        .collect::<Result<Vec<_>, _>>()?;
    for i in &imports {
        if let Transport::Registry(r) = &i.transport {
            registry_ref("--cache-from", r)?;
        }
    }
    for e in &exports {
        if let Transport::Registry(r) = &e.transport {
            if registry_ref("--cache-to", r)?.digest().is_some() {
                bail!("--cache-to type=registry,ref={r}: a cache is exported under a tag (ref=REPO:TAG), not a digest");
            }
        }
    }
    Ok(CacheArgs { imports, exports })
}

fn registry_ref(flag: &str, r: &str) -> Result<Reference> {
    Reference::parse(r).with_context(|| format!("{flag} type=registry,ref={r}"))
}

fn registry_cache(regs: &Registries, r: &str) -> Result<RegistryCache> {
    let reference = registry_ref("cache", r)?;
    Ok(RegistryCache::new(
        regs.client(reference.registry())?,
        &reference,
    ))
}

fn source(t: &Transport, regs: &Registries) -> Result<Box<dyn CacheSource>> {
    match t {
        Transport::Local(dir) => Ok(Box::new(LocalDir::new(dir))),
        Transport::Registry(r) => Ok(Box::new(registry_cache(regs, r)?)),
    }
}

fn sink(t: &Transport, regs: &Registries) -> Result<Box<dyn CacheSink>> {
    match t {
        Transport::Local(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--cache-to: create {}", dir.display()))?;
            Ok(Box::new(LocalDir::new(dir)))
        }
        Transport::Registry(r) => Ok(Box::new(registry_cache(regs, r)?)),
    }
}

/// Loads every `--cache-from`. A cache that is absent or unreadable as a whole is a
/// warning and is not used (every step then misses on it, as on a first build); what is
/// wrong inside a record or blob is found when it is used.
pub fn load_imports(
    specs: &[ImportSpec],
    regs: &Registries,
    quiet: bool,
) -> Result<Vec<CacheImport>> {
    let mut out = Vec::new();
    for spec in specs {
        let src = source(&spec.transport, regs)?;
        let name = src.name().to_string();
        match ImportedCache::load(src, KEY_SCHEME, spec.limits.clone()) {
            Ok(Some(cache)) => {
                if cache.dropped() > 0 && !quiet {
                    eprintln!(
                        "warning: {name}: {} record(s) ignored (another kiln version, or entries that do not add up)",
                        cache.dropped()
                    );
                }
                out.push(CacheImport {
                    cache: Arc::new(cache),
                    mounts: spec.mounts,
                });
            }
            Ok(None) => {
                if !quiet {
                    eprintln!("warning: {name}: no cache there yet");
                }
            }
            Err(e) => {
                if !quiet {
                    eprintln!("warning: not using {name}: {e}");
                }
            }
        }
    }
    Ok(out)
}

/// Says which blobs the build copied out of imported caches.
pub fn report_fetches(executor: &Executor<'_>, mode: ProgressMode, quiet: bool) {
    if quiet {
        return;
    }
    let mut per_cache: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for f in executor.fetched_blobs() {
        let e = per_cache.entry(f.cache).or_default();
        e.0 += 1;
        e.1 += f.size;
    }
    for (cache, (n, bytes)) in per_cache {
        if mode == ProgressMode::Json {
            eprintln!(
                "{}",
                serde_json::json!({"kind": "cache_import", "cache": cache, "blobs_fetched": n, "bytes": bytes})
            );
        } else {
            eprintln!(
                "fetched {n} layer{} ({}) from {cache}",
                if n == 1 { "" } else { "s" },
                human_size(bytes)
            );
        }
    }
}

/// Writes every `--cache-to`.
pub fn export(
    executor: &Executor<'_>,
    target: kiln_graph::VertexId,
    specs: &[ExportSpec],
    regs: &Registries,
    mode: ProgressMode,
    quiet: bool,
) -> Result<()> {
    for spec in specs {
        let sink = sink(&spec.transport, regs)?;
        let dest_has = |d: &kiln_oci::spec::Descriptor| {
            kiln_oci::Digest::try_from(d.digest())
                .ok()
                .is_some_and(|dg| sink.has_blob(&dg, d.size()).unwrap_or(false))
        };
        let records = executor.cache_records(target, spec.mode, &dest_has)?;
        let mounts = if spec.mounts {
            executor.cache_mounts()
        } else {
            Vec::new()
        };
        let r = kiln_cache::export(
            executor.store(),
            executor.lease(),
            sink.as_ref(),
            KEY_SCHEME,
            spec.mode.as_str(),
            &records,
            &mounts,
        )
        .with_context(|| format!("--cache-to {}", sink.name()))?;
        if let Some(e) = &r.collect_error {
            if !quiet {
                eprintln!("warning: {}: old blobs not removed: {e}", sink.name());
            }
        }
        if quiet {
            continue;
        }
        if mode == ProgressMode::Json {
            eprintln!(
                "{}",
                serde_json::json!({
                    "kind": "cache_export", "cache": sink.name(), "mode": spec.mode.as_str(),
                    "records": r.records, "mounts": r.mounts, "blobs_sent": r.blobs_sent,
                    "blobs_present": r.blobs_present, "bytes_sent": r.bytes_sent,
                    "blobs_removed": r.blobs_removed, "bytes_removed": r.bytes_removed,
                    "manifest": r.manifest,
                })
            );
        } else {
            eprintln!(
                "exported {} record{} and {} cache mount{} to {} ({} blobs sent, {})",
                r.records,
                if r.records == 1 { "" } else { "s" },
                r.mounts,
                if r.mounts == 1 { "" } else { "s" },
                sink.name(),
                r.blobs_sent,
                human_size(r.bytes_sent)
            );
            if r.blobs_removed > 0 {
                eprintln!(
                    "removed {} blob{} ({}) no longer referenced from {}",
                    r.blobs_removed,
                    if r.blobs_removed == 1 { "" } else { "s" },
                    human_size(r.bytes_removed),
                    sink.name()
                );
            }
        }
    }
    Ok(())
}
