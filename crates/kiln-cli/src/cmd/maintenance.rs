//! prune and fsck.

use crate::cli::{FsckArgs, OutputFormat, PruneArgs};
use crate::render::human_size;
use anyhow::Result;
use kiln_store::Store;
use serde_json::json;
use std::process::ExitCode;

pub fn prune(store: &Store, a: &PruneArgs) -> Result<ExitCode> {
    let r = store.prune()?;
    match a.format {
        OutputFormat::Json => println!(
            "{}",
            json!({
                "blobs_removed": r.blobs_removed,
                "bytes_freed": r.bytes_freed,
                "temp_files_removed": r.temp_files_removed,
                "stale_leases_removed": r.stale_leases_removed,
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
                "Total reclaimed space: {} ({} bytes)",
                human_size(r.bytes_freed),
                r.bytes_freed
            );
        }
    }
    Ok(ExitCode::SUCCESS)
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
