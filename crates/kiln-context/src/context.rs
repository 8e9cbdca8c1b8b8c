//! The build context: a host directory opened as a [`SafeRoot`] plus its ignore file
//! and stat cache. The directory itself is trusted (the user named it); everything
//! inside it is not.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use kiln_dockerfile::ignore::{ignore_file_for, IgnoreMatcher};
use kiln_fs::{OFlags, SafeRoot};

use crate::copy::{copy_into, CopyOpts, CopyReport};
use crate::digest::{digest_sources, DigestOpts, SourceDigest};
use crate::statcache::{StatCache, StatCacheStats};
use crate::walk::{walk_dir, Filter, WalkEntry};
use crate::Error;

/// Ignore files larger than this are refused rather than parsed.
const MAX_IGNORE_BYTES: u64 = 16 << 20;

#[derive(Debug)]
pub struct Context {
    dir: PathBuf,
    root: SafeRoot,
    ignore: IgnoreMatcher,
    ignore_file: Option<String>,
    cache: Mutex<StatCache>,
    /// Digests already computed in this build (by a step or by [`Context::prefetch`]),
    /// so a step whose sources were hashed ahead finds them instead of hashing again.
    memo: Mutex<HashMap<MemoKey, Arc<OnceLock<Option<SourceDigest>>>>>,
    /// Set when the build no longer needs the prefetch (it ended or failed).
    stop_prefetch: AtomicBool,
}

/// What one COPY asks for; equal requests have equal digests within a build.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MemoKey {
    patterns: Vec<String>,
    excludes: Vec<String>,
    follow_symlinks: bool,
    include_owner: bool,
    allow_empty_wildcard: bool,
}

/// One COPY's sources, as handed to [`Context::prefetch`].
#[derive(Debug, Clone)]
pub struct DigestRequest {
    pub patterns: Vec<String>,
    pub excludes: Vec<String>,
    pub opts: DigestOpts,
}

impl MemoKey {
    fn of(patterns: &[String], excludes: &[String], opts: &DigestOpts) -> MemoKey {
        MemoKey {
            patterns: patterns.to_vec(),
            excludes: excludes.to_vec(),
            follow_symlinks: opts.follow_symlinks,
            include_owner: opts.include_owner,
            allow_empty_wildcard: opts.allow_empty_wildcard,
        }
    }
}

impl Context {
    /// Open `dir` as a context for the Dockerfile `dockerfile_name` (as given to `-f`).
    /// Loads `<dockerfile_name>.dockerignore` if present (relative names are looked up
    /// inside the context, absolute ones on the host), else `.dockerignore` at the
    /// context root. The stat cache is in-memory until [`Self::with_stat_cache`].
    pub fn open(dir: impl AsRef<Path>, dockerfile_name: &str) -> Result<Context, Error> {
        let dir = dir.as_ref();
        let dir = dir
            .canonicalize()
            .map_err(|e| Error::io("open build context", dir, e))?;
        let root = SafeRoot::open(&dir)?;
        let mut ignore = IgnoreMatcher::default();
        let mut ignore_file = None;
        for name in ignore_file_for(dockerfile_name) {
            if let Some(text) = read_ignore(&root, &name)? {
                ignore = IgnoreMatcher::parse(&text).map_err(|source| Error::Ignore {
                    file: name.clone(),
                    source,
                })?;
                ignore_file = Some(name);
                break;
            }
        }
        Ok(Context {
            dir,
            root,
            ignore,
            ignore_file,
            cache: Mutex::new(StatCache::in_memory()),
            memo: Mutex::default(),
            stop_prefetch: AtomicBool::new(false),
        })
    }

    /// Use the persistent stat cache under `kiln_root` (`Store::root()`).
    pub fn with_stat_cache(self, kiln_root: &Path) -> Context {
        let cache = StatCache::load(kiln_root, &self.dir);
        Context {
            cache: Mutex::new(cache),
            ..self
        }
    }

