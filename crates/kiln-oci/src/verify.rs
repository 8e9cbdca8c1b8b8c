//! A reader that checks a blob against its descriptor (size and digest) while it is read.
//!
//! The three failure modes are distinct errors because they mean different things to a user:
//! a short blob is usually a truncated download, a long one a confused or hostile server, and a
//! wrong digest corrupted or substituted content.

use crate::digest::{Digest, DynHasher};
use std::io::{self, Read};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("blob {digest} is too short: expected {expected} bytes, got {actual}")]
    TooShort {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is too long: expected {expected} bytes, got more")]
    TooLong { digest: Digest, expected: u64 },
    #[error("blob content does not match its digest: expected {expected}, computed {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
}

impl From<VerifyError> for io::Error {
    fn from(e: VerifyError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Wraps a reader; yields at most `expected_size` bytes and fails at EOF unless size and digest
/// match. A caller that commits data must only do so after reading to EOF without error.
pub struct VerifyingReader<R> {
    inner: R,
    expected: Digest,
    expected_size: u64,
    read: u64,
    hasher: Option<DynHasher>,
}

impl<R: Read> VerifyingReader<R> {
    pub fn new(inner: R, expected: Digest, expected_size: u64) -> Self {
        let hasher = Some(expected.hasher());
        VerifyingReader {
            inner,
            expected,
            expected_size,
            read: 0,
            hasher,
        }
    }

    /// Check the final state; called automatically at EOF.
    fn finish(&mut self) -> Result<(), VerifyError> {
        if self.read < self.expected_size {
            return Err(VerifyError::TooShort {
                digest: self.expected.clone(),
                expected: self.expected_size,
                actual: self.read,
            });
        }
        if let Some(h) = self.hasher.take() {
            let actual = h.finish();
            if actual != self.expected {
                return Err(VerifyError::DigestMismatch {
                    expected: self.expected.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Reads the rest and verifies; use when the consumer may stop before EOF.
    pub fn verify_to_end(mut self) -> io::Result<u64> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.read)
    }

    pub fn bytes_read(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.read == self.expected_size {
            // Probe for trailing data: one extra byte means the blob is longer than declared.
            let mut probe = [0u8; 1];
            let n = loop {
                match self.inner.read(&mut probe) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n > 0 {
                return Err(VerifyError::TooLong {
                    digest: self.expected.clone(),
                    expected: self.expected_size,
                }
                .into());
            }
            self.finish()?;
            return Ok(0);
        }
        let room = (self.expected_size - self.read).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        if n == 0 {
            self.finish()?;
            return Ok(0);
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// Extracts a [`VerifyError`] from an `io::Error` produced by a [`VerifyingReader`].
pub fn as_verify_error(e: &io::Error) -> Option<&VerifyError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<VerifyError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(data: &[u8], digest: &Digest, size: u64) -> Result<Vec<u8>, VerifyError> {
        let mut r = VerifyingReader::new(data, digest.clone(), size);
        let mut out = Vec::new();
        match r.read_to_end(&mut out) {
            Ok(_) => Ok(out),
            Err(e) => Err(as_verify_error(&e).cloned().expect("verify error")),
        }
    }

    #[test]
    fn accepts_exact() {
        let d = Digest::of_bytes(b"hello");
        assert_eq!(run(b"hello", &d, 5).unwrap(), b"hello");
    }

    #[test]
    fn three_distinct_errors() {
        let d = Digest::of_bytes(b"hello");
        assert!(matches!(
            run(b"hell", &d, 5),
            Err(VerifyError::TooShort { actual: 4, .. })
        ));
        assert!(matches!(
            run(b"hello!", &d, 5),
            Err(VerifyError::TooLong { .. })
        ));
        assert!(matches!(
            run(b"jello", &d, 5),
            Err(VerifyError::DigestMismatch { .. })
        ));
    }

    #[test]
    fn empty_blob() {
        let d = Digest::of_bytes(b"");
        assert!(run(b"", &d, 0).unwrap().is_empty());
        assert!(matches!(run(b"x", &d, 0), Err(VerifyError::TooLong { .. })));
    }
}
