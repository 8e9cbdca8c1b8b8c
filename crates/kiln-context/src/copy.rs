//! COPY / ADD between two safe roots with BuildKit's rules (fsutil `copy` plus the
//! Dockerfile frontend's options):
//! * sources are clamped at the source root and resolved only through [`SafeRoot`];
//!   a symlink *named* as a source is followed in-root when `follow_symlinks` (BuildKit
//!   COPY), symlinks *inside* a copied directory are copied as symlinks, verbatim;
//! * a directory source copies its contents; a file goes to `dest/` + basename when the
//!   destination ends with `/` or is an existing directory, else to `dest` itself;
//! * more than one source needs a directory destination ending with `/` (Docker);
//! * missing parents (and a directory source's created destination) are created 0755,
//!   owned by `--chown`; `--chmod` never applies to them (BuildKit);
//! * `--chmod` applies to every copied file *and* directory; `--chown` to every node;
//!   otherwise owners become 0:0 (context) or are kept (`preserve_owner`, COPY --from);
//! * mtimes are kept (optionally clamped), hardlinks within one COPY stay hardlinks;
//! * a file copied onto an existing symlink to a file is written through it, in-root;
//! * existing directories in the destination are merged into without touching their
//!   metadata; a symlink to a directory at such a spot is followed *in the destination
//!   root*, so every path written and reported is a real location inside it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kiln_dockerfile::ignore::IgnoreMatcher;
use kiln_fs::{FileKind, Metadata, OFlags, SafeRoot};
use rustix::io::Errno;

use crate::follow::{clamp, resolve, slash};
use crate::walk::{walk_dir, Filter};
use crate::wildcard::{expand, has_wildcards};
use crate::{unpack, Chmod, Error};

#[derive(Debug, Clone)]
pub struct CopyOpts {
    /// `--chown`, already resolved to numeric ids by the caller.
    pub chown: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    /// ADD: extract local tar / tar.gz / tar.zst sources into the destination.
    pub unpack_archives: bool,
    /// Follow a symlink named directly as a source (in-root). BuildKit COPY: true.
    pub follow_symlinks: bool,
    /// `--exclude` patterns (dockerignore syntax).
    pub exclude: Vec<String>,
    /// `--parents`: keep the source path below the `/./` pivot (or all of it).
    pub parents: bool,
    /// A wildcard matching nothing copies nothing instead of failing. BuildKit's
    /// Dockerfile frontend sets this.
    pub allow_empty_wildcard: bool,
    /// Clamp copied mtimes to at most this (SOURCE_DATE_EPOCH rewriting).
    pub clamp_mtime: Option<i64>,
    /// Keep source owners when no `--chown` (COPY --from). False: 0:0 (context).
    pub preserve_owner: bool,
    /// `.dockerignore` of the source root (set by [`crate::Context::copy_into`]).
    pub ignore: Option<IgnoreMatcher>,
    /// How errors name the source root: "build context /src", "stage builder".
    pub source_name: String,
}

impl Default for CopyOpts {
    fn default() -> Self {
        CopyOpts {
            chown: None,
            chmod: None,
            unpack_archives: false,
            follow_symlinks: true,
            exclude: Vec::new(),
            parents: false,
            allow_empty_wildcard: true,
            clamp_mtime: None,
            preserve_owner: false,
            ignore: None,
            source_name: "build context".to_owned(),
        }
    }
}

/// What a copy wrote. `written` lists every node created or replaced (files,
/// symlinks, directories, created parents), destination-root-relative real paths,
/// sorted and deduplicated; directories merged into are not listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub written: Vec<PathBuf>,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub hardlinks: u64,
    pub special: u64,
    pub bytes: u64,
    pub archives_unpacked: u64,
    /// chowns refused because the process is not root (counted, not fatal).
    pub skipped_owners: u64,
}

pub(crate) struct SourceSpec<'a> {
    pub follow_symlinks: bool,
    pub parents: bool,
    pub allow_empty_wildcard: bool,
    pub ignore: Option<&'a IgnoreMatcher>,
    /// `--exclude`: a matching top-level source is skipped (not an error).
    pub exclude: Option<&'a IgnoreMatcher>,
    pub source_name: &'a str,
}

