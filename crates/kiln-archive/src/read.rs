//! Reading tar streams: headers parsed by the `tar` crate in raw mode, with GNU long
//! names and PAX records applied here so that every extension block is size-capped
//! before it is buffered (the crate's own handling reads them whole into memory).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::entry::{EntryHeader, EntryKind};
use crate::pax::{parse_records, parse_time, parse_u64};
use crate::{decompress, DecodeLimits, Error};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    pub entries: u64,
    /// Uncompressed bytes of the tar stream, padding included.
    pub tar_bytes: u64,
}

/// Decompress (auto-detected) and iterate a layer or rootfs tarball, calling `f` with
/// each entry's header and a reader over its content. Unread content is skipped.
pub fn read_entries<R, F>(reader: R, limits: &DecodeLimits, f: F) -> Result<ReadStats, Error>
where
    R: Read + Send,
    F: FnMut(&EntryHeader, &mut dyn Read) -> Result<(), Error>,
{
    let dec = decompress(reader, limits).map_err(|e| Error::io("reading layer", e))?;
    read_tar(dec, limits, f)
}

/// Iterate an uncompressed tar stream (callers add their own decoder, or none).
/// Enforces entry, path and xattr limits; byte limits belong to the decoder.
pub fn read_tar<R, F>(reader: R, limits: &DecodeLimits, mut f: F) -> Result<ReadStats, Error>
where
    R: Read,
    F: FnMut(&EntryHeader, &mut dyn Read) -> Result<(), Error>,
{
    let mut archive = tar::Archive::new(PositionReader {
        inner: reader,
        pos: 0,
    });
    let mut stats = ReadStats::default();
    {
        let entries = archive
            .entries()
            .map_err(|e| Error::io("reading tar", e))?
            .raw(true);
        let mut ext = Extensions::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::io("reading tar header", e))?;
            let et = entry.header().entry_type();
            let raw_path = || PathBuf::from(OsStr::from_bytes(&entry.header().path_bytes()));
            match et.as_byte() {
                b'L' => {
                    ext.long_name = Some(read_capped(&mut entry, limits.max_path_len + 1, |n| {
                        limits.path(n).into()
                    })?)
                }
                b'K' => {
                    ext.long_link = Some(read_capped(&mut entry, limits.max_path_len + 1, |n| {
                        limits.path(n).into()
                    })?)
                }
                b'x' => {
                    ext.pax = Some(read_capped(
                        &mut entry,
                        limits.max_xattr_bytes + 64 * 1024,
                        |n| limits.xattr(n).into(),
                    )?)
                }
                // Global headers would change the meaning of every later entry; kiln's
                // writers never emit them and images do not rely on them.
                b'g' => {
                    read_capped(&mut entry, limits.max_xattr_bytes + 64 * 1024, |n| {
                        limits.xattr(n).into()
                    })?;
                }
                b'V' => ext = Extensions::default(), // GNU volume label
                _ => {
                    stats.entries += 1;
                    if stats.entries > limits.max_entries {
                        return Err(limits.entries(stats.entries).into());
                    }
                    let header = build_header(&entry, std::mem::take(&mut ext), limits).map_err(
                        |e| match e {
                            Error::Unsupported { path, reason } if path.as_os_str().is_empty() => {
                                Error::Unsupported {
                                    path: raw_path(),
                                    reason,
                                }
                            }
                            e => e,
                        },
                    )?;
                    let mut body = (&mut entry).take(if header.kind == EntryKind::Regular {
                        header.size
                    } else {
                        0
                    });
                    f(&header, &mut body)?;
                }
            }
        }
        if ext.long_name.is_some() || ext.long_link.is_some() || ext.pax.is_some() {
            return Err(Error::Malformed(
                "extension header at the end of the archive with no entry".into(),
            ));
        }
    }
    // The crate stops at the first zero block. What follows must be zeros too (the second
    // block and record padding): anything else is a second archive or smuggled data.
    let mut rest = archive.into_inner();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = rest.pos;
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading tar trailer", e)),
        };
        if let Some(i) = buf[..n].iter().position(|b| *b != 0) {
            return Err(Error::TrailingGarbage {
                offset: start + i as u64,
            });
        }
    }
    stats.tar_bytes = rest.pos;
    Ok(stats)
}

/// Tracks the uncompressed offset for trailer diagnostics and stats.
struct PositionReader<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Read for PositionReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

fn read_capped<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    cap: usize,
    err: impl Fn(usize) -> Error,
) -> Result<Vec<u8>, Error> {
    let size = entry
        .header()
        .size()
        .map_err(|e| Error::io("reading tar header", e))?;
    if size > cap as u64 {
        return Err(err(size.min(usize::MAX as u64) as usize));
    }
    let mut v = Vec::with_capacity(size as usize);
    entry
        .take(size)
        .read_to_end(&mut v)
        .map_err(|e| Error::io("reading tar extension", e))?;
    Ok(v)
}

