//! Docker-style image references.
//!
//! `busybox` normalises to `docker.io/library/busybox:latest`; the first path component is a
//! registry host only when it contains `.` or `:` or is `localhost` (docker's rule), so
//! `localhost:5000/a/b:tag` names registry `localhost:5000`. A reference may carry a tag, a
//! digest, or both (`name:tag@sha256:…`; the digest then decides what is fetched).

use crate::digest::{Digest, DigestError};
use std::fmt;
use std::str::FromStr;

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {input:?}: empty")]
    Empty { input: String },
    #[error("invalid image reference {input:?}: repository name must be lowercase")]
    Uppercase { input: String },
    #[error("invalid image reference {input:?}: bad path component {component:?} (allowed: lowercase letters, digits, and single separators . _ __ -)")]
    BadComponent { input: String, component: String },
    #[error("invalid image reference {input:?}: bad registry host {host:?}")]
    BadHost { input: String, host: String },
    #[error("invalid image reference {input:?}: bad tag {tag:?} (allowed: [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})")]
    BadTag { input: String, tag: String },
    #[error(
        "invalid image reference {input:?}: repository name longer than {MAX_NAME_LEN} characters"
    )]
    TooLong { input: String },
    #[error("invalid image reference {input:?}: {source}")]
    BadDigest { input: String, source: DigestError },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises; a reference with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_partial(input)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses without adding the default tag (e.g. for `kiln rmi name` matching).
    pub fn parse_partial(input: &str) -> Result<Self, ReferenceError> {
        let err_input = || input.to_string();
        if input.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        let (rest, digest) = match input.split_once('@') {
            Some((name, d)) => (
                name,
                Some(
                    Digest::parse(d).map_err(|source| ReferenceError::BadDigest {
                        input: err_input(),
                        source,
                    })?,
                ),
            ),
            None => (input, None),
        };
        // A tag is after the last ':' that follows the last '/', so `host:5000/x` is no tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::BadTag {
                    input: err_input(),
                    tag: t.to_string(),
                });
            }
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty { input: err_input() });
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest)
            }
            _ => (DEFAULT_REGISTRY.to_string(), name),
        };
        if !valid_host(&registry) {
            return Err(ReferenceError::BadHost {
                input: err_input(),
                host: registry,
            });
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase { input: err_input() });
        }
        for component in path.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::BadComponent {
                    input: err_input(),
                    component: component.to_string(),
                });
            }
        }
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DEFAULT_REGISTRY.to_string()
        } else {
            registry
        };
        let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong { input: err_input() });
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag {
                input: format!("{}:{tag}", self.name()),
                tag: tag.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    pub fn with_digest(&self, digest: Digest) -> Self {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }

    /// The short form users type: `busybox:latest` for docker.io/library, else the full name.
    pub fn familiar(&self) -> String {
        let name = if self.registry == DEFAULT_REGISTRY {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            self.name()
        };
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or any run of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_host(h: &str) -> bool {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        // IPv6 literal: [addr]:port
        match rest.split_once(']') {
            Some((addr, tail)) => {
                if addr.is_empty() || !addr.bytes().all(|c| c.is_ascii_hexdigit() || c == b':') {
                    return false;
                }
                (
                    None,
                    tail.strip_prefix(':')
                        .map(Some)
                        .unwrap_or(if tail.is_empty() { None } else { Some("x") }),
                )
            }
            None => return false,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(h), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
    }
    match host {
        None => true,
        Some(host) => {
            !host.is_empty()
                && host.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("user/app", "docker.io/user/app:latest"),
            ("index.docker.io/user/app:v1", "docker.io/user/app:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("quay.io/a/b-c__d.e:1.0-rc_1", "quay.io/a/b-c__d.e:1.0-rc_1"),
            ("[::1]:5000/app:x", "[::1]:5000/app:x"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.familiar(), format!("busybox:1@{D}"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "Busybox",
            "a//b",
            "a/",
            "-a",
            "a-",
            "a..b",
            "a___b",
            "busybox:",
            "busybox:-x",
            "busybox:a/b",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "host:port/x",
            "ex ample/x",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = "a".repeat(300);
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong { .. })
        ));
        assert!(matches!(
            Reference::parse("Busybox"),
            Err(ReferenceError::Uppercase { .. })
        ));
    }

    #[test]
    fn familiar_form() {
        assert_eq!(
            Reference::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x").unwrap().familiar(),
            "localhost:5000/x:latest"
        );
    }
}