/// One resolved source.
pub(crate) struct Source {
    /// Root-relative name as written or matched (clamped), before following.
    pub name: String,
    /// Where it really is in the root (final symlink followed when asked).
    pub real: PathBuf,
    pub meta: Metadata,
    /// With `--parents`: the path kept below the destination.
    pub keep: Option<PathBuf>,
}

pub(crate) fn exclude_matcher(excludes: &[String]) -> Result<Option<IgnoreMatcher>, Error> {
    if excludes.is_empty() {
        return Ok(None);
    }
    IgnoreMatcher::parse(&excludes.join("\n"))
        .map(Some)
        .map_err(|source| Error::Ignore {
            file: "--exclude".to_owned(),
            source,
        })
}

pub(crate) fn resolve_sources(
    root: &SafeRoot,
    sources: &[String],
    spec: &SourceSpec<'_>,
) -> Result<Vec<Source>, Error> {
    let ignored = |p: &str| spec.ignore.is_some_and(|m| m.is_excluded(p));
    let not_found = |s: &str| Error::NotFound {
        path: s.to_owned(),
        source_name: spec.source_name.to_owned(),
    };
    let mut out = Vec::new();
    for s in sources {
        let (base, full) = match (spec.parents, s.split_once("/./")) {
            (true, Some((base, pat))) => (clamp(base), clamp(&format!("{base}/{pat}"))),
            _ => (PathBuf::new(), clamp(s)),
        };
        let full = slash(&full);
        let names = if has_wildcards(s) {
            let names: Vec<String> = expand(root, &full)?
                .into_iter()
                .filter(|n| !ignored(n))
                .collect();
            if names.is_empty() {
                if spec.allow_empty_wildcard {
                    continue;
                }
                return Err(Error::EmptyWildcard {
                    pattern: s.clone(),
                    source_name: spec.source_name.to_owned(),
                });
            }
            names
        } else {
            vec![full]
        };
        for name in names {
            if spec.exclude.is_some_and(|m| m.is_excluded(&name)) {
                continue;
            }
            if ignored(&name) {
                return Err(not_found(s));
            }
            let (real, exists) = resolve(root, Path::new(&name), spec.follow_symlinks)?;
            if !exists || ignored(&slash(&real)) {
                return Err(not_found(s));
            }
            let meta = root.lstat(&real)?;
            let keep = spec.parents.then(|| {
                Path::new(&name)
                    .strip_prefix(&base)
                    .unwrap_or(Path::new(&name))
                    .to_path_buf()
            });
            out.push(Source {
                name,
                real,
                meta,
                keep,
            });
        }
    }
    Ok(out)
}

