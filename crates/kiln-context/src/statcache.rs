//! Persistent stat cache: `(dev, inode, size, mtime, ctime)` of a context file →
//! sha256 of its content, so unchanged files are not re-read on the next build.
//!
//! The cache only ever *avoids work*; the digest is always of content. Rules:
//! * ctime is in the key because it changes on every write and cannot be set by
//!   `touch -d`, so a same-size rewrite with a forged mtime is still caught.
//! * "Racily clean" entries (hashed within [`RACY_WINDOW_NS`] of their ctime) are not
//!   stored: a rewrite inside one timestamp tick could otherwise keep the same stat.
//! * A missing, unreadable, corrupt or foreign-version file is an empty cache.
//! * Saving writes a temp file in the same directory and renames it (atomic).
//! * At most [`MAX_ENTRIES`] entries are kept, the ones used by this run first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use kiln_fs::{OFlags, SafeRoot};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// Entries kept on save (about 120 bytes each as JSON).
pub const MAX_ENTRIES: usize = 500_000;
/// A cache file larger than this is treated as corrupt rather than parsed.
const MAX_FILE_BYTES: u64 = 256 << 20;
/// Larger than the coarse clock tick filesystems stamp ctime with (≤ 10 ms).
pub const RACY_WINDOW_NS: i64 = 50_000_000;
const VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    ctime: i64,
    #[serde(with = "hex32")]
    sha256: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    /// The context directory, for humans inspecting the cache directory.
    context: String,
    entries: BTreeMap<String, Entry>,
}

/// Counters for progress output and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatCacheStats {
    /// Files whose digest came from the cache.
    pub hits: u64,
    /// Files that were read and hashed.
    pub misses: u64,
    /// Bytes read for hashing.
    pub hashed_bytes: u64,
    /// Entries loaded from disk.
    pub loaded: u64,
    /// The file on disk existed but could not be used.
    pub discarded_corrupt: bool,
}

#[derive(Debug, Default)]
pub struct StatCache {
    file: Option<PathBuf>,
    context: String,
    entries: HashMap<String, Entry>,
    used: HashSet<String>,
    dirty: bool,
    stats: StatCacheStats,
}

impl StatCache {
    /// A cache that is never persisted.
    pub fn in_memory() -> StatCache {
        StatCache::default()
    }

    /// `<kiln_root>/kiln/statcache/<sha256(context abs path)[..32]>.json`.
    pub fn file_for(kiln_root: &Path, context_dir: &Path) -> PathBuf {
        let h = Sha256::digest(context_dir.as_os_str().as_encoded_bytes());
        kiln_root
            .join("kiln/statcache")
            .join(format!("{}.json", &hex::encode(h)[..32]))
    }

    /// Load the cache of `context_dir` (an absolute, canonical path). Never fails: a bad
    /// file only costs re-hashing.
    pub fn load(kiln_root: &Path, context_dir: &Path) -> StatCache {
        let file = StatCache::file_for(kiln_root, context_dir);
        let mut c = StatCache {
            file: Some(file.clone()),
            context: context_dir.to_string_lossy().into_owned(),
            ..StatCache::default()
        };
        match read_file(&file) {
            Ok(Some(cf)) if cf.version == VERSION => {
                c.stats.loaded = cf.entries.len() as u64;
                c.entries = cf.entries.into_iter().collect();
            }
            Ok(None) => {}
            Ok(Some(_)) | Err(()) => c.stats.discarded_corrupt = true,
        }
        c
    }

    pub fn stats(&self) -> StatCacheStats {
        self.stats.clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Write the cache if anything changed (atomic temp file + rename).
    pub fn save(&mut self) -> Result<(), Error> {
        let Some(file) = self.file.clone() else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut keep: BTreeMap<String, Entry> = BTreeMap::new();
        for k in &self.used {
            if keep.len() >= MAX_ENTRIES {
                break;
            }
            if let Some(e) = self.entries.get(k) {
                keep.insert(k.clone(), *e);
            }
        }
        for (k, e) in &self.entries {
            if keep.len() >= MAX_ENTRIES {
                break;
            }
            keep.entry(k.clone()).or_insert(*e);
        }
        let cf = CacheFile {
            version: VERSION,
            context: self.context.clone(),
            entries: keep,
        };
        let dir = file.parent().expect("cache file has a parent");
        fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        let tmp = dir.join(format!(
            ".{}.tmp.{}",
            file.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let body = serde_json::to_vec(&cf).map_err(|e| Error::io("encode", &file, e.into()))?;
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&body)?;
            f.sync_all()?;
            fs::rename(&tmp, &file)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write stat cache", &file, e));
        }
        self.dirty = false;
        Ok(())
    }

    /// sha256 of the regular file `rel` in `root`, from the cache when its stat matches.
    pub(crate) fn content_sha256(&mut self, root: &SafeRoot, rel: &str) -> Result<[u8; 32], Error> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut f = root.open_file(Path::new(rel), flags, 0)?;
        let before = stat_key(&f, rel)?;
        self.used.insert(rel.to_owned());
        if let Some(e) = self.entries.get(rel) {
            if same(e, &before) {
                self.stats.hits += 1;
                return Ok(e.sha256);
            }
        }
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 << 10];
        let mut n_total = 0u64;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| Error::io("read", PathBuf::from(rel), e))?;
            if n == 0 {
                break;
            }
            n_total += n as u64;
            h.update(&buf[..n]);
        }
        let sum: [u8; 32] = h.finalize().into();
        self.stats.misses += 1;
        self.stats.hashed_bytes += n_total;
        let after = stat_key(&f, rel)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        let stable = same(&before, &after) && now - after.ctime >= RACY_WINDOW_NS;
        if stable {
            self.entries.insert(
                rel.to_owned(),
                Entry {
                    sha256: sum,
                    ..after
                },
            );
            self.dirty = true;
        } else if self.entries.remove(rel).is_some() {
            self.dirty = true;
        }
        Ok(sum)
    }
}

fn same(a: &Entry, b: &Entry) -> bool {
    (a.dev, a.ino, a.size, a.mtime, a.ctime) == (b.dev, b.ino, b.size, b.mtime, b.ctime)
}

fn stat_key(f: &fs::File, rel: &str) -> Result<Entry, Error> {
    let st = rustix::fs::fstat(f.as_fd())
        .map_err(|e| Error::io("fstat", PathBuf::from(rel), e.into()))?;
    Ok(Entry {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
        sha256: [0; 32],
    })
}

/// `Ok(None)`: no file. `Err(())`: present but unusable.
fn read_file(file: &Path) -> Result<Option<CacheFile>, ()> {
    let f = match fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(()),
    };
    let mut body = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|_| ())?;
    if body.len() as u64 > MAX_FILE_BYTES {
        return Err(());
    }
    serde_json::from_slice(&body).map(Some).map_err(|_| ())
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

pub(crate) use hex32::{deserialize as hex32_de, serialize as hex32_ser};
