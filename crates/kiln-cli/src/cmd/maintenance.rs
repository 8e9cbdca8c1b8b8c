//! prune and fsck.

use crate::cli::{FsckArgs, OutputFormat, PruneArgs};
use crate::render::human_size;
use anyhow::Result;
use kiln_store::Store;
use serde_json::json;
use std::collections::HashSet;
use std::process::ExitCode;

/// Everything no image needs: blobs (build-cache layers included: a cache record whose
/// blobs are gone is a miss, never a broken image), then unpacked snapshots that back no
/// image layer, then cache records that point at removed blobs.
pub fn prune(store: &Store, a: &PruneArgs) -> Result<ExitCode> {
    let r = store.prune()?;
    let snapshots = kiln_snapshot::Snapshots::open(store)?;
    let keep = image_snapshots(store)?;
    let s = snapshots.prune(&keep)?;
    let cache = kiln_ops::cache::CacheDir::open(store.root())?;
    let mut records_removed = 0u64;
    for record in cache.records() {
        if record.layers.iter().any(|l| !store.has_blob(&l.digest)) {
            cache.remove(&record.key);
            records_removed += 1;
        }
    }
    match a.format {
        OutputFormat::Json => println!(
            "{}",
            json!({
                "blobs_removed": r.blobs_removed,
                "bytes_freed": r.bytes_freed,
                "temp_files_removed": r.temp_files_removed,
                "stale_leases_removed": r.stale_leases_removed,
                "snapshots_removed": s.snapshots_removed,
                "snapshot_bytes_freed": s.bytes_freed,
                "cache_records_removed": records_removed,
            })
        ),
        OutputFormat::Table => {
            println!(
                "Removed {} blob{}, {} temp file{}",
                r.blobs_removed,
                if r.blobs_removed == 1 { "" } else { "s" },
                r.temp_files_removed,
                if r.temp_files_removed == 1 { "" } else { "s" },
            );
            println!(
                "Removed {} unpacked snapshot{} ({}), {} build cache record{}",
                s.snapshots_removed,
                if s.snapshots_removed == 1 { "" } else { "s" },
                human_size(s.bytes_freed),
                records_removed,
                if records_removed == 1 { "" } else { "s" },
            );
            println!(
                "Total reclaimed space: {} ({} bytes)",
                human_size(r.bytes_freed),
                r.bytes_freed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Snapshots backing the layers of every image in the store (chain ids of their diff_ids).
fn image_snapshots(store: &Store) -> Result<HashSet<kiln_snapshot::SnapshotId>> {
    let mut keep = HashSet::new();
    for entry in store.index_entries()? {
        let Ok(img) = store.resolve(entry.descriptor.digest().as_ref()) else {
            continue;
        };
        let Ok(config) = store.image_config(img.manifest.config()) else {
            continue;
        };
        for c in kiln_snapshot::chain_ids(&config.rootfs.diff_ids) {
            keep.insert(kiln_snapshot::SnapshotId::from_chain_id(c));
        }
    }
    Ok(keep)
}

/// Exit 0 when clean, 1 when a problem was found (even if it was repaired, so that scripts
/// notice that something had gone wrong).
pub fn fsck(store: &Store, a: &FsckArgs) -> Result<ExitCode> {
    let r = store.fsck(a.remove_corrupt)?;
    match a.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "clean": r.is_clean(),
                "blobs_checked": r.blobs_checked,
                "bytes_checked": r.bytes_checked,
                "corrupt": r.corrupt.iter().map(|c| json!({
                    "digest": c.digest.to_string(),
                    "path": c.path,
                    "actual": c.actual.to_string(),
                    "removed": c.removed,
                })).collect::<Vec<_>>(),
                "missing": r.missing.iter().map(|m| json!({
                    "digest": m.digest.to_string(),
                    "referenced_by": m.referenced_by,
                })).collect::<Vec<_>>(),
                "unreadable": r.unreadable,
                "invalid_blob_names": r.invalid_blob_names,
                "stray_temp_files": r.stray_temp_files,
                "index_error": r.index_error,
            }))?
        ),
        OutputFormat::Table => {
            for c in &r.corrupt {
                println!(
                    "corrupt: {} ({}) hashes to {}{}",
                    c.digest,
                    c.path.display(),
                    c.actual,
                    if c.removed { " — removed" } else { "" }
                );
            }
            for m in &r.missing {
                println!("missing: {} (referenced by {})", m.digest, m.referenced_by);
            }
            for u in &r.unreadable {
                println!("unreadable: {u}");
            }
            if let Some(e) = &r.index_error {
                println!("index.json: {e}");
            }
            for p in &r.invalid_blob_names {
                println!("stray file under blobs/: {}", p.display());
            }
            for p in &r.stray_temp_files {
                println!("stray temp file (kiln prune removes it): {}", p.display());
            }
            println!(
                "checked {} blobs, {}: {}",
                r.blobs_checked,
                human_size(r.bytes_checked),
                if r.is_clean() {
                    "clean"
                } else {
                    "PROBLEMS FOUND"
                }
            );
            if !r.corrupt.is_empty() && !a.remove_corrupt {
                println!("run `kiln fsck --remove-corrupt` to delete corrupt blobs");
            }
        }
    }
    Ok(if r.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
