//! Normalised tar output. Every field is derived from [`EntryHeader`] alone (no host
//! user names, no atime/ctime, no pid in PAX header names), so equal headers and
//! contents give equal bytes.
//!
//! Format: ustar headers; a PAX `x` block carries what ustar cannot (names over 100
//! bytes, large ids/sizes, negative mtimes, xattrs as `SCHILY.xattr.*`). Oversized
//! numeric fields are also written base-256 so the header never disagrees with PAX.
//! Mode fields hold `mode & 0o7777`; the file type lives in the type flag only.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use crate::entry::{EntryHeader, EntryKind};
use crate::pax::push_record;
use crate::whiteout::{OPAQUE_MARKER, WHITEOUT_PREFIX};

const BLOCK: usize = 512;
const OCTAL8_MAX: u64 = 0o7777777;
const OCTAL12_MAX: u64 = 0o77777777777;

/// Writes tar entries one at a time (COPY and the differ know what they wrote).
pub struct TarBuilder<W: Write> {
    out: W,
    written: u64,
}

impl<W: Write> TarBuilder<W> {
    pub fn new(out: W) -> Self {
        TarBuilder { out, written: 0 }
    }

    /// Bytes of tar output so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Append an entry. `data` must yield exactly `h.size` bytes for regular files and
    /// is not read for other kinds. An empty path names the root (`./`).
    pub fn append(&mut self, h: &EntryHeader, data: &mut dyn Read) -> io::Result<()> {
        let mut name = if h.path.as_os_str().is_empty() {
            b".".to_vec()
        } else {
            h.path.as_os_str().as_bytes().to_vec()
        };
        if h.kind == EntryKind::Directory {
            name.push(b'/');
        }
        let mut pax = Vec::new();
        let mut hdr = tar::Header::new_ustar();
        if name.len() > 100 {
            push_record(&mut pax, b"path", &name);
        }
        set_bytes(&mut hdr.as_old_mut().name, &name);
        if let Some(link) = &h.link_name {
            let l = link.as_bytes();
            if l.len() > 100 {
                push_record(&mut pax, b"linkpath", l);
            }
            set_bytes(&mut hdr.as_old_mut().linkname, l);
        }
        let size = if h.kind == EntryKind::Regular {
            h.size
        } else {
            0
        };
        for (key, v, max) in [
            (&b"uid"[..], h.uid as u64, OCTAL8_MAX),
            (b"gid", h.gid as u64, OCTAL8_MAX),
            (b"size", size, OCTAL12_MAX),
        ] {
            if v > max {
                push_record(&mut pax, key, v.to_string().as_bytes());
            }
        }
        if h.mtime < 0 || h.mtime as u64 > OCTAL12_MAX {
            push_record(&mut pax, b"mtime", h.mtime.to_string().as_bytes());
        }
        for (k, v) in &h.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k.as_bytes());
            push_record(&mut pax, &key, v);
        }
        hdr.set_mode(h.mode & 0o7777);
        hdr.set_uid(h.uid as u64);
        hdr.set_gid(h.gid as u64);
        hdr.set_size(size);
        hdr.set_mtime(h.mtime.max(0) as u64);
        hdr.set_entry_type(match h.kind {
            EntryKind::Regular => tar::EntryType::Regular,
            EntryKind::Directory => tar::EntryType::Directory,
            EntryKind::Symlink => tar::EntryType::Symlink,
            EntryKind::Hardlink => tar::EntryType::Link,
            EntryKind::CharDevice => tar::EntryType::Char,
            EntryKind::BlockDevice => tar::EntryType::Block,
            EntryKind::Fifo => tar::EntryType::Fifo,
        });
        if matches!(h.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            hdr.set_device_major(h.dev_major)?;
            hdr.set_device_minor(h.dev_minor)?;
        }
        hdr.set_cksum();
        if !pax.is_empty() {
            self.pax_block(&name, &pax)?;
        }
        self.put(hdr.as_bytes())?;
        if size > 0 {
            let copied = io::copy(&mut data.take(size), &mut CountingWrite(self))?;
            if copied != size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{:?} shrank while archiving ({copied} of {size} bytes)",
                        h.path
                    ),
                ));
            }
            self.pad(size)?;
        }
        Ok(())
    }

    /// `.wh.<name>` in `dir`: deletes `name` from lower layers.
    pub fn append_whiteout(&mut self, dir: &std::path::Path, name: &OsStr) -> io::Result<()> {
        let mut n = WHITEOUT_PREFIX.as_bytes().to_vec();
        n.extend_from_slice(name.as_bytes());
        let h = marker(dir.join(OsStr::from_bytes(&n)));
        self.append(&h, &mut io::empty())
    }

    /// `.wh..wh..opq` in `dir`: hides all lower contents of `dir`.
    pub fn append_opaque(&mut self, dir: &std::path::Path) -> io::Result<()> {
        self.append(&marker(dir.join(OPAQUE_MARKER)), &mut io::empty())
    }

    /// Write the end-of-archive marker (two zero blocks) and return the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.put(&[0u8; 2 * BLOCK])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn pax_block(&mut self, name: &[u8], records: &[u8]) -> io::Result<()> {
        // A fixed directory name keeps the block reproducible (GNU tar puts its pid here).
        let base = name
            .rsplit(|b| *b == b'/')
            .find(|s| !s.is_empty())
            .unwrap_or(b".");
        let mut pname = b"PaxHeaders/".to_vec();
        pname.extend_from_slice(base);
        let mut hdr = tar::Header::new_ustar();
        set_bytes(&mut hdr.as_old_mut().name, &pname);
        hdr.set_mode(0o644);
        hdr.set_uid(0);
        hdr.set_gid(0);
        hdr.set_mtime(0);
        hdr.set_size(records.len() as u64);
        hdr.set_entry_type(tar::EntryType::XHeader);
        hdr.set_cksum();
        self.put(hdr.as_bytes())?;
        self.put(records)?;
        self.pad(records.len() as u64)
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % BLOCK as u64) as usize;
        if rem != 0 {
            self.put(&[0u8; BLOCK][..BLOCK - rem])?;
        }
        Ok(())
    }
}

struct CountingWrite<'a, W: Write>(&'a mut TarBuilder<W>);

impl<W: Write> Write for CountingWrite<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.out.write(buf)?;
        self.0.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.out.flush()
    }
}

/// Whiteout markers carry no metadata worth keeping; fixed values keep them
/// reproducible.
fn marker(path: std::path::PathBuf) -> EntryHeader {
    let mut h = EntryHeader::new(path, EntryKind::Regular);
    h.mode = 0;
    h
}

/// Fill a fixed-size header field, truncating (the PAX record carries the full value).
fn set_bytes(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
    field[n..].fill(0);
}
