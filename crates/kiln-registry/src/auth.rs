//! Credentials and authentication challenges.
//!
//! Credentials come from the auth file (`$REGISTRY_AUTH_FILE`, else `$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`) as docker reads it: `credHelpers[host]`, then `credsStore`,
//! then `auths[host]` (`auth` = base64 `user:password`, or `identitytoken`). `kiln login` and
//! `kiln logout` write where docker would: through `credHelpers[host]`, else `credsStore`
//! (`docker-credential-NAME store`/`erase`), else `auths`. Secrets never appear in `Debug`
//! output or errors; errors name the host, the helper and the file.

use crate::error::{RegistryError, Result};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A credential for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken {
        token: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credential::IdentityToken { .. } => write!(f, "IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    pub(crate) fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken { .. } => None,
        }
    }
}

/// The auth file kiln reads and `kiln login` writes.
pub fn auth_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The key docker uses for a host: Docker Hub is stored under its v1 URL.
fn auth_key(host: &str) -> String {
    if host == "docker.io" {
        "https://index.docker.io/v1/".to_string()
    } else {
        host.to_string()
    }
}

/// `https://host/v1/` → `host`: entries written by other tools carry scheme and path.
fn normalise_key(key: &str) -> String {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

fn read_json(path: &PathBuf) -> Result<Option<serde_json::Value>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RegistryError::AuthFile {
                path: path.display().to_string(),
                message: format!("not valid JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::AuthFile {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// Finds the credential for `host` (as written in references: `host[:port]`, `docker.io`).
pub fn lookup(host: &str) -> Result<Option<Credential>> {
    let Some(path) = auth_file() else {
        return Ok(None);
    };
    let Some(cfg) = read_json(&path)? else {
        return Ok(None);
    };
    let bad = |message: String| RegistryError::AuthFile {
        path: path.display().to_string(),
        message,
    };
    if let Some(helpers) = cfg.get("credHelpers").and_then(|v| v.as_object()) {
        for (k, v) in helpers {
            if normalise_key(k) == host {
                if let Some(name) = v.as_str() {
                    if let Some(c) = run_helper(name, host)? {
                        return Ok(Some(c));
                    }
                }
            }
        }
    }
    if let Some(name) = cfg.get("credsStore").and_then(|v| v.as_str()) {
        if !name.is_empty() {
            // The default store applies to every host, also ones that need no credentials:
            // a helper that is not installed must not break those, so it only falls through
            // to `auths` (a helper named for this very host in credHelpers stays an error).
            match run_helper(name, host) {
                Ok(Some(c)) => return Ok(Some(c)),
                Ok(None) => {}
                Err(e) if helper_missing(name) => {
                    tracing::warn!("{e}; using `auths` only");
                }
                Err(e) => return Err(e),
            }
        }
    }
    let Some(auths) = cfg.get("auths").and_then(|v| v.as_object()) else {
        return Ok(None);
    };
    for (k, v) in auths {
        if normalise_key(k) != host {
            continue;
        }
        if let Some(t) = v.get("identitytoken").and_then(|t| t.as_str()) {
            if !t.is_empty() {
                return Ok(Some(Credential::IdentityToken {
                    token: t.to_string(),
                }));
            }
        }
        if let Some(a) = v.get("auth").and_then(|a| a.as_str()) {
            if a.is_empty() {
                continue;
            }
            let raw = base64::engine::general_purpose::STANDARD
                .decode(a.trim())
                .map_err(|_| bad(format!("auths.{k}.auth is not base64")))?;
            let text =
                String::from_utf8(raw).map_err(|_| bad(format!("auths.{k}.auth is not UTF-8")))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad(format!("auths.{k}.auth is not user:password")))?;
            return Ok(Some(Credential::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    Ok(None)
}

fn helper_missing(name: &str) -> bool {
    let exe = format!("docker-credential-{name}");
    !std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&exe).is_file()))
}

/// What one run of a credential helper gave back.
struct HelperRun {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl HelperRun {
    /// Helpers answer a host they hold nothing for with a failure whose text says
    /// "credentials not found" (docker-credential-helpers' `ErrCredentialsNotFound`).
    fn not_found(&self) -> bool {
        let text = String::from_utf8_lossy(&self.stdout).to_string()
            + &String::from_utf8_lossy(&self.stderr);
        text.to_lowercase().contains("not found")
    }
}

fn helper_error(name: &str, host: &str, message: String) -> RegistryError {
    RegistryError::CredentialHelper {
        helper: name.to_string(),
        host: host.to_string(),
        message,
    }
}

/// Runs `docker-credential-NAME ACTION` with `input` on stdin. The input may hold a secret,
/// so it goes only to the helper's stdin, never into argv, the environment or an error.
fn run_helper_action(name: &str, host: &str, action: &str, input: &[u8]) -> Result<HelperRun> {
    let err = |message: String| helper_error(name, host, message);
    if name.contains('/') {
        return Err(err("helper names may not contain '/'".into()));
    }
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if helper_missing(name) {
                err(format!(
                    "it is not on PATH (the auth file's credsStore/credHelpers name it): {e}"
                ))
            } else {
                err(format!("cannot run it: {e}"))
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("cannot run it: {e}")))?;
    Ok(HelperRun {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// `docker-credential-NAME get`, server URL on stdin, JSON `{Username, Secret}` out.
fn run_helper(name: &str, host: &str) -> Result<Option<Credential>> {
    let err = |message: String| helper_error(name, host, message);
    let out = run_helper_action(name, host, "get", auth_key(host).as_bytes())?;
    if !out.status.success() {
        if out.not_found() {
            return Ok(None);
        }
        // The helper's own message could echo a secret; say only that it failed.
        return Err(err(format!("it failed ({})", out.status)));
    }
    #[derive(serde::Deserialize)]
    struct HelperOut {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let h: HelperOut = serde_json::from_slice(&out.stdout)
        .map_err(|_| err("its output is not the expected JSON".into()))?;
    if h.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if h.username == "<token>" {
        Credential::IdentityToken { token: h.secret }
    } else {
        Credential::Basic {
            username: h.username,
            password: h.secret,
        }
    }))
}

/// Where `kiln login` put, or `kiln logout` removed, a host's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialStore {
    /// `auths` in this auth file.
    File(PathBuf),
    /// A docker credential helper, by its NAME (`docker-credential-NAME`).
    Helper(String),
}

impl std::fmt::Display for CredentialStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialStore::File(p) => write!(f, "{}", p.display()),
            CredentialStore::Helper(name) => write!(f, "docker-credential-{name}"),
        }
    }
}

/// The helper docker writes `host`'s credentials with: `credHelpers[host]`, else
/// `credsStore`; `None` means the file's `auths`. An empty `credHelpers` entry pins the
/// host to the file even when `credsStore` is set, as in docker.
fn write_helper(cfg: &serde_json::Value, host: &str) -> Option<String> {
    if let Some(helpers) = cfg.get("credHelpers").and_then(|v| v.as_object()) {
        if let Some((_, v)) = helpers.iter().find(|(k, _)| normalise_key(k) == host) {
            return v.as_str().filter(|n| !n.is_empty()).map(str::to_string);
        }
    }
    cfg.get("credsStore")
        .and_then(|v| v.as_str())
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}

fn configured_helper(host: &str) -> Result<Option<String>> {
    let Some(path) = auth_file() else {
        return Ok(None);
    };
    Ok(read_json(&path)?.and_then(|cfg| write_helper(&cfg, host)))
}

/// `kiln login`: with a credential helper configured for `host` (`credHelpers`, else
/// `credsStore`), `docker-credential-NAME store`; otherwise `auths[host].auth` in the auth
/// file, atomically, mode 0600. Returns where the credentials went.
pub fn save_login(host: &str, username: &str, password: &str) -> Result<CredentialStore> {
    if let Some(name) = configured_helper(host)? {
        let input = serde_json::json!({
            "ServerURL": auth_key(host),
            "Username": username,
            "Secret": password,
        });
        let out = run_helper_action(&name, host, "store", input.to_string().as_bytes())?;
        if !out.status.success() {
            // Its output could echo what it was given; the secret stays out of errors.
            return Err(helper_error(
                &name,
                host,
                format!("storing the credentials failed ({})", out.status),
            ));
        }
        // As docker does: an empty `auths` entry remains (tools list the host as logged
        // in), and a plaintext secret an earlier file login left there is dropped.
        edit_auths(|auths| {
            auths.retain(|k, _| normalise_key(k) != host);
            auths.insert(auth_key(host), serde_json::json!({}));
            true
        })?;
        return Ok(CredentialStore::Helper(name));
    }
    let path = edit_auths(|auths| {
        let entry = serde_json::json!({
            "auth": base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
        });
        auths.retain(|k, _| normalise_key(k) != host);
        auths.insert(auth_key(host), entry);
        true
    })?;
    Ok(CredentialStore::File(path))
}

/// `kiln logout`: `docker-credential-NAME erase` when a helper is configured for `host`,
/// and the host's `auths` entry removed either way. Returns where credentials were
/// removed from (the helper first), `None` when there were none.
pub fn remove_login(host: &str) -> Result<Option<CredentialStore>> {
    let mut removed = None;
    if let Some(name) = configured_helper(host)? {
        let out = run_helper_action(&name, host, "erase", auth_key(host).as_bytes())?;
        if out.status.success() {
            removed = Some(CredentialStore::Helper(name));
        } else if !out.not_found() {
            return Err(helper_error(
                &name,
                host,
                format!("erasing the credentials failed ({})", out.status),
            ));
        }
    }
    let mut in_file = false;
    let path = edit_auths(|auths| {
        let before = auths.len();
        auths.retain(|k, _| normalise_key(k) != host);
        in_file = auths.len() != before;
        in_file
    })?;
    if removed.is_none() && in_file {
        removed = Some(CredentialStore::File(path));
    }
    Ok(removed)
}

fn edit_auths(
    f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> bool,
) -> Result<PathBuf> {
    let path = auth_file().ok_or_else(|| RegistryError::AuthFile {
        path: "~/.docker/config.json".into(),
        message: "HOME is not set; set REGISTRY_AUTH_FILE".into(),
    })?;
    let io_err = |e: std::io::Error| RegistryError::AuthFile {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut cfg = read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
    let obj = cfg.as_object_mut().ok_or_else(|| RegistryError::AuthFile {
        path: path.display().to_string(),
        message: "not a JSON object".into(),
    })?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut()
        .ok_or_else(|| RegistryError::AuthFile {
            path: path.display().to_string(),
            message: "`auths` is not an object".into(),
        })?;
    if !f(auths) {
        return Ok(path);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let bytes = serde_json::to_vec_pretty(&cfg).expect("JSON value serialises");
    kiln_fs::atomic::write_file_mode(&path, &bytes, 0o600).map_err(io_err)?;
    Ok(path)
}

/// One parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `basic` or `bearer`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses `Scheme k="v", k2=v2`. Quoted values may hold commas (scopes do).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = match header.find(char::is_whitespace) {
        Some(i) => (&header[..i], header[i..].trim_start()),
        None => (header, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(c) if *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return None;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_comma_in_scope() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert!(parse_challenge(r#"Bearer realm="unterminated"#).is_none());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credential::IdentityToken {
            token: "tok-secret".into(),
        };
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn write_helper_follows_docker_precedence() {
        let cfg = |v: serde_json::Value| v;
        let both = cfg(serde_json::json!({
            "credsStore": "desktop",
            "credHelpers": {"https://reg.example": "ecr", "pinned.example": ""},
        }));
        assert_eq!(write_helper(&both, "reg.example").as_deref(), Some("ecr"));
        assert_eq!(
            write_helper(&both, "other.example").as_deref(),
            Some("desktop")
        );
        assert_eq!(write_helper(&both, "pinned.example"), None);
        let none = cfg(serde_json::json!({"credsStore": "", "auths": {}}));
        assert_eq!(write_helper(&none, "reg.example"), None);
    }

    #[test]
    fn key_normalisation() {
        assert_eq!(normalise_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise_key("http://127.0.0.1:5001"), "127.0.0.1:5001");
        assert_eq!(normalise_key("reg.example"), "reg.example");
    }
}