/// Execute one COPY/ADD: `sources` are paths (or wildcards) in `src`, `dest` is
/// absolute or relative to `workdir` in `dest_root`.
pub fn copy_into(
    src: &SafeRoot,
    sources: &[String],
    dest_root: &SafeRoot,
    dest: &str,
    workdir: &str,
    opts: &CopyOpts,
) -> Result<CopyReport, Error> {
    let dest_abs = if dest.starts_with('/') {
        dest.to_owned()
    } else {
        format!("{workdir}/{dest}")
    };
    let dir_syntax = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || dest.is_empty();
    let dest_clean = clamp(&dest_abs);
    let exclude = exclude_matcher(&opts.exclude)?;
    let spec = SourceSpec {
        follow_symlinks: opts.follow_symlinks,
        parents: opts.parents,
        allow_empty_wildcard: opts.allow_empty_wildcard,
        ignore: opts.ignore.as_ref(),
        exclude: exclude.as_ref(),
        source_name: &opts.source_name,
    };
    let srcs = resolve_sources(src, sources, &spec)?;
    let (dest_real, dest_exists) = resolve(dest_root, &dest_clean, true)?;
    let dest_is_dir = dest_exists && dest_root.lstat(&dest_real)?.kind == FileKind::Directory;
    if (sources.len() > 1 || srcs.len() > 1) && !dir_syntax && !dest_is_dir {
        return Err(Error::DestNotDirectory {
            dest: dest.to_owned(),
        });
    }
    let mut c = new_copier(src, dest_root, opts);
    c.filter = Filter {
        ignore: opts.ignore.as_ref(),
        exclude: exclude.as_ref(),
    };
    for s in &srcs {
        if opts.unpack_archives
            && s.meta.kind == FileKind::Regular
            && unpack::is_archive(src, &s.real)
        {
            let target = match &s.keep {
                Some(k) => dest_clean.join(k.parent().unwrap_or(Path::new(""))),
                None => dest_clean.clone(),
            };
            let target = resolve(dest_root, &target, true)?.0;
            c.mkdir_parents(&target)?;
            unpack::extract(src, &s.real, &s.name, dest_root, &target, &mut c)?;
            continue;
        }
        let lexical = match &s.keep {
            Some(k) => dest_clean.join(k),
            None if s.meta.kind == FileKind::Directory => dest_clean.clone(),
            None if dir_syntax || dest_is_dir => {
                dest_clean.join(Path::new(&s.name).file_name().unwrap_or_default())
            }
            None => dest_clean.clone(),
        };
        if s.meta.kind == FileKind::Directory {
            let target = resolve(dest_root, &lexical, true)?.0;
            let fresh = dest_root.try_lstat(&target)?.is_none();
            c.mkdir_parents(&target)?;
            c.dir_contents(s, &target, fresh)?;
        } else {
            let (parent, name) = match (lexical.parent(), lexical.file_name()) {
                (Some(p), Some(n)) => (p, n),
                _ => {
                    return Err(Error::DestNotDirectory {
                        dest: dest.to_owned(),
                    })
                }
            };
            let parent = resolve(dest_root, parent, true)?.0;
            c.mkdir_parents(&parent)?;
            let mut target = parent.join(name);
            // BuildKit writes a file through an existing symlink at the destination into
            // the (existing, non-directory) file it names; resolved confined to the root.
            if dest_root
                .try_lstat(&target)?
                .is_some_and(|m| m.kind == FileKind::Symlink)
            {
                let (real, exists) = resolve(dest_root, &target, true)?;
                if exists && dest_root.lstat(&real)?.kind != FileKind::Directory {
                    target = real;
                }
            }
            c.node(&s.real, &s.meta, &target)?;
        }
    }
    c.finish()
}

pub(crate) struct Copier<'a> {
    src: &'a SafeRoot,
    pub(crate) dst: &'a SafeRoot,
    opts: &'a CopyOpts,
    filter: Filter<'a>,
    is_root: bool,
    ids: (u32, u32),
    pub(crate) report: CopyReport,
    /// (dev, ino) of a source file → where its first copy went.
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories whose mode/times are set last (children would change them, and a
    /// read-only mode would block writing them when not root).
    deferred: Vec<Deferred>,
}

/// One regular file of a batch written by [`Copier::copy_batch`].
struct FileJob {
    src: PathBuf,
    dest: PathBuf,
    meta: Metadata,
}

/// Below this many files a batch is written on the calling thread.
const PARALLEL_MIN_FILES: usize = 64;
/// Writer threads for a batch; more only contend on the same directories and journal.
const MAX_COPY_THREADS: usize = 4;

/// A directory's final mode and time, applied after its children were written.
type Deferred = (PathBuf, Option<u32>, Option<(i64, u32)>);

