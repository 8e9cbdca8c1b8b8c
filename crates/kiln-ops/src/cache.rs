//! Build cache records: cache key → the layers a step produced.
//!
//! A record is a small JSON file `kiln/cache/records/<key-hex>.json`, written atomically. A
//! hit is only used when every blob and snapshot it names is still present, so a prune that
//! removed them turns the hit into a miss, never into a broken image.
//!
//! To answer "why was this rebuilt", each step also remembers the named components of its
//! last key under `kiln/cache/steps/<identity-hex>.json`, where the identity is the step's
//! place in the build (Dockerfile path, stage, instruction index), not its content. On a miss
//! the components are compared with the previous ones for the same place.

use kiln_oci::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bumped when the record format or key derivation changes: old records are then ignored.
pub const CACHE_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The snapshot holding this layer's overlay-native content.
    pub snapshot: String,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheRecord {
    pub version: u32,
    pub key: Digest,
    /// Layers added by the step (empty for steps that change nothing).
    pub layers: Vec<LayerRecord>,
    /// Seconds the step's process ran when it was built (shown on later hits).
    #[serde(default)]
    pub exec_seconds: f64,
}

/// The named parts of a step's cache key, in a stable order.
pub type KeyComponents = BTreeMap<String, String>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StepMemory {
    version: u32,
    components: KeyComponents,
}

#[derive(Debug, thiserror::Error)]
#[error("build cache {path}: {source}")]
pub struct CacheError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Debug, Clone)]
pub struct CacheDir {
    records: PathBuf,
    steps: PathBuf,
}

impl CacheDir {
    pub fn open(store_root: &Path) -> Result<Self, CacheError> {
        let base = store_root.join("kiln").join("cache");
        let records = base.join("records");
        let steps = base.join("steps");
        for d in [&records, &steps] {
            std::fs::create_dir_all(d).map_err(|source| CacheError {
                path: d.clone(),
                source,
            })?;
        }
        Ok(CacheDir { records, steps })
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.records.join(format!("{}.json", key.hex()))
    }

    /// The record for `key`; unreadable or foreign-version records count as absent.
    pub fn get(&self, key: &Digest) -> Option<CacheRecord> {
        let bytes = std::fs::read(self.record_path(key)).ok()?;
        let r: CacheRecord = serde_json::from_slice(&bytes).ok()?;
        (r.version == CACHE_VERSION && &r.key == key).then_some(r)
    }

    pub fn put(&self, record: &CacheRecord) -> Result<(), CacheError> {
        let bytes = serde_json::to_vec(record).expect("cache record serialises");
        write_atomic(&self.record_path(&record.key), &bytes)
    }

    pub fn remove(&self, key: &Digest) {
        let _ = std::fs::remove_file(self.record_path(key));
    }

    /// All records, for GC: what they reference must be kept.
    pub fn records(&self) -> Vec<CacheRecord> {
        let Ok(rd) = std::fs::read_dir(&self.records) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
            .filter(|r| r.version == CACHE_VERSION)
            .collect()
    }

    /// Records the components of the key a step used, and returns the names of components
    /// that differ from the previous build of the same step (`None` on its first build).
    pub fn remember_step(
        &self,
        identity: &Digest,
        components: &KeyComponents,
    ) -> Result<Option<Vec<String>>, CacheError> {
        let path = self.steps.join(format!("{}.json", identity.hex()));
        let previous: Option<StepMemory> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|m: &StepMemory| m.version == CACHE_VERSION);
        let changed = previous
            .as_ref()
            .map(|prev| changed_components(&prev.components, components));
        let mem = StepMemory {
            version: CACHE_VERSION,
            components: components.clone(),
        };
        write_atomic(&path, &serde_json::to_vec(&mem).expect("serialises"))?;
        Ok(changed)
    }
}

impl CacheDir {
    /// Stores this build's per-file manifest of what a step copied (`label` tells several
    /// COPY sources of one step apart) and returns the previous build's, if any.
    pub fn swap_manifest(
        &self,
        identity: &Digest,
        label: &str,
        manifest: &[u8],
    ) -> Option<Vec<u8>> {
        let name = Digest::of_bytes(format!("{identity}\n{label}").as_bytes());
        let path = self.steps.join(format!("{}.files.json", name.hex()));
        let previous = std::fs::read(&path).ok();
        // Only an explanation aid: failing to store it must not fail the build.
        let _ = write_atomic(&path, manifest);
        previous
    }
}

/// Names of components that were added, removed or changed.
pub fn changed_components(old: &KeyComponents, new: &KeyComponents) -> Vec<String> {
    let mut out: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .collect();
    out.extend(old.keys().filter(|k| !new.contains_key(*k)).cloned());
    out.sort();
    out.dedup();
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    kiln_fs::atomic::write_file(path, bytes).map_err(|source| CacheError {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comps(pairs: &[(&str, &str)]) -> KeyComponents {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn records_round_trip_and_version_gate() {
        let dir = tempfile::tempdir().unwrap();
        let c = CacheDir::open(dir.path()).unwrap();
        let key = Digest::of_bytes(b"k");
        assert!(c.get(&key).is_none());
        let r = CacheRecord {
            version: CACHE_VERSION,
            key: key.clone(),
            layers: vec![],
            exec_seconds: 1.5,
        };
        c.put(&r).unwrap();
        assert_eq!(c.get(&key), Some(r));
        assert_eq!(c.records().len(), 1);
        std::fs::write(c.record_path(&key), b"{garbage").unwrap();
        assert!(c.get(&key).is_none(), "corrupt record is a miss");
    }

    #[test]
    fn explains_changes_per_step() {
        let dir = tempfile::tempdir().unwrap();
        let c = CacheDir::open(dir.path()).unwrap();
        let id = Digest::of_bytes(b"Dockerfile:build:3");
        let first = comps(&[("command", "a"), ("file:src/x", "1")]);
        assert_eq!(c.remember_step(&id, &first).unwrap(), None);
        let second = comps(&[("command", "a"), ("file:src/x", "2"), ("file:src/y", "3")]);
        assert_eq!(
            c.remember_step(&id, &second).unwrap().unwrap(),
            vec!["file:src/x", "file:src/y"]
        );
        let third = comps(&[("command", "b")]);
        assert_eq!(
            c.remember_step(&id, &third).unwrap().unwrap(),
            vec!["command", "file:src/x", "file:src/y"]
        );
    }
}
