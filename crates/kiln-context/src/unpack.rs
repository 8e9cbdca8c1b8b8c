//! ADD's local archive auto-extraction. Like BuildKit, a source is an archive when its
//! *content* decodes (gzip, zstd, bzip2, xz or plain) to a tar with at least one valid
//! header — the file name does not matter, and anything else is copied as a plain file.
//!
//! bzip2 and xz are handled here rather than in kiln-archive: they are never layer
//! compressions, so an image layer in either must keep failing. Their output still goes
//! through the archive reader's limits (total bytes, entries, path length); only the
//! ratio check, which needs the compressed count, does not see them.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use kiln_archive::{
    apply_layer, read_entries, ApplyMode, ApplyOptions, DecodeLimits, DevicePolicy,
};
use kiln_fs::{OFlags, SafeRoot};

use crate::copy::Copier;
use crate::Error;

const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
/// xz's dictionary is chosen by the file; a hostile one must not make us allocate GiBs.
const XZ_MEMORY_LIMIT_KIB: u32 = 256 << 10;

fn open(root: &SafeRoot, p: &Path) -> Result<Box<dyn Read + Send>, kiln_fs::Error> {
    let mut f = root
        .open_file(p, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, 0)
        .map(BufReader::new)?;
    // A read error here resurfaces on the first read of the plain reader.
    let head = f.fill_buf().map(|b| b.to_vec()).unwrap_or_default();
    Ok(if head.starts_with(BZIP2_MAGIC) {
        Box::new(bzip2::read::MultiBzDecoder::new(f))
    } else if head.starts_with(XZ_MAGIC) {
        Box::new(lzma_rust2::XzReader::new_mem_limit(
            f,
            true,
            XZ_MEMORY_LIMIT_KIB,
        ))
    } else {
        Box::new(f)
    })
}

pub(crate) fn is_archive(root: &SafeRoot, p: &Path) -> bool {
    let Ok(f) = open(root, p) else { return false };
    let mut saw = false;
    // Stop after the first header: the callback's error ends the read early.
    let _ = read_entries(f, &DecodeLimits::default(), |_, _| {
        saw = true;
        Err(kiln_archive::Error::Malformed("probe done".into()))
    });
    saw
}

/// Extract the archive at `p` into the real directory `target` of the destination.
pub(crate) fn extract(
    root: &SafeRoot,
    p: &Path,
    shown: &str,
    dest_root: &SafeRoot,
    target: &Path,
    c: &mut Copier<'_>,
) -> Result<(), Error> {
    let err = |source| Error::Archive {
        path: shown.to_owned(),
        source,
    };
    // First pass: the names, so the report can list exactly what the archive wrote.
    let mut names: Vec<PathBuf> = Vec::new();
    read_entries(open(root, p)?, &DecodeLimits::default(), |h, _| {
        let base = h.path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !base.starts_with(kiln_archive::WHITEOUT_PREFIX) && !h.path.as_os_str().is_empty() {
            names.push(h.path.clone());
        }
        Ok(())
    })
    .map_err(err)?;
    let fd = dest_root.open_dir(target)?;
    let sub = SafeRoot::from_fd(fd, dest_root.resolver());
    let opts = ApplyOptions {
        preserve_owner: c.preserve_archive_owners(),
        id_map: None,
        devices: DevicePolicy::CreateOrSkip,
        limits: DecodeLimits::default(),
        mode: ApplyMode::Merge,
    };
    let stats = apply_layer(&sub, open(root, p)?, &opts).map_err(err)?;
    // An archive's `./` entry must not take back a destination dir this ADD created and
    // gave to --chown (BuildKit keeps it --chown's).
    if let Some((u, g)) = c.chown_opt() {
        if c.report.written.iter().any(|w| w == target) {
            c.chown(target, u, g)?;
        }
    }
    let mut all: Vec<PathBuf> = Vec::new();
    for n in &names {
        let mut anc = n.as_path();
        all.push(anc.to_path_buf());
        while let Some(parent) = anc.parent() {
            if parent.as_os_str().is_empty() {
                break;
            }
            all.push(parent.to_path_buf());
            anc = parent;
        }
    }
    all.sort();
    all.dedup();
    // The archive's own owners stay (BuildKit): --chown only reaches the destination
    // directories this ADD created (mkdir_parents), never the extracted entries.
    for n in &all {
        c.report.written.push(target.join(n));
    }
    c.report.files += stats.files;
    c.report.dirs += stats.dirs;
    c.report.symlinks += stats.symlinks;
    c.report.hardlinks += stats.hardlinks;
    c.report.bytes += stats.bytes;
    c.report.archives_unpacked += 1;
    Ok(())
}