impl Copier<'_> {
    fn finish(mut self) -> Result<CopyReport, Error> {
        for (p, mode, time) in std::mem::take(&mut self.deferred).into_iter().rev() {
            if let Some(m) = mode {
                self.dst.chmod(&p, m)?;
            }
            if let Some(t) = time {
                self.dst.set_times(&p, t, t)?;
            }
        }
        self.report.written.sort();
        self.report.written.dedup();
        Ok(self.report)
    }

    /// Create the missing directories of the real path `dir` the way BuildKit creates
    /// destination parents: 0755 (never --chmod), owned by --chown.
    pub(crate) fn mkdir_parents(&mut self, dir: &Path) -> Result<(), Error> {
        let mut prefix = PathBuf::new();
        for comp in dir.components() {
            prefix.push(comp);
            match self.dst.try_lstat(&prefix)? {
                Some(m) if m.kind == FileKind::Directory => continue,
                Some(_) => {
                    // A symlink here means `dir` was not resolved (a race); refuse
                    // rather than write through it.
                    return Err(kiln_fs::Error::NotADirectory { path: prefix }.into());
                }
                None => {}
            }
            self.dst.mkdir(&prefix, 0o700)?;
            if let Some((u, g)) = self.opts.chown {
                self.chown(&prefix, u, g)?;
            }
            let mode = 0o755;
            let time = self.opts.clamp_mtime.map(|t| (t, 0));
            self.deferred.push((prefix.clone(), Some(mode), time));
            self.report.written.push(prefix.clone());
            self.report.dirs += 1;
        }
        Ok(())
    }

    pub(crate) fn chown(&mut self, p: &Path, u: u32, g: u32) -> Result<(), Error> {
        if !self.is_root && self.opts.chown == Some((u, g)) {
            if !record_owner(self.dst, p, (u, g)) {
                self.report.skipped_owners += 1;
            }
            return Ok(());
        }
        if !self.is_root && (u, g) == self.ids {
            return Ok(());
        }
        match self.dst.chown(p, u, g) {
            Ok(()) => Ok(()),
            Err(e)
                if !self.is_root
                    && matches!(
                        e.raw_os_error().map(Errno::from_raw_os_error),
                        Some(Errno::PERM) | Some(Errno::INVAL)
                    ) =>
            {
                self.report.skipped_owners += 1;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn owner_of(&self, m: &Metadata) -> (u32, u32) {
        match (self.opts.chown, self.opts.preserve_owner) {
            (Some(o), _) => o,
            (None, true) => (m.uid, m.gid),
            (None, false) => (0, 0),
        }
    }

    fn mode_of(&self, m: &Metadata) -> u32 {
        match &self.opts.chmod {
            Some(c) => c.apply(m.mode, m.kind == FileKind::Directory),
            None => m.mode,
        }
    }

    fn time_of(&self, m: &Metadata) -> (i64, u32) {
        match self.opts.clamp_mtime {
            Some(c) if m.mtime > c => (c, 0),
            _ => (m.mtime, m.mtime_nsec),
        }
    }

    /// Copy the included contents of a directory source into the real dir `target`
    /// (`fresh`: this copy just created it, so nothing is in it yet).
    fn dir_contents(&mut self, s: &Source, target: &Path, fresh: bool) -> Result<(), Error> {
        let real = slash(&s.real);
        let mut entries = Vec::new();
        walk_dir(self.src, &real, "", &self.filter, &mut entries)?;
        // Source dir (relative below the source) → its real destination, and whether this
        // copy created it.
        let mut dirs: HashMap<String, (PathBuf, bool)> = HashMap::new();
        dirs.insert(String::new(), (target.to_path_buf(), fresh));
        // Plain files bound for directories this copy created: nothing to replace and no
        // hardlink bookkeeping, so they are written in parallel after the walk (which
        // creates every directory first).
        let mut batch = Vec::new();
        for e in entries {
            let below = e.path[real.len()..].trim_start_matches('/').to_owned();
            let (parent_rel, name) = match below.rsplit_once('/') {
                Some((p, n)) => (p.to_owned(), n.to_owned()),
                None => (String::new(), below.clone()),
            };
            let Some((parent, parent_fresh)) = dirs.get(&parent_rel).cloned() else {
                continue; // parent was skipped
            };
            let d = parent.join(&name);
            if e.meta.kind == FileKind::Directory {
                let (real_dir, created) = self.dir_node(&e.meta, &d)?;
                dirs.insert(below, (real_dir, created));
            } else if parent_fresh
                && self.is_root
                && e.meta.kind == FileKind::Regular
                && e.meta.nlink <= 1
            {
                batch.push(FileJob {
                    src: PathBuf::from(&e.path),
                    dest: d,
                    meta: e.meta,
                });
            } else {
                self.node(Path::new(&e.path), &e.meta, &d)?;
            }
        }
        self.copy_batch(batch)
    }

    /// Writes `jobs` (regular files into fresh directories, as root) on several threads:
    /// creating many small files is kernel work that a second core halves.
    fn copy_batch(&mut self, jobs: Vec<FileJob>) -> Result<(), Error> {
        let threads = if jobs.len() < PARALLEL_MIN_FILES {
            1
        } else {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_COPY_THREADS)
        };
        let this = &*self;
        let sizes = crate::parallel::try_map(&jobs, threads, |j| {
            let (to, n) = this.copy_content(&j.src, &j.dest)?;
            this.set_attrs_fd(&to, &j.dest, &j.meta)?;
            Ok::<_, Error>(n)
        })?;
        self.report.bytes += sizes.iter().sum::<u64>();
        self.report.files += jobs.len() as u64;
        self.report.written.extend(jobs.into_iter().map(|j| j.dest));
        Ok(())
    }

    /// A new regular file at `d` (which must not exist) with the content of `s`; returned
    /// open, with the bytes copied, for its attributes to be set.
    fn copy_content(&self, s: &Path, d: &Path) -> Result<(std::fs::File, u64), Error> {
        let mut from =
            self.src
                .open_file(s, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, 0)?;
        let mut to = self.dst.create_file_excl(d, 0o600)?;
        // std::io::copy uses copy_file_range between files on Linux.
        let n = std::io::copy(&mut from, &mut to).map_err(|e| Error::io("copy", d, e))?;
        Ok((to, n))
    }

    /// Owner, then mode (chown clears setuid/setgid), then times, on an open file.
    fn set_attrs_fd(&self, f: &std::fs::File, d: &Path, m: &Metadata) -> Result<(), Error> {
        use rustix::fs::{fchmod, fchown, futimens, Gid, Mode, Timespec, Timestamps, Uid};
        let err = |what: &'static str| move |e: Errno| Error::io(what, d, e.into());
        let (u, g) = self.owner_of(m);
        fchown(f, Some(Uid::from_raw(u)), Some(Gid::from_raw(g))).map_err(err("chown"))?;
        fchmod(f, Mode::from_raw_mode(self.mode_of(m) & 0o7777)).map_err(err("chmod"))?;
        let (sec, nsec) = self.time_of(m);
        let t = Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        futimens(
            f,
            &Timestamps {
                last_access: t,
                last_modification: t,
            },
        )
        .map_err(err("utimensat"))
    }

    /// A directory entry at `d`: merge into an existing directory (or an in-root
    /// symlink to one) untouched, else (re)create it with the source's metadata.
    /// Returns where its children go.
    fn dir_node(&mut self, m: &Metadata, d: &Path) -> Result<(PathBuf, bool), Error> {
        match self.dst.try_lstat(d)? {
            Some(x) if x.kind == FileKind::Directory => return Ok((d.to_path_buf(), false)),
            Some(x) if x.kind == FileKind::Symlink => {
                let (r, exists) = resolve(self.dst, d, true)?;
                if exists && self.dst.lstat(&r)?.kind == FileKind::Directory {
                    return Ok((r, false));
                }
                self.dst.remove_all(d)?;
            }
            Some(_) => self.dst.remove_all(d)?,
            None => {}
        }
        self.dst.mkdir(d, 0o700)?;
        let (u, g) = self.owner_of(m);
        self.chown(d, u, g)?;
        let mode = self.mode_of(m);
        let time = self.time_of(m);
        self.deferred
            .push((d.to_path_buf(), Some(mode), Some(time)));
        self.report.written.push(d.to_path_buf());
        self.report.dirs += 1;
        Ok((d.to_path_buf(), true))
    }

    /// Copy one non-directory node from the source path `s` to the real path `d`.
    fn node(&mut self, s: &Path, m: &Metadata, d: &Path) -> Result<(), Error> {
        if m.kind == FileKind::Directory {
            self.dir_node(m, d)?;
            return Ok(());
        }
        if self.dst.try_lstat(d)?.is_some() {
            self.dst.remove_all(d)?;
        }
        if m.kind == FileKind::Regular && m.nlink > 1 {
            if let Some(first) = self.links.get(&(m.dev, m.ino)).cloned() {
                self.dst.hardlink(&first, d)?;
                self.report.hardlinks += 1;
                self.report.written.push(d.to_path_buf());
                return Ok(());
            }
            self.links.insert((m.dev, m.ino), d.to_path_buf());
        }
        match m.kind {
            FileKind::Regular => {
                let (to, n) = self.copy_content(s, d)?;
                self.report.bytes += n;
                self.report.files += 1;
                // As root, attributes go through the open file (one path resolution);
                // rootless keeps the path-based owner rules below.
                if self.is_root {
                    self.set_attrs_fd(&to, d, m)?;
                    self.report.written.push(d.to_path_buf());
                    return Ok(());
                }
            }
            FileKind::Symlink => {
                let target = self.src.read_link(s)?;
                self.dst.symlink(&target, d)?;
                self.report.symlinks += 1;
            }
            kind => {
                self.dst
                    .mknod(d, kind, m.mode, m.rdev_major, m.rdev_minor)?;
                self.report.special += 1;
            }
        }
        let (u, g) = self.owner_of(m);
        self.chown(d, u, g)?;
        if m.kind != FileKind::Symlink {
            // After chown: chown clears setuid/setgid.
            let mode = self.mode_of(m);
            self.dst.chmod(d, mode)?;
        }
        let t = self.time_of(m);
        self.dst.set_times(d, t, t)?;
        self.report.written.push(d.to_path_buf());
        Ok(())
    }

    /// The `--chown` owner, if any.
    pub(crate) fn chown_opt(&self) -> Option<(u32, u32)> {
        self.opts.chown
    }

    pub(crate) fn preserve_archive_owners(&self) -> bool {
        self.is_root
    }
}

/// `COPY <<EOF /path`: write `data` to the file `path` (absolute in `dest_root`),
/// creating parents (0755, chowned), replacing whatever is there.
pub fn write_heredoc_file(
    dest_root: &SafeRoot,
    path: &str,
    data: &[u8],
    mode: u32,
    chown: Option<(u32, u32)>,
    mtime: Option<i64>,
) -> Result<CopyReport, Error> {
    let opts = CopyOpts {
        chown,
        clamp_mtime: mtime,
        ..CopyOpts::default()
    };
    let mut c = new_copier(dest_root, dest_root, &opts);
    let lexical = clamp(path);
    let (parent, name) = match (lexical.parent(), lexical.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_owned()),
        _ => {
            return Err(Error::DestNotDirectory {
                dest: path.to_owned(),
            })
        }
    };
    let parent = resolve(dest_root, &parent, true)?.0;
    c.mkdir_parents(&parent)?;
    let d = parent.join(name);
    if dest_root.try_lstat(&d)?.is_some() {
        dest_root.remove_all(&d)?;
    }
    let mut f = dest_root.create_file_excl(&d, 0o600)?;
    std::io::Write::write_all(&mut f, data).map_err(|e| Error::io("write", &d, e))?;
    drop(f);
    if let Some((u, g)) = chown {
        c.chown(&d, u, g)?;
    }
    dest_root.chmod(&d, mode)?;
    if let Some(t) = mtime {
        dest_root.set_times(&d, (t, 0), (t, 0))?;
    }
    c.report.files += 1;
    c.report.bytes += data.len() as u64;
    c.report.written.push(d);
    c.finish()
}

