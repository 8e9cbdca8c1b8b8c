//! Leases: how a writer keeps blobs alive that nothing in index.json references yet.
//!
//! A lease is a file `kiln/leases/<id>` held with an exclusive flock for the lease's whole
//! life. Before a blob is renamed into `blobs/` (or found already there), its digest is
//! appended to the lease. Prune reads every lease file it cannot lock; a lease file it *can*
//! lock belongs to a finished or crashed writer and is deleted. Because the lock dies with the
//! process, a crashed import never pins blobs forever.

use crate::error::{Result, StoreError};
use crate::layout::{unique_name, Store};
use crate::lock;
use kiln_oci::Digest;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// A held lease. Dropping it releases the lease (deletes the file, then the lock goes with
/// the closed file); do that only after the image is tagged.
#[derive(Debug)]
pub struct Lease {
    path: PathBuf,
    file: File,
}

impl Store {
    /// Opens a new lease. The file is created and locked in `kiln/tmp` and only then renamed
    /// into `kiln/leases`, so prune can never see it unlocked and take it for stale.
    pub fn lease(&self) -> Result<Lease> {
        let name = unique_name("lease");
        let tmp = self.tmp_dir().join(&name);
        let file = OpenOptions::new()
            .append(true)
            .read(true)
            .create_new(true)
            .open(&tmp)
            .map_err(StoreError::io("create lease", &tmp))?;
        if !lock::try_lock_exclusive(&file).map_err(|source| StoreError::Lock {
            path: tmp.clone(),
            source,
        })? {
            // Unreachable in practice: nobody else knows this fresh name.
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::Lock {
                path: tmp,
                source: io::Error::from(io::ErrorKind::WouldBlock),
            });
        }
        let path = self.leases_dir().join(&name);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(StoreError::io("rename lease", &path)(e));
        }
        Ok(Lease { path, file })
    }
}

impl Lease {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a digest. One small `write` on an O_APPEND file: a concurrent reader sees
    /// either the whole line or (rarely) a prefix of it, which it ignores — harmless, because
    /// the blob that line protects is not yet renamed into place / checked (see blob.rs).
    pub(crate) fn record(&self, digest: &Digest) -> Result<()> {
        let line = format!("{digest}\n");
        (&self.file)
            .write_all(line.as_bytes())
            .map_err(StoreError::io("append to lease", &self.path))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Digests pinned by live leases; deletes stale lease files. Returns (digests, stale count).
pub(crate) fn live_digests(store: &Store) -> Result<(HashSet<Digest>, usize)> {
    let dir = store.leases_dir();
    let mut digests = HashSet::new();
    let mut stale = 0;
    let entries = fs::read_dir(&dir).map_err(StoreError::io("read directory", &dir))?;
    for entry in entries {
        let entry = entry.map_err(StoreError::io("read directory", &dir))?;
        let path = entry.path();
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // released meanwhile
            Err(e) => return Err(StoreError::io("open lease", &path)(e)),
        };
        let free = lock::try_lock_exclusive(&file).map_err(|source| StoreError::Lock {
            path: path.clone(),
            source,
        })?;
        if free {
            // Owner finished or died; its blobs are either tagged by now or garbage.
            let _ = fs::remove_file(&path);
            stale += 1;
            continue;
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(StoreError::io("read lease", &path))?;
        // Only complete lines count; a torn last line is an append still in progress.
        let complete = match text.rfind('\n') {
            Some(i) => &text[..i],
            None => "",
        };
        digests.extend(
            complete
                .lines()
                .filter_map(|l| Digest::parse(l.trim()).ok()),
        );
    }
    Ok((digests, stale))
}