/// Some writers leave numeric fields blank (all NUL or spaces); read those as 0.
fn lenient(parsed: io::Result<u64>, raw: &[u8]) -> Option<u64> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Some(0),
        Err(_) => None,
    }
}

/// GNU long names are NUL-terminated; tolerate trailing NULs.
fn trim_nul(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

fn build_header<R: Read>(
    entry: &tar::Entry<'_, R>,
    ext: Extensions,
    limits: &DecodeLimits,
) -> Result<EntryHeader, Error> {
    let h = entry.header();
    let bad = |what: &str| Error::unsupported(PathBuf::new(), format!("invalid {what} field"));
    let mut path = ext
        .long_name
        .map(trim_nul)
        .unwrap_or_else(|| h.path_bytes().into_owned());
    let mut link = ext
        .long_link
        .map(trim_nul)
        .or_else(|| h.link_name_bytes().map(|c| c.into_owned()));
    let old = h.as_old();
    let mut uid = lenient(h.uid(), &old.uid).ok_or_else(|| bad("uid"))?;
    let mut gid = lenient(h.gid(), &old.gid).ok_or_else(|| bad("gid"))?;
    let size = lenient(h.size(), &old.size).ok_or_else(|| bad("size"))?;
    let mut mtime = (
        lenient(h.mtime(), &old.mtime).ok_or_else(|| bad("mtime"))? as i64,
        0u32,
    );
    let mut xattrs = Vec::new();
    let mut xattr_bytes = 0usize;
    if let Some(pax) = &ext.pax {
        for (k, v) in
            parse_records(pax).map_err(|e| Error::Malformed(format!("PAX header: {e}")))?
        {
            match k {
                b"path" => path = v.to_vec(),
                b"linkpath" => link = Some(v.to_vec()),
                b"uid" => uid = parse_u64(v).ok_or_else(|| bad("PAX uid"))?,
                b"gid" => gid = parse_u64(v).ok_or_else(|| bad("PAX gid"))?,
                b"mtime" => mtime = parse_time(v).ok_or_else(|| bad("PAX mtime"))?,
                b"size" => {
                    // Raw-mode parsing skips bodies by the header's size; a PAX size that
                    // disagrees would desynchronise the stream. Writers that need >8 GiB
                    // also set the base-256 header field, which agrees.
                    if parse_u64(v) != Some(size) {
                        return Err(Error::unsupported(
                            PathBuf::new(),
                            "PAX size differs from the header size field",
                        ));
                    }
                }
                _ => {
                    if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                        xattr_bytes += name.len() + v.len();
                        if xattr_bytes > limits.max_xattr_bytes {
                            return Err(limits.xattr(xattr_bytes).into());
                        }
                        xattrs.push((OsStr::from_bytes(name).to_os_string(), v.to_vec()));
                    }
                }
            }
        }
    }
    if path.len() > limits.max_path_len {
        return Err(limits.path(path.len()).into());
    }
    if let Some(l) = &link {
        if l.len() > limits.max_path_len {
            return Err(limits.path(l.len()).into());
        }
    }
    let shown = PathBuf::from(OsStr::from_bytes(&path));
    let kind = match h.entry_type().as_byte() {
        b'0' | b'\0' | b'7' => EntryKind::Regular,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'3' => EntryKind::CharDevice,
        b'4' => EntryKind::BlockDevice,
        b'5' => EntryKind::Directory,
        b'6' => EntryKind::Fifo,
        b'S' => {
            return Err(Error::unsupported(
                shown,
                "GNU sparse files are not supported",
            ))
        }
        t => {
            return Err(Error::unsupported(
                shown,
                format!("unknown entry type {:?}", t as char),
            ))
        }
    };
    // Old tars mark directories only by a trailing slash on a regular entry.
    let kind = if kind == EntryKind::Regular && path.ends_with(b"/") {
        EntryKind::Directory
    } else {
        kind
    };
    let clean = kiln_fs::normalize_bytes(&path)?;
    if matches!(kind, EntryKind::Symlink | EntryKind::Hardlink)
        && link.as_deref().is_none_or(|l| l.is_empty())
    {
        return Err(Error::unsupported(shown, "link entry without a target"));
    }
    let to_u32 = |v: u64, what: &str| {
        u32::try_from(v)
            .map_err(|_| Error::unsupported(shown.clone(), format!("{what} {v} out of range")))
    };
    let (dev_major, dev_minor) = match kind {
        EntryKind::CharDevice | EntryKind::BlockDevice => (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        ),
        _ => (0, 0),
    };
    xattrs.sort();
    Ok(EntryHeader {
        path: clean,
        kind,
        mode: lenient(h.mode().map(u64::from), &old.mode).ok_or_else(|| bad("mode"))? as u32
            & 0o7777,
        uid: to_u32(uid, "uid")?,
        gid: to_u32(gid, "gid")?,
        size: if kind == EntryKind::Regular { size } else { 0 },
        mtime: mtime.0,
        mtime_nsec: mtime.1,
        link_name: link.map(|l| OsStr::from_bytes(&l).to_os_string()),
        dev_major,
        dev_minor,
        xattrs,
    })
}
