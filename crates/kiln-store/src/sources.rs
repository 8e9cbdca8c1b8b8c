//! Where blobs were seen: `kiln/sources/<alg>/<hex>` lists, one per line, the registry
//! repositories (`host/repo`) a blob was pulled from or pushed to.
//!
//! The registry client reads it to push with a cross-repository mount instead of an upload
//! when the blob already sits in another repository of the same registry. It is a hint, never
//! trusted: a mount the registry refuses falls back to an upload. Lines are appended with
//! one small `write` on an `O_APPEND` file, so concurrent writers do not tear each other's
//! lines; a duplicate line is harmless. Prune removes the records of deleted blobs.

use crate::error::{Result, StoreError};
use crate::layout::Store;
use kiln_oci::Digest;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// At most this many repositories are remembered per blob (the file is read whole).
const MAX_SOURCES: usize = 64;

impl Store {
    fn sources_path(&self, digest: &Digest) -> PathBuf {
        self.root()
            .join("kiln")
            .join("sources")
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }

    /// Records that `digest` exists in `repository` (`host/name`). Already recorded: no-op.
    pub fn record_blob_source(&self, digest: &Digest, repository: &str) -> Result<()> {
        // One repository per line: a name with a newline would forge a second entry.
        if repository.is_empty() || repository.contains(['\n', '\r']) {
            return Ok(());
        }
        let known = self.blob_sources(digest)?;
        if known.iter().any(|r| r == repository) || known.len() >= MAX_SOURCES {
            return Ok(());
        }
        let path = self.sources_path(digest);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))?;
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        f.write_all(format!("{repository}\n").as_bytes())
            .map_err(StoreError::io("append to", &path))
    }

    /// The repositories `digest` was seen in, oldest first.
    pub fn blob_sources(&self, digest: &Digest) -> Result<Vec<String>> {
        let path = self.sources_path(digest);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.is_empty())
                .take(MAX_SOURCES)
                .map(str::to_string)
                .collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(StoreError::io("read", path)(e)),
        }
    }

    /// Drops the record of a blob that is gone (called by prune).
    pub(crate) fn forget_blob_sources(&self, digest: &Digest) {
        let _ = fs::remove_file(self.sources_path(digest));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_each_repository_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let d = Digest::of_bytes(b"x");
        assert!(store.blob_sources(&d).unwrap().is_empty());
        store.record_blob_source(&d, "localhost:5000/a").unwrap();
        store.record_blob_source(&d, "localhost:5000/b").unwrap();
        store.record_blob_source(&d, "localhost:5000/a").unwrap();
        store
            .record_blob_source(&d, "evil\nlocalhost:5000/c")
            .unwrap();
        assert_eq!(
            store.blob_sources(&d).unwrap(),
            vec!["localhost:5000/a", "localhost:5000/b"]
        );
        store.forget_blob_sources(&d);
        assert!(store.blob_sources(&d).unwrap().is_empty());
    }
}
