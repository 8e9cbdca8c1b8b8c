//! Decode budgets. A layer is untrusted input that expands: a few kilobytes of gzip can
//! become terabytes, and a stream of tiny headers can become millions of inodes. Every
//! reader in this crate counts against these budgets and stops with a typed error.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::LimitExceeded;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Uncompressed bytes in one layer (tar headers included). `--max-layer-size`.
    pub max_total_bytes: u64,
    /// Uncompressed:compressed ratio, checked once `ratio_grace_bytes` were produced.
    /// `--max-decompression-ratio`.
    pub max_ratio: u64,
    /// Output allowed before the ratio is checked: small layers of zeros are legitimate
    /// and tell nothing about a bomb.
    pub ratio_grace_bytes: u64,
    /// Entries in one layer (extension headers not counted). `--max-layer-entries`.
    pub max_entries: u64,
    /// Bytes of an entry's path or link name. `--max-path-length`.
    pub max_path_len: usize,
    /// Total bytes of one entry's xattrs, and of one PAX header block (fixed).
    pub max_xattr_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_total_bytes: 64 << 30,
            max_ratio: 1000,
            ratio_grace_bytes: 16 << 20,
            max_entries: 2_000_000,
            max_path_len: 4096,
            max_xattr_bytes: 1 << 20,
        }
    }
}

impl DecodeLimits {
    /// No limits, for trusted input kiln wrote itself.
    pub fn unlimited() -> Self {
        DecodeLimits {
            max_total_bytes: u64::MAX,
            max_ratio: u64::MAX,
            ratio_grace_bytes: 0,
            max_entries: u64::MAX,
            max_path_len: usize::MAX,
            max_xattr_bytes: usize::MAX,
        }
    }

    pub(crate) fn total(&self, value: u64) -> LimitExceeded {
        LimitExceeded {
            limit: "max-layer-size",
            value,
            max: self.max_total_bytes,
            flag: Some("--max-layer-size"),
        }
    }
    pub(crate) fn ratio(&self, value: u64) -> LimitExceeded {
        LimitExceeded {
            limit: "max-decompression-ratio",
            value,
            max: self.max_ratio,
            flag: Some("--max-decompression-ratio"),
        }
    }
    pub(crate) fn entries(&self, value: u64) -> LimitExceeded {
        LimitExceeded {
            limit: "max-layer-entries",
            value,
            max: self.max_entries,
            flag: Some("--max-layer-entries"),
        }
    }
    pub(crate) fn path(&self, value: usize) -> LimitExceeded {
        LimitExceeded {
            limit: "max-path-length",
            value: value as u64,
            max: self.max_path_len as u64,
            flag: Some("--max-path-length"),
        }
    }
    pub(crate) fn xattr(&self, value: usize) -> LimitExceeded {
        LimitExceeded {
            limit: "max-xattr-bytes",
            value: value as u64,
            max: self.max_xattr_bytes as u64,
            flag: None,
        }
    }
}

/// Counts bytes pulled from the compressed source (shared with the limiter above it).
pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Enforces total-size and ratio budgets on decompressed output.
pub(crate) struct Limiter<R> {
    pub(crate) inner: R,
    pub(crate) produced: u64,
    /// `None` for uncompressed input, where a ratio means nothing.
    pub(crate) compressed: Option<Arc<AtomicU64>>,
    pub(crate) limits: DecodeLimits,
}

impl<R: Read> Read for Limiter<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.produced += n as u64;
        let l = &self.limits;
        if self.produced > l.max_total_bytes {
            return Err(io::Error::other(l.total(self.produced)));
        }
        if let Some(c) = &self.compressed {
            let c = c.load(Ordering::Relaxed).max(1);
            if self.produced > l.ratio_grace_bytes && self.produced / c > l.max_ratio {
                return Err(io::Error::other(l.ratio(self.produced / c)));
            }
        }
        Ok(n)
    }
}
