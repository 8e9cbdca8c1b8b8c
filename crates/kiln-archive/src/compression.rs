//! gzip / zstd / plain, detected by magic bytes, with budgets on the decoding side and
//! byte-for-byte reproducible output on the encoding side.

use std::io::{self, Cursor, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kiln_oci::media::Compression;

use crate::limits::{CountingReader, Limiter};
use crate::DecodeLimits;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Classify a stream by its first bytes (at least 4 for zstd). Anything unknown is
/// treated as plain tar, whose parser then rejects it if it is not one.
pub fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// A decompressing reader that enforces [`DecodeLimits`] on what it produces.
pub struct Decoder<'a> {
    inner: Limiter<Box<dyn Read + Send + 'a>>,
    compressed: Arc<AtomicU64>,
    kind: Compression,
}

impl Decoder<'_> {
    pub fn compression(&self) -> Compression {
        self.kind
    }
    /// Uncompressed bytes produced so far.
    pub fn bytes_out(&self) -> u64 {
        self.inner.produced
    }
    /// Compressed bytes consumed so far (read-ahead included).
    pub fn bytes_in(&self) -> u64 {
        self.compressed.load(Ordering::Relaxed)
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// Wrap `reader` in a decoder, choosing gzip/zstd/plain by magic bytes. The magic wins
/// over any media type: mislabelled layers (Docker "tar.gzip" types holding plain tar)
/// are common, and a tar never starts with those bytes. Callers that care about the
/// label compare it with [`Decoder::compression`].
pub fn decompress<'a, R: Read + Send + 'a>(
    mut reader: R,
    limits: &DecodeLimits,
) -> io::Result<Decoder<'a>> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match reader.read(&mut prefix[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    let kind = detect(&prefix[..got]);
    let compressed = Arc::new(AtomicU64::new(0));
    let src = CountingReader {
        inner: Cursor::new(prefix[..got].to_vec()).chain(reader),
        count: compressed.clone(),
    };
    let inner: Box<dyn Read + Send + 'a> = match kind {
        Compression::None => Box::new(src),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(src)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(src)?),
    };
    let ratio_source = (kind != Compression::None).then(|| compressed.clone());
    Ok(Decoder {
        inner: Limiter {
            inner,
            produced: 0,
            compressed: ratio_source,
            limits: limits.clone(),
        },
        compressed,
        kind,
    })
}

/// A compressing writer with deterministic output for a given input and level.
pub enum Encoder<W: Write> {
    None(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// Start compressing into `out`. `level` `None` picks gzip 6 / zstd 3, the levels
/// other builders use, so digests can match theirs for identical tars.
pub fn compress<W: Write>(out: W, kind: Compression, level: Option<i32>) -> io::Result<Encoder<W>> {
    Ok(match kind {
        Compression::None => Encoder::None(out),
        Compression::Gzip => {
            let level = flate2::Compression::new(level.unwrap_or(6).clamp(0, 9) as u32);
            // No name, mtime 0 and OS "unknown" (255): the header then depends on
            // nothing but the level, like Go's compress/gzip output.
            Encoder::Gzip(
                flate2::GzBuilder::new()
                    .mtime(0)
                    .operating_system(255)
                    .write(out, level),
            )
        }
        Compression::Zstd => {
            Encoder::Zstd(zstd::stream::write::Encoder::new(out, level.unwrap_or(3))?)
        }
    })
}

impl<W: Write> Encoder<W> {
    /// Flush the compressed trailer and return the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::None(w) => Ok(w),
            Encoder::Gzip(g) => g.finish(),
            Encoder::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(w) => w.write(buf),
            Encoder::Gzip(g) => g.write(buf),
            Encoder::Zstd(z) => z.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::None(w) => w.flush(),
            Encoder::Gzip(g) => g.flush(),
            Encoder::Zstd(z) => z.flush(),
        }
    }
}
