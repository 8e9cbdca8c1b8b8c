//! Content digests, parsed by the OCI image-spec grammar.
//!
//! ```text
//! digest     ::= algorithm ":" encoded
//! algorithm  ::= component (separator component)*
//! component  ::= [a-z0-9]+
//! separator  ::= [+._-]
//! encoded    ::= [a-zA-Z0-9=_-]+
//! ```
//! Only the registered algorithms `sha256` (64 lowercase hex) and `sha512` (128 lowercase
//! hex) are accepted: an unknown algorithm could not be verified, so it is refused early.

use sha2::{Digest as _, Sha256, Sha512};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {input:?}: missing ':' between algorithm and encoded part")]
    MissingSeparator { input: String },
    #[error("invalid digest {input:?}: malformed algorithm {algorithm:?}")]
    BadAlgorithm { input: String, algorithm: String },
    #[error("invalid digest {input:?}: unsupported algorithm {algorithm:?} (kiln verifies sha256 and sha512)")]
    UnknownAlgorithm { input: String, algorithm: String },
    #[error("invalid digest {input:?}: {algorithm} needs {expected} lowercase hex characters, found {found}")]
    WrongLength {
        input: String,
        algorithm: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("invalid digest {input:?}: encoded part must be lowercase hex (found {found:?})")]
    NotLowercaseHex { input: String, found: char },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest, e.g. `sha256:e3b0c442…`.
///
/// Construction always validates, so a `Digest` is safe to use as a path component
/// (`blobs/<algorithm>/<hex>`): it can never contain `/`, `.` or `..`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn parse(input: &str) -> Result<Self, DigestError> {
        let (alg, enc) = input
            .split_once(':')
            .ok_or_else(|| DigestError::MissingSeparator {
                input: input.to_string(),
            })?;
        let well_formed_alg = !alg.is_empty()
            && alg.split(['+', '.', '_', '-']).all(|c| {
                !c.is_empty()
                    && c.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !well_formed_alg {
            return Err(DigestError::BadAlgorithm {
                input: input.to_string(),
                algorithm: alg.to_string(),
            });
        }
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(DigestError::UnknownAlgorithm {
                    input: input.to_string(),
                    algorithm: other.to_string(),
                })
            }
        };
        if let Some(bad) = enc.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(DigestError::NotLowercaseHex {
                input: input.to_string(),
                found: bad,
            });
        }
        if enc.len() != algorithm.hex_len() {
            return Err(DigestError::WrongLength {
                input: input.to_string(),
                algorithm: algorithm.as_str(),
                expected: algorithm.hex_len(),
                found: enc.len(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: enc.to_string(),
        })
    }

    /// sha256 of a byte slice.
    pub fn of_bytes(data: &[u8]) -> Self {
        Digest::from_sha256(Sha256::digest(data).into())
    }

    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(bytes),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The encoded (hex) part, safe as a file name.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A fresh hasher of this digest's algorithm.
    pub fn hasher(&self) -> DynHasher {
        DynHasher::new(self.algorithm)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = DigestError;
    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, DigestError> {
        Digest::parse(d.as_ref())
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        // A validated kiln digest always satisfies oci-spec's weaker grammar.
        oci_spec::image::Digest::from_str(&d.to_string()).expect("validated digest")
    }
}

/// A hasher for either supported algorithm.
#[derive(Clone)]
pub enum DynHasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl DynHasher {
    pub fn new(alg: Algorithm) -> Self {
        match alg {
            Algorithm::Sha256 => DynHasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => DynHasher::Sha512(Sha512::new()),
        }
    }
    pub fn update(&mut self, data: &[u8]) {
        match self {
            DynHasher::Sha256(h) => h.update(data),
            DynHasher::Sha512(h) => h.update(data),
        }
    }
    pub fn finish(self) -> Digest {
        match self {
            DynHasher::Sha256(h) => Digest::from_sha256(h.finalize().into()),
            DynHasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

/// A `Write` adapter that hashes (sha256) and counts everything passing through it.
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: std::io::Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }
    /// Returns the inner writer, the digest and the byte count of what was written.
    pub fn finish(self) -> (W, Digest, u64) {
        (
            self.inner,
            Digest::from_sha256(self.hasher.finalize().into()),
            self.written,
        )
    }
}

impl<W: std::io::Write> std::io::Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_valid_and_round_trips() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of_bytes(b""), d);
    }

    #[test]
    fn rejects_by_grammar() {
        type Check = fn(&DigestError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("sha256", |e| {
                matches!(e, DigestError::MissingSeparator { .. })
            }),
            (":abc", |e| matches!(e, DigestError::BadAlgorithm { .. })),
            ("SHA256:00", |e| {
                matches!(e, DigestError::BadAlgorithm { .. })
            }),
            ("sha256+:00", |e| {
                matches!(e, DigestError::BadAlgorithm { .. })
            }),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", |e| {
                matches!(e, DigestError::UnknownAlgorithm { .. })
            }),
            ("sha256:abc", |e| {
                matches!(e, DigestError::WrongLength { .. })
            }),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                |e| matches!(e, DigestError::NotLowercaseHex { .. }),
            ),
            ("sha256:../../etc/passwd", |e| {
                matches!(e, DigestError::NotLowercaseHex { .. })
            }),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/x",
                |e| matches!(e, DigestError::NotLowercaseHex { .. }),
            ),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8550",
                |e| matches!(e, DigestError::WrongLength { .. }),
            ),
        ];
        for (input, check) in cases {
            let err = Digest::parse(input).expect_err(input);
            assert!(check(&err), "{input}: unexpected {err:?}");
        }
    }

    #[test]
    fn sha512_length() {
        let ok = format!("sha512:{}", "a".repeat(128));
        assert!(Digest::parse(&ok).is_ok());
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(64))).is_err());
    }

    #[test]
    fn writer_hashes_what_passes() {
        use std::io::Write;
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"hello").unwrap();
        let (buf, d, n) = w.finish();
        assert_eq!(buf, b"hello");
        assert_eq!(n, 5);
        assert_eq!(d, Digest::of_bytes(b"hello"));
    }
}
