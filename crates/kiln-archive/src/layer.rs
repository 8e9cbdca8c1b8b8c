//! One pass from tar bytes to a stored layer: tar → compress → hash, with the
//! uncompressed digest (diff_id) taken before compression and the blob digest after.

use std::io::{self, Write};

use kiln_oci::{Digest, Sha256Writer};

use crate::{compress, write_tree, Compression, Encoder, Error, WriteOptions};

/// What a manifest and a config need to know about a written layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// Digest of the compressed blob (the manifest's layer digest).
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    pub uncompressed_size: u64,
    pub compression: Compression,
}

/// A `Write` sink for tar bytes that compresses and hashes on the way to `W`.
pub struct LayerWriter<W: Write> {
    inner: Sha256Writer<Encoder<Sha256Writer<W>>>,
    compression: Compression,
}

impl<W: Write> LayerWriter<W> {
    pub fn new(out: W, compression: Compression, level: Option<i32>) -> io::Result<Self> {
        let enc = compress(Sha256Writer::new(out), compression, level)?;
        Ok(LayerWriter {
            inner: Sha256Writer::new(enc),
            compression,
        })
    }

    /// Finish compression and return the sink with the layer's digests.
    pub fn finish(self) -> io::Result<(W, LayerDigests)> {
        let (enc, diff_id, uncompressed_size) = self.inner.finish();
        let (out, digest, size) = enc.finish()?.finish();
        Ok((
            out,
            LayerDigests {
                digest,
                size,
                diff_id,
                uncompressed_size,
                compression: self.compression,
            },
        ))
    }
}

impl<W: Write> Write for LayerWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Tar `root` deterministically, compress and hash it into `out`.
pub fn write_layer<W: Write>(
    root: &kiln_fs::SafeRoot,
    out: W,
    opts: &WriteOptions,
    compression: Compression,
    level: Option<i32>,
) -> Result<(W, LayerDigests), Error> {
    let lw =
        LayerWriter::new(out, compression, level).map_err(|e| Error::io("compressing layer", e))?;
    let lw = write_tree(root, lw, opts)?;
    lw.finish().map_err(|e| Error::io("compressing layer", e))
}