/// WORKDIR: create `path` and its missing parents (0755) owned by `uid:gid`; existing
/// directories are left alone. Returns the directories created.
pub fn mkdir_p_owned(
    dest_root: &SafeRoot,
    path: &str,
    uid: u32,
    gid: u32,
) -> Result<Vec<PathBuf>, Error> {
    let opts = CopyOpts {
        chown: Some((uid, gid)),
        ..CopyOpts::default()
    };
    let mut c = new_copier(dest_root, dest_root, &opts);
    let real = resolve(dest_root, &clamp(path), true)?.0;
    c.mkdir_parents(&real)?;
    Ok(c.finish()?.written)
}

fn new_copier<'a>(src: &'a SafeRoot, dst: &'a SafeRoot, opts: &'a CopyOpts) -> Copier<'a> {
    Copier {
        src,
        dst,
        opts,
        filter: Filter::default(),
        is_root: kiln_fs::running_as_root(),
        ids: (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        ),
        report: CopyReport::default(),
        links: HashMap::new(),
        deferred: Vec::new(),
    }
}

/// Rootless `--chown` (container ids, which the process may not chown to): the node stays
/// the user's — container 0:0 in the sandbox and to the layer writer — and the intended
/// owner goes into the owner override xattr, which the layer writer honours
/// (`kiln_fs::idmap`). False when nothing could be recorded (a symlink cannot carry
/// `user.*` xattrs, or the filesystem refused).
fn record_owner(root: &SafeRoot, p: &Path, owner: (u32, u32)) -> bool {
    if owner == (0, 0) {
        return true; // what the writer derives from the user's own ids anyway
    }
    let v = kiln_fs::idmap::format_owner(owner.0, owner.1);
    root.set_xattr(p, std::ffi::OsStr::new(kiln_fs::OWNER_XATTR), v.as_bytes())
        .is_ok()
}
