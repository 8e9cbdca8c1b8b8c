//! Persistent stat cache: `(dev, inode, size, mtime, ctime)` of a context file →
//! digest of its content (sha256; for files of 32 MiB and more a sha256 tree hashed on
//! several cores, see [`tree_sha256`]), so unchanged files are not re-read on the next
//! build.
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
use std::sync::Mutex;
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
/// 2: files of [`TREE_MIN_BYTES`] and more are tree-hashed.
const VERSION: u32 = 2;

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

    /// The cached digest of `rel` if its stat still matches; marks the entry used.
    fn lookup(&mut self, rel: &str, now: &Entry) -> Option<[u8; 32]> {
        self.used.insert(rel.to_owned());
        let e = self.entries.get(rel).filter(|e| same(e, now))?;
        self.stats.hits += 1;
        Some(e.sha256)
    }

    /// Records a digest computed outside the lock; only a stable, not racily clean
    /// result is kept, and a stale entry is dropped.
    fn record(&mut self, rel: &str, hashed: Entry, stable: bool, bytes: u64) {
        self.stats.misses += 1;
        self.stats.hashed_bytes += bytes;
        if stable {
            self.entries.insert(rel.to_owned(), hashed);
            self.dirty = true;
        } else if self.entries.remove(rel).is_some() {
            self.dirty = true;
        }
    }
}

/// sha256 of the regular file `rel` in `root`, from the cache when its stat matches.
/// The lock is held only for the lookup and the record, never while reading, so several
/// threads hash different files of one context at once.
pub(crate) fn content_sha256(
    cache: &Mutex<StatCache>,
    root: &SafeRoot,
    rel: &str,
) -> Result<[u8; 32], Error> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut f = root.open_file(Path::new(rel), flags, 0)?;
    let before = stat_key(&f, rel)?;
    if let Some(sum) = lock(cache).lookup(rel, &before) {
        return Ok(sum);
    }
    let (sum, n_total) = if before.size >= TREE_MIN_BYTES {
        tree_sha256(&f, before.size, rel)?
    } else {
        stream_sha256(&mut f, rel)?
    };
    let after = stat_key(&f, rel)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let stable = same(&before, &after) && now - after.ctime >= RACY_WINDOW_NS;
    let hashed = Entry {
        sha256: sum,
        ..after
    };
    lock(cache).record(rel, hashed, stable, n_total);
    Ok(sum)
}

/// Files at least this large are hashed as a tree of [`TREE_CHUNK`] pieces on several
/// threads: one big file is otherwise a single core's sequential work at the start of
/// the build. The digest only feeds kiln's own cache keys, so its form is ours to pick.
const TREE_MIN_BYTES: u64 = 32 << 20;
const TREE_CHUNK: u64 = 4 << 20;
const TREE_THREADS: usize = 4;

/// sha256 of the whole stream (small files).
fn stream_sha256(f: &mut fs::File, rel: &str) -> Result<([u8; 32], u64), Error> {
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
    Ok((h.finalize().into(), n_total))
}

/// `sha256("kiln-tree-v1" ‖ chunk size ‖ sha256 of each chunk…)`, chunks hashed in
/// parallel with positioned reads. A file that grows or shrinks while being read fails
/// the stat comparison afterwards and is not cached.
fn tree_sha256(f: &fs::File, size: u64, rel: &str) -> Result<([u8; 32], u64), Error> {
    use std::os::unix::fs::FileExt;
    let chunks: Vec<u64> = (0..size.div_ceil(TREE_CHUNK)).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let sums = crate::parallel::try_map_with(
        &chunks,
        threads.min(TREE_THREADS),
        || vec![0u8; TREE_CHUNK as usize],
        |buf, &i| -> std::io::Result<([u8; 32], u64)> {
            let start = i * TREE_CHUNK;
            let want = TREE_CHUNK.min(size - start) as usize;
            let mut got = 0;
            while got < want {
                match f.read_at(&mut buf[got..want], start + got as u64) {
                    Ok(0) => break, // shrank: the stat check afterwards sees it
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((Sha256::digest(&buf[..got]).into(), got as u64))
        },
    )
    .map_err(|e| Error::io("read", PathBuf::from(rel), e))?;
    let mut h = Sha256::new();
    h.update(b"kiln-tree-v1\0");
    h.update(TREE_CHUNK.to_be_bytes());
    for (sum, _) in &sums {
        h.update(sum);
    }
    Ok((h.finalize().into(), sums.iter().map(|(_, n)| n).sum()))
}

/// The cached sum of the regular file `rel` if `meta` (its `lstat`, as the walk took it)
/// still matches the entry: a hit needs no open, read or fstat.
pub(crate) fn cached_sha256(
    cache: &Mutex<StatCache>,
    rel: &str,
    meta: &kiln_fs::Metadata,
) -> Option<[u8; 32]> {
    let now = Entry {
        dev: meta.dev,
        ino: meta.ino,
        size: meta.size,
        mtime: meta.mtime * 1_000_000_000 + i64::from(meta.mtime_nsec),
        ctime: meta.ctime * 1_000_000_000 + i64::from(meta.ctime_nsec),
        sha256: [0; 32],
    };
    lock(cache).lookup(rel, &now)
}

pub(crate) fn lock(cache: &Mutex<StatCache>) -> std::sync::MutexGuard<'_, StatCache> {
    cache.lock().unwrap_or_else(|p| p.into_inner())
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
