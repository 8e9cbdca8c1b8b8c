//! The on-disk layout and the one primitive every write goes through: a temp file in
//! `kiln/tmp` that is fsynced, renamed into place and whose directory is then fsynced.
//!
//! ```text
//! <root>/oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! <root>/index.json                 tags (OCI image index)
//! <root>/blobs/sha256/<hex>         content-addressed blobs
//! <root>/kiln/tmp/                  in-flight writes (same filesystem, so rename is atomic)
//! <root>/kiln/locks/index.lock      guards index.json read-modify-write
//! <root>/kiln/locks/gc.lock         orders blob commits against prune's deletions
//! <root>/kiln/leases/<id>           live writers' blob lists (see lease.rs)
//! <root>/kiln/sources/<alg>/<hex>   registry repositories a blob was seen in (sources.rs)
//! ```

use crate::error::{Result, StoreError};
use crate::lock;
use kiln_oci::Digest;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) const OCI_LAYOUT: &str = "oci-layout";
pub(crate) const OCI_LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
pub(crate) const INDEX_JSON: &str = "index.json";
const EMPTY_INDEX: &[u8] = b"{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"application/vnd.oci.image.index.v1+json\",\n  \"manifests\": []\n}\n";

/// A handle on a store directory. Cheap to clone; holds no file descriptors, so any number
/// of handles (and processes) can use one store at once.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout if it is missing. Creation is safe
    /// against concurrent `open`s: `oci-layout` and `index.json` appear with link(2), which
    /// never replaces an existing file (a plain rename could wipe another process's tags).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [
            store.root.join("blobs").join("sha256"),
            store.tmp_dir(),
            store.locks_dir(),
            store.leases_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        }
        store.create_if_missing(&store.root.join(OCI_LAYOUT), OCI_LAYOUT_CONTENT)?;
        store.create_if_missing(&store.index_path(), EMPTY_INDEX)?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }
    /// `blobs/<alg>/<hex>`; a validated [`Digest`] cannot contain `/` or `..`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir()
            .join(digest.algorithm().as_str())
            .join(digest.hex())
    }
    pub(crate) fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_JSON)
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("kiln").join("tmp")
    }
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.root.join("kiln").join("locks")
    }
    pub(crate) fn leases_dir(&self) -> PathBuf {
        self.root.join("kiln").join("leases")
    }
    pub(crate) fn index_lock(&self) -> PathBuf {
        self.locks_dir().join("index.lock")
    }
    pub(crate) fn gc_lock(&self) -> PathBuf {
        self.locks_dir().join("gc.lock")
    }

    fn create_if_missing(&self, dest: &Path, content: &[u8]) -> Result<()> {
        if dest.exists() {
            return Ok(());
        }
        let mut tmp = TempFile::new(&self.tmp_dir(), "init")?;
        tmp.file()
            .write_all(content)
            .map_err(StoreError::io("write", tmp.path()))?;
        tmp.persist_noclobber(dest)?;
        Ok(())
    }

    /// Atomically replaces `dest` with `content`.
    pub(crate) fn write_atomic(&self, dest: &Path, content: &[u8]) -> Result<()> {
        let mut tmp = TempFile::new(&self.tmp_dir(), "write")?;
        tmp.file()
            .write_all(content)
            .map_err(StoreError::io("write", tmp.path()))?;
        tmp.persist(dest)
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique, not yet existing name: pid + time + a process-wide counter. `create_new` still
/// guards against the (theoretical) clash with another process.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// A file under `kiln/tmp` that is removed on drop unless persisted. It holds an exclusive
/// flock for its whole life so that prune/fsck can tell an in-flight write (locked) from the
/// leftover of a crashed process (unlocked).
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
    file: File,
    done: bool,
}

impl TempFile {
    pub(crate) fn new(dir: &Path, prefix: &str) -> Result<TempFile> {
        loop {
            let path = dir.join(unique_name(prefix));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    let tmp = TempFile {
                        path,
                        file,
                        done: false,
                    };
                    // Fresh file nobody else knows the name of: this cannot block.
                    lock::try_lock_exclusive(&tmp.file).map_err(|source| StoreError::Lock {
                        path: tmp.path.clone(),
                        source,
                    })?;
                    return Ok(tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create", &path)(e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// fsync, rename over `dest`, fsync the directory: after this returns the new content
    /// survives a crash, and before it nobody could see a partial `dest`.
    pub(crate) fn persist(mut self, dest: &Path) -> Result<()> {
        self.file
            .sync_all()
            .map_err(StoreError::io("fsync", &self.path))?;
        fs::rename(&self.path, dest).map_err(StoreError::io("rename into place", dest))?;
        self.done = true;
        sync_parent(dest)
    }

    /// Like [`persist`](Self::persist) but never replaces an existing `dest`.
    /// Returns whether this call created it.
    pub(crate) fn persist_noclobber(self, dest: &Path) -> Result<bool> {
        self.file
            .sync_all()
            .map_err(StoreError::io("fsync", &self.path))?;
        let created = match fs::hard_link(&self.path, dest) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(StoreError::io("link into place", dest)(e)),
        };
        // Drop removes the temp name; the linked `dest` keeps the content.
        if created {
            sync_parent(dest)?;
        }
        Ok(created)
    }

    /// Drops the temp file (explicit form of the drop path).
    pub(crate) fn discard(self) {}
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}