    /// The canonical absolute context directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn root(&self) -> &SafeRoot {
        &self.root
    }

    pub fn ignore(&self) -> &IgnoreMatcher {
        &self.ignore
    }

    /// Which ignore file was loaded, if any.
    pub fn ignore_file(&self) -> Option<&str> {
        self.ignore_file.as_deref()
    }

    /// How errors name this context.
    pub fn source_name(&self) -> String {
        format!("build context {}", self.dir.display())
    }

    /// Every included node, depth-first, sorted by name; symlinks are listed, never
    /// followed.
    pub fn walk(&self) -> Result<Vec<WalkEntry>, Error> {
        let mut out = Vec::new();
        let filter = Filter {
            ignore: Some(&self.ignore),
            exclude: None,
        };
        walk_dir(&self.root, "", "", &filter, &mut out)?;
        Ok(out)
    }

    /// Content digest of exactly what `COPY <patterns> --exclude=<excludes>` reads.
    /// Computed once per build: a second request (or one [`Context::prefetch`] is working
    /// on) waits for that result. A failed prefetch is retried here, so the error a user
    /// sees always comes from the step that needs the digest.
    pub fn digest_sources(
        &self,
        patterns: &[String],
        excludes: &[String],
        opts: &DigestOpts,
    ) -> Result<SourceDigest, Error> {
        let cell = self.memo_cell(MemoKey::of(patterns, excludes, opts));
        if let Some(Some(d)) = cell.get() {
            return Ok(d.clone());
        }
        let mut error = None;
        let got = cell.get_or_init(|| match self.compute_digest(patterns, excludes, opts) {
            Ok(d) => Some(d),
            Err(e) => {
                error = Some(e);
                None
            }
        });
        match (got, error) {
            (Some(d), _) => Ok(d.clone()),
            (None, Some(e)) => Err(e),
            // The prefetch failed before we asked: compute again for the error itself.
            (None, None) => self.compute_digest(patterns, excludes, opts),
        }
    }

    /// Hashes the sources of `requests`, in order, on a background thread, so the
    /// context is read while earlier steps run (BuildKit sends the context up front for
    /// the same reason). Steps then find the digests in the memo. Stopped by
    /// [`Context::stop_prefetch`]; errors are left for the steps to meet.
    pub fn prefetch(self: &Arc<Self>, requests: Vec<DigestRequest>) {
        if requests.is_empty() {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kiln-ctx-hash".into())
            .spawn(move || {
                for r in requests {
                    if me.stop_prefetch.load(Ordering::Relaxed) {
                        break;
                    }
                    let cell = me.memo_cell(MemoKey::of(&r.patterns, &r.excludes, &r.opts));
                    cell.get_or_init(|| me.compute_digest(&r.patterns, &r.excludes, &r.opts).ok());
                }
            });
        // Without the thread every step hashes its own sources, as it would anyway.
        drop(spawned);
    }

    /// Tells a running [`Context::prefetch`] to stop after the request it is on.
    pub fn stop_prefetch(&self) {
        self.stop_prefetch.store(true, Ordering::Relaxed);
    }

    fn memo_cell(&self, key: MemoKey) -> Arc<OnceLock<Option<SourceDigest>>> {
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(memo.entry(key).or_default())
    }

    fn compute_digest(
        &self,
        patterns: &[String],
        excludes: &[String],
        opts: &DigestOpts,
    ) -> Result<SourceDigest, Error> {
        let mut opts = opts.clone();
        opts.source_name = self.source_name();
        digest_sources(
            &self.root,
            Some(&self.ignore),
            &self.cache,
            patterns,
            excludes,
            &opts,
        )
    }

    /// [`copy_into`] from this context, with its `.dockerignore` applied.
    pub fn copy_into(
        &self,
        sources: &[String],
        dest_root: &SafeRoot,
        dest: &str,
        workdir: &str,
        opts: &CopyOpts,
    ) -> Result<CopyReport, Error> {
        let opts = CopyOpts {
            ignore: Some(self.ignore.clone()),
            source_name: self.source_name(),
            ..opts.clone()
        };
        copy_into(&self.root, sources, dest_root, dest, workdir, &opts)
    }

    pub fn stat_stats(&self) -> StatCacheStats {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).stats()
    }

    /// Persist the stat cache (no-op for an in-memory one or when nothing changed).
    pub fn save_stat_cache(&self) -> Result<(), Error> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).save()
    }
}

/// Read an ignore file through the root (so a symlinked `.dockerignore` cannot pull
/// in a host file), or from the host when the Dockerfile was named by absolute path.
fn read_ignore(root: &SafeRoot, name: &str) -> Result<Option<String>, Error> {
    let file = if Path::new(name).is_absolute() {
        std::fs::File::open(name)
    } else {
        root.open_file(Path::new(name), OFlags::RDONLY | OFlags::CLOEXEC, 0)
            .map_err(std::io::Error::from)
    };
    let f = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTDIR.raw_os_error()) => {
            return Ok(None)
        }
        Err(e) => return Err(Error::io("read ignore file", name, e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_IGNORE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("read ignore file", name, e))?;
    if buf.len() as u64 > MAX_IGNORE_BYTES {
        return Err(Error::io(
            "read ignore file",
            name,
            std::io::Error::other("larger than 16 MiB"),
        ));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}
