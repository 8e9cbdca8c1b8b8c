//! Transport policy: which registries may be spoken to over plain HTTP and which extra CA
//! certificates a registry's TLS is checked against.
//!
//! kiln's config file is `$XDG_CONFIG_HOME/kiln/config.json` (as root without
//! `XDG_CONFIG_HOME`: `/etc/kiln/config.json`; otherwise `~/.config/kiln/config.json`):
//! `{"insecureRegistries": ["host:port", ...]}`. CA certificates live in
//! `<config dir>/certs.d/HOST[:PORT]/*.crt`, and docker's `/etc/docker/certs.d` is honoured
//! too, so a machine set up for docker works unchanged.

use crate::error::{RegistryError, Result};
use std::path::{Path, PathBuf};

/// The system CA bundle the extra certificates are added to (Debian's path).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// Hosts (`host` or `host:port`) allowed over plain HTTP besides loopback.
    pub insecure: Vec<String>,
    /// Directories holding `HOST/*.crt`, searched in order.
    pub cert_dirs: Vec<PathBuf>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct FileConfig {
    #[serde(default)]
    insecure_registries: Vec<String>,
}

/// kiln's configuration directory.
pub fn config_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("kiln"));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/etc/kiln"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/kiln"))
}

impl Settings {
    /// Reads kiln's config file (a missing file is an empty config) and adds the hosts
    /// given with `--insecure-registry`.
    pub fn load(extra_insecure: &[String]) -> Result<Settings> {
        let dir = config_dir();
        let mut s = Settings::default();
        if let Some(dir) = &dir {
            let path = dir.join("config.json");
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let f: FileConfig =
                        serde_json::from_slice(&bytes).map_err(|e| RegistryError::Config {
                            path: path.display().to_string(),
                            message: e.to_string(),
                        })?;
                    s.insecure = f.insecure_registries;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RegistryError::Config {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
                }
            }
            s.cert_dirs.push(dir.join("certs.d"));
        }
        s.cert_dirs.push(PathBuf::from("/etc/docker/certs.d"));
        s.insecure.extend(extra_insecure.iter().cloned());
        Ok(s)
    }

    /// Plain HTTP is allowed for loopback and for hosts named insecure (with or without the
    /// port). Everything else is TLS only.
    pub fn allows_http(&self, host: &str) -> bool {
        let name = hostname(host);
        is_loopback(name)
            || self
                .insecure
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host) || h.eq_ignore_ascii_case(name))
    }

    /// The roots to verify `host` with: `None` (the platform's) unless a certs.d directory
    /// for it holds `*.crt` files, then the system bundle plus those.
    pub fn roots(&self, host: &str) -> Result<Option<Vec<ureq::tls::Certificate<'static>>>> {
        let mut extra = Vec::new();
        for dir in &self.cert_dirs {
            let d = dir.join(host);
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "crt"))
                .collect();
            files.sort();
            for f in files {
                extra.extend(read_certs(&f)?);
            }
        }
        if extra.is_empty() {
            return Ok(None);
        }
        let mut all = match std::fs::read(SYSTEM_BUNDLE) {
            Ok(_) => read_certs(Path::new(SYSTEM_BUNDLE))?,
            Err(_) => Vec::new(),
        };
        all.extend(extra);
        Ok(Some(all))
    }
}

fn read_certs(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>> {
    let err = |message: String| RegistryError::Certificate {
        path: path.display().to_string(),
        message,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| err(e.to_string()))? {
            ureq::tls::PemItem::Certificate(c) => out.push(c),
            _ => continue,
        }
    }
    if out.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(out)
}

/// `host` without its port (`[::1]:5000` → `[::1]`).
pub fn hostname(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

pub(crate) fn is_loopback(name: &str) -> bool {
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_for_loopback_and_named_hosts() {
        let s = Settings {
            insecure: vec!["reg.internal:5000".into(), "other.lan".into()],
            cert_dirs: vec![],
        };
        assert!(s.allows_http("localhost:5000"));
        assert!(s.allows_http("127.0.0.1:5001"));
        assert!(s.allows_http("[::1]:5000"));
        assert!(s.allows_http("reg.internal:5000"));
        assert!(s.allows_http("other.lan:443"));
        assert!(!s.allows_http("reg.internal:5001"));
        assert!(!s.allows_http("127.0.0.1.evil.com"));
        assert!(!s.allows_http("localhost.evil.com:5000"));
        assert!(!s.allows_http("docker.io"));
    }

    #[test]
    fn hostname_strips_port_only() {
        assert_eq!(hostname("a.b:5000"), "a.b");
        assert_eq!(hostname("a.b"), "a.b");
        assert_eq!(hostname("[::1]:5000"), "[::1]");
    }

    #[test]
    fn roots_from_certs_d() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            insecure: vec![],
            cert_dirs: vec![dir.path().to_path_buf()],
        };
        assert!(s.roots("r:1").unwrap().is_none());
        std::fs::create_dir_all(dir.path().join("r:1")).unwrap();
        std::fs::write(dir.path().join("r:1/ca.crt"), "not a cert").unwrap();
        let e = s.roots("r:1").unwrap_err().to_string();
        assert!(e.contains("ca.crt"), "{e}");
    }
}
