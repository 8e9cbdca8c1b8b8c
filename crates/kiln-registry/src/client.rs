//! One registry host: scheme choice, authentication, retries and redirects around the
//! [`Transport`], and the distribution-spec calls built on them.
//!
//! Credential rules enforced here and nowhere else:
//! - an `Authorization` header is attached only to URLs on the registry's own host
//!   (redirects are followed by hand; a hop to another host goes without it);
//! - a bearer token realm must be on the registry's host name (another port of the same
//!   host is accepted: token servers often run beside the registry), else the flow stops
//!   with [`RegistryError::ForeignRealm`] before anything is sent there;
//! - plain HTTP only where [`Settings::allows_http`] says so, redirects included.

use crate::auth::{self, parse_challenge, Credential};
use crate::config::{hostname, Settings};
use crate::error::{RegistryError, Result};
use crate::transport::{Body, FailureKind, Request, Response, Transport, UreqTransport};
use kiln_oci::media;
use kiln_oci::Digest;
use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Manifests larger than this are refused (distribution's own limit is 4 MiB).
pub const DEFAULT_MAX_MANIFEST: u64 = 4 << 20;
const MAX_REDIRECTS: usize = 5;
const MAX_ERROR_BODY: u64 = 4096;

/// The Accept header for manifest GETs: every manifest kind kiln understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Retry policy for transient failures (connection resets, 5xx, 429).
#[derive(Debug, Clone)]
pub struct Retry {
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl Retry {
    pub(crate) fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(d) = retry_after {
            // Honour the server, but a hostile one must not park us for hours.
            return d.min(Duration::from_secs(60));
        }
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        exp.min(self.max_delay)
    }
}

/// Told a one-line message whenever a request is retried or redirected (progress output).
pub type RetryObserver = dyn Fn(&str) + Send + Sync;

pub struct Client {
    host: String,
    /// `docker.io` is served from `registry-1.docker.io`.
    endpoint_host: String,
    settings: Settings,
    transport: Arc<dyn Transport>,
    /// `https://host` or `http://host`, decided on first use.
    base: OnceLock<String>,
    credential: OnceLock<Option<Credential>>,
    /// Bearer tokens by the scope they were requested for.
    tokens: Mutex<HashMap<String, String>>,
    /// The registry asked for basic auth: send it pre-emptively from then on.
    basic: Mutex<bool>,
    pub retry: Retry,
    observer: Option<Arc<RetryObserver>>,
    /// Credential override (tests, `kiln login` verifying a new password).
    fixed_credential: Option<Option<Credential>>,
}

impl Client {
    /// A client for `host` (as in a reference: `host[:port]`, `docker.io`) over the real
    /// HTTP transport, with TLS roots from `settings`.
    pub fn new(host: &str, settings: &Settings) -> Result<Client> {
        let endpoint_host = endpoint_host(host);
        let roots = settings.roots(&endpoint_host)?;
        // Loopback registries are never reached through a proxy from the environment.
        let loopback = crate::config::is_loopback(hostname(host));
        let transport = Arc::new(UreqTransport::new(roots, !loopback));
        Ok(Client::with_transport(host, settings, transport))
    }

    pub fn with_transport(host: &str, settings: &Settings, transport: Arc<dyn Transport>) -> Self {
        Client {
            host: host.to_string(),
            endpoint_host: endpoint_host(host),
            settings: settings.clone(),
            transport,
            base: OnceLock::new(),
            credential: OnceLock::new(),
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
            retry: Retry::default(),
            observer: None,
            fixed_credential: None,
        }
    }

    /// Uses `cred` instead of the auth file (`kiln login` checks a password this way).
    pub fn with_credential(mut self, cred: Option<Credential>) -> Self {
        self.fixed_credential = Some(cred);
        self
    }

    /// Called with a short message each time a request is retried.
    pub fn with_observer(mut self, f: Arc<RetryObserver>) -> Self {
        self.observer = Some(f);
        self
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn credential(&self) -> Result<Option<Credential>> {
        if let Some(c) = &self.fixed_credential {
            return Ok(c.clone());
        }
        if let Some(c) = self.credential.get() {
            return Ok(c.clone());
        }
        let c = auth::lookup(&self.host)?;
        let _ = self.credential.set(c.clone());
        Ok(c)
    }

    fn note(&self, msg: &str) {
        tracing::debug!("{}: {msg}", self.host);
        if let Some(o) = &self.observer {
            o(msg);
        }
    }

    /// `https://host`, or `http://host` for a host allowed plain HTTP whose TLS handshake
    /// fails (docker's fallback for insecure registries).
    fn base(&self) -> Result<&str> {
        if let Some(b) = self.base.get() {
            return Ok(b);
        }
        let https = format!("https://{}", self.endpoint_host);
        let chosen = if self.settings.allows_http(&self.host) {
            let probe = self.transport.send(Request {
                method: "GET",
                url: format!("{https}/v2/"),
                headers: vec![],
                body: Body::Empty,
            });
            match probe {
                Ok(mut r) => {
                    drain(&mut r);
                    https
                }
                // A server that speaks TLS but whose certificate fails verification is a
                // TLS registry with an unknown CA: falling back to HTTP would only hide that.
                Err(e) if e.message.to_ascii_lowercase().contains("certificate") => https,
                Err(_) => format!("http://{}", self.endpoint_host),
            }
        } else {
            https
        };
        let _ = self.base.set(chosen);
        Ok(self.base.get().expect("just set"))
    }

    /// `/v2/...` → absolute URL; absolute URLs (Location headers) pass through, relative
    /// ones are resolved against the registry.
    pub(crate) fn url(&self, path: &str) -> Result<String> {
        if path.starts_with("http://") || path.starts_with("https://") {
            return Ok(path.to_string());
        }
        let base = self.base()?;
        if path.starts_with('/') {
            Ok(format!("{base}{path}"))
        } else {
            Ok(format!("{base}/{path}"))
        }
    }

    /// Is `url` on the registry's own host (scheme and port included in "host")?
    fn same_host(&self, url: &str) -> bool {
        url_authority(url).is_some_and(|a| a.eq_ignore_ascii_case(&self.endpoint_host))
    }

    fn auth_header(&self, scope: &str) -> Result<Option<String>> {
        if let Some(t) = self.tokens.lock().unwrap().get(scope) {
            return Ok(Some(format!("Bearer {t}")));
        }
        if *self.basic.lock().unwrap() {
            return Ok(self.credential()?.and_then(|c| c.basic_header()));
        }
        Ok(None)
    }

    /// Answers a 401: fetches a token for `scope` (or arms basic auth). Returns false when
    /// there is nothing new to try.
    fn authenticate(&self, resp: &Response, scope: &str) -> Result<bool> {
        let challenges: Vec<_> = resp
            .headers_named("www-authenticate")
            .filter_map(|h| {
                parse_challenge(h).or_else(|| {
                    tracing::debug!("unparsable challenge");
                    None
                })
            })
            .collect();
        if challenges.is_empty() {
            if let Some(h) = resp.header("www-authenticate") {
                return Err(RegistryError::BadChallenge {
                    host: self.host.clone(),
                    challenge: h.chars().take(200).collect(),
                });
            }
            return Ok(false);
        }
        if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            let token = self.fetch_token(&c.params, scope)?;
            self.tokens.lock().unwrap().insert(scope.to_string(), token);
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self.credential()?.and_then(|c| c.basic_header()).is_none() {
                return Ok(false);
            }
            // Another thread may have armed it already while this request was in flight;
            // the caller's one-retry rule keeps a wrong password from looping.
            *self.basic.lock().unwrap() = true;
            return Ok(true);
        }
        Ok(false)
    }

    fn fetch_token(
        &self,
        params: &std::collections::BTreeMap<String, String>,
        scope: &str,
    ) -> Result<String> {
        let realm = params
            .get("realm")
            .ok_or_else(|| RegistryError::BadChallenge {
                host: self.host.clone(),
                challenge: "Bearer without realm".into(),
            })?;
        let realm_authority = url_authority(realm).ok_or_else(|| RegistryError::BadChallenge {
            host: self.host.clone(),
            challenge: format!("realm {realm:?} is not an http(s) URL"),
        })?;
        if !realm_allowed(&self.host, &self.endpoint_host, realm_authority) {
            return Err(RegistryError::ForeignRealm {
                host: self.host.clone(),
                realm_host: realm_authority.to_string(),
            });
        }
        if realm.starts_with("http://") && !self.settings.allows_http(realm_authority) {
            return Err(RegistryError::InsecureRefused {
                host: self.host.clone(),
                target: realm_authority.to_string(),
            });
        }
        // The registry's own scope wins (it may name more than one repository, e.g. for a
        // cross-repository mount); ours is the fallback.
        let wanted = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| scope.to_string());
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(s) = params.get("service") {
            query.push(("service", s.clone()));
        }
        for s in wanted.split(' ').filter(|s| !s.is_empty()) {
            query.push(("scope", s.to_string()));
        }
        let cred = self.credential()?;
        let (method, url, headers, body) = match &cred {
            Some(Credential::IdentityToken { token }) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_string()),
                    ("refresh_token", token.clone()),
                    ("client_id", "kiln".to_string()),
                ];
                form.extend(query.iter().cloned());
                (
                    "POST",
                    realm.clone(),
                    vec![(
                        "Content-Type".to_string(),
                        "application/x-www-form-urlencoded".to_string(),
                    )],
                    encode_query(&form).into_bytes(),
                )
            }
            other => {
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", encode_query(&query));
                let headers = other
                    .as_ref()
                    .and_then(|c| c.basic_header())
                    .map(|h| vec![("Authorization".to_string(), h)])
                    .unwrap_or_default();
                ("GET", url, headers, Vec::new())
            }
        };
        let mut resp = self.send_raw(method, &url, &headers, &|| {
            Ok(if body.is_empty() {
                Body::Empty
            } else {
                Body::Bytes(body.clone())
            })
        })?;
        if resp.status == 401 || resp.status == 403 {
            drain(&mut resp);
            return Err(RegistryError::Unauthorized {
                host: self.host.clone(),
                path: "token realm".into(),
                detail: Some("the token server refused the credentials".into()),
            });
        }
        if !(200..300).contains(&resp.status) {
            let detail = error_detail(&mut resp);
            return Err(RegistryError::Status {
                host: self.host.clone(),
                method,
                path: "token realm".into(),
                status: resp.status,
                detail,
            });
        }
        let mut buf = Vec::new();
        resp.body
            .by_ref()
            .take(1 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| self.transport_err(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenResponse =
            serde_json::from_slice(&buf).map_err(|_| RegistryError::NoToken {
                host: self.host.clone(),
            })?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::NoToken {
                host: self.host.clone(),
            })
    }

    fn transport_err(&self, message: String) -> RegistryError {
        RegistryError::Transport {
            host: self.host.clone(),
            message,
        }
    }

    /// Sends with retries on transient failures, 429 and 5xx, following redirects by hand.
    /// No authentication. `body` is called once per attempt.
    fn send_raw(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(String, String)],
        body: &dyn Fn() -> Result<Body>,
    ) -> Result<Response> {
        self.send_inner(method, url, headers, body, None)
    }

    /// The one request loop: retries, redirects, and (with `auth`) the credential rules.
    fn send_inner(
        &self,
        method: &'static str,
        url: &str,
        headers: &[(String, String)],
        body: &dyn Fn() -> Result<Body>,
        auth: Option<&str>,
    ) -> Result<Response> {
        let mut url = url.to_string();
        let mut attempt = 0u32;
        let mut redirects = 0usize;
        let mut authed = false;
        loop {
            if url.starts_with("http://") {
                let a = url_authority(&url).unwrap_or("").to_string();
                if !self.settings.allows_http(&a) {
                    return Err(RegistryError::InsecureRefused {
                        host: self.host.clone(),
                        target: a,
                    });
                }
            }
            let mut h: Vec<(String, String)> = headers.to_vec();
            if let Some(scope) = auth {
                if self.same_host(&url) {
                    if let Some(v) = self.auth_header(scope)? {
                        h.push(("Authorization".into(), v));
                    }
                }
            }
            let req = Request {
                method,
                url: url.clone(),
                headers: h,
                body: body()?,
            };
            let resp = match self.transport.send(req) {
                Ok(r) => r,
                Err(e) if e.kind == FailureKind::Transient && attempt + 1 < self.retry.attempts => {
                    self.note(&format!("{method} failed ({}); retrying", e.message));
                    std::thread::sleep(self.retry.delay(attempt, None));
                    attempt += 1;
                    continue;
                }
                Err(e) if e.kind == FailureKind::Tls => {
                    let dir = crate::config::config_dir()
                        .map(|d| d.join("certs.d").display().to_string())
                        .unwrap_or_else(|| "<kiln config dir>/certs.d".into());
                    return Err(self.transport_err(format!(
                        "TLS: {} (a registry with its own CA needs it in {dir}/{}/ca.crt)",
                        e.message, self.endpoint_host
                    )));
                }
                Err(e) => return Err(self.transport_err(e.message)),
            };
            let mut resp = resp;
            let status = resp.status;
            if (status == 429 || (500..=599).contains(&status) && status != 501)
                && attempt + 1 < self.retry.attempts
            {
                let after = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                drain(&mut resp);
                self.note(&format!("{method} answered HTTP {status}; retrying"));
                std::thread::sleep(self.retry.delay(attempt, after));
                attempt += 1;
                continue;
            }
            if status == 401 && auth.is_some() && !authed && self.same_host(&url) {
                authed = true;
                let again = self.authenticate(&resp, auth.unwrap_or_default())?;
                drain(&mut resp);
                if again {
                    continue;
                }
                return Ok(resp);
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308) {
                let Some(loc) = resp.header("location").map(str::to_string) else {
                    return Ok(resp);
                };
                drain(&mut resp);
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(RegistryError::TooManyRedirects {
                        host: self.host.clone(),
                        path: strip_query(&url),
                    });
                }
                url = resolve_location(&url, &loc);
                self.note(&format!(
                    "redirected to {}",
                    url_authority(&url).unwrap_or("?")
                ));
                continue;
            }
            return Ok(resp);
        }
    }

    /// An authenticated request to this registry.
    pub(crate) fn request(
        &self,
        method: &'static str,
        path: &str,
        headers: &[(&str, &str)],
        scope: &str,
        body: &dyn Fn() -> Result<Body>,
    ) -> Result<Response> {
        let url = self.url(path)?;
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send_inner(method, &url, &headers, body, Some(scope))
    }

    /// Turns a non-success answer into an error naming the request.
    pub(crate) fn fail(
        &self,
        method: &'static str,
        path: &str,
        mut resp: Response,
    ) -> RegistryError {
        let detail = error_detail(&mut resp);
        if resp.status == 401 || resp.status == 403 {
            return RegistryError::Unauthorized {
                host: self.host.clone(),
                path: strip_query(path),
                detail,
            };
        }
        RegistryError::Status {
            host: self.host.clone(),
            method,
            path: strip_query(path),
            status: resp.status,
            detail,
        }
    }

    /// `GET /v2/` with credentials: what `kiln login` uses to check them.
    pub fn check_login(&self) -> Result<()> {
        let resp = self.request("GET", "/v2/", &[], "registry:catalog:*", &|| {
            Ok(Body::Empty)
        })?;
        if (200..300).contains(&resp.status) {
            return Ok(());
        }
        Err(self.fail("GET", "/v2/", resp))
    }

    /// Fetches a manifest by tag or digest, bounded by `limit`, checked against its
    /// Content-Type and (for digests) its digest. Returns (bytes, media type, digest).
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, String, Digest)> {
        let shown = format!(
            "{}/{repo}{}{reference}",
            self.host,
            if reference.contains(':') { "@" } else { ":" }
        );
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scope = pull_scope(repo);
        let mut resp = self.request(
            "GET",
            &path,
            &[("Accept", MANIFEST_ACCEPT)],
            &scope,
            &|| Ok(Body::Empty),
        )?;
        if resp.status == 404 {
            drain(&mut resp);
            return Err(RegistryError::NotFound {
                host: self.host.clone(),
                reference: shown,
            });
        }
        if !(200..300).contains(&resp.status) {
            return Err(self.fail("GET", &path, resp));
        }
        let too_large = || RegistryError::ManifestTooLarge {
            host: self.host.clone(),
            reference: shown.clone(),
            limit,
        };
        if resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > limit)
        {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        resp.body
            .by_ref()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.transport_err(format!("reading manifest {shown}: {e}")))?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        let bad = |message: String| RegistryError::BadManifest {
            host: self.host.clone(),
            reference: shown.clone(),
            message,
        };
        let media_type = manifest_media_type(&bytes, resp.header("content-type")).map_err(bad)?;
        let digest = match Digest::parse(reference) {
            Ok(want) => {
                let mut h = want.hasher();
                h.update(&bytes);
                let actual = h.finish();
                if actual != want {
                    return Err(RegistryError::DigestMismatch {
                        reference: shown,
                        expected: want,
                        actual,
                    });
                }
                actual
            }
            Err(_) => Digest::of_bytes(&bytes),
        };
        if let Some(d) = resp.header("docker-content-digest") {
            if let Ok(d) = Digest::parse(d.trim()) {
                if d.algorithm() == digest.algorithm() && d != digest {
                    return Err(bad(format!(
                        "Docker-Content-Digest says {d} but the content hashes to {digest}"
                    )));
                }
            }
        }
        Ok((bytes, media_type, digest))
    }

    /// `HEAD` a blob: its size when the registry has it.
    pub fn blob_exists(&self, repo: &str, digest: &Digest, scope: &str) -> Result<Option<u64>> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let mut resp = self.request("HEAD", &path, &[], scope, &|| Ok(Body::Empty))?;
        drain(&mut resp);
        match resp.status {
            200..=299 => Ok(Some(
                resp.header("content-length")
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0),
            )),
            404 => Ok(None),
            _ => Err(self.fail("HEAD", &path, resp)),
        }
    }

    /// `GET` a blob; the caller streams and verifies the body.
    /// `from`: resume at this byte offset (`Range`); the answer is 206 if the registry
    /// honoured it, 200 with the whole blob if not.
    pub fn get_blob(&self, repo: &str, digest: &Digest, from: u64) -> Result<Response> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let range = format!("bytes={from}-");
        let headers: &[(&str, &str)] = if from > 0 { &[("Range", &range)] } else { &[] };
        let mut resp = self.request("GET", &path, headers, &pull_scope(repo), &|| {
            Ok(Body::Empty)
        })?;
        if resp.status == 404 {
            drain(&mut resp);
            return Err(RegistryError::NotFound {
                host: self.host.clone(),
                reference: format!("{}/{repo}@{digest}", self.host),
            });
        }
        if !(200..300).contains(&resp.status) {
            return Err(self.fail("GET", &path, resp));
        }
        Ok(resp)
    }

    /// `PUT` a manifest under a tag or digest; returns the digest of the bytes sent.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.request(
            "PUT",
            &path,
            &[("Content-Type", media_type)],
            &push_scope(repo),
            &|| Ok(Body::Bytes(bytes.to_vec())),
        )?;
        if !(200..300).contains(&resp.status) {
            return Err(self.fail("PUT", &path, resp));
        }
        let mut resp = resp;
        drain(&mut resp);
        Ok(Digest::of_bytes(bytes))
    }
}

/// A token realm may be on the registry's host name (any port). The one exception is
/// Docker Hub, whose registry (`registry-1.docker.io`) has always sent clients to
/// `auth.docker.io`; that pair is fixed here rather than trusted from the challenge.
fn realm_allowed(host: &str, endpoint_host: &str, realm_authority: &str) -> bool {
    let realm = hostname(realm_authority);
    realm.eq_ignore_ascii_case(hostname(endpoint_host))
        || (host == "docker.io" && realm.eq_ignore_ascii_case("auth.docker.io"))
}

pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

fn endpoint_host(host: &str) -> String {
    if host == "docker.io" {
        "registry-1.docker.io".to_string()
    } else {
        host.to_string()
    }
}

/// Decides a manifest's media type from the JSON's `mediaType` and the Content-Type
/// header. A manifest type in the header that contradicts the JSON is refused: the two
/// disagreeing is how a confused or hostile registry makes a client misread a document.
pub(crate) fn manifest_media_type(
    bytes: &[u8],
    content_type: Option<&str>,
) -> std::result::Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        schema_version: Option<i64>,
        config: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        manifests: Option<serde_json::Value>,
    }
    let p: Probe =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON manifest: {e}"))?;
    if p.schema_version != Some(2) {
        return Err(format!(
            "schemaVersion {} is not supported (only 2)",
            p.schema_version.map_or("missing".into(), |v| v.to_string())
        ));
    }
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| media::manifest_kind(c).is_some());
    let body = p.media_type.filter(|m| !m.is_empty());
    let chosen = match (&header, &body) {
        (Some(h), Some(b)) if h != b => {
            return Err(format!(
                "its mediaType {b:?} contradicts the Content-Type {h:?} the registry sent"
            ))
        }
        (_, Some(b)) => b.clone(),
        (Some(h), None) => h.clone(),
        (None, None) => {
            if p.manifests.is_some() {
                media::OCI_INDEX.to_string()
            } else if p.config.is_some() && p.layers.is_some() {
                media::OCI_MANIFEST.to_string()
            } else {
                return Err("no mediaType and not shaped like a manifest or index".into());
            }
        }
    };
    let kind = media::manifest_kind(&chosen)
        .ok_or_else(|| format!("media type {chosen:?} is not an image manifest or index"))?;
    let shape_ok = match kind {
        media::ManifestKind::Index => p.manifests.is_some(),
        media::ManifestKind::Manifest => p.config.is_some(),
    };
    if !shape_ok {
        return Err(format!("its content is not shaped like a {chosen}"));
    }
    Ok(chosen)
}

/// Reads and discards what is left of a body (bounded), so the connection can be reused.
pub(crate) fn drain(resp: &mut Response) {
    let _ = std::io::copy(&mut resp.body.by_ref().take(1 << 20), &mut std::io::sink());
}

/// The registry's error JSON (`errors[].code/message`), first few, bounded.
fn error_detail(resp: &mut Response) -> Option<String> {
    let mut buf = Vec::new();
    let _ = resp
        .body
        .by_ref()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut buf);
    #[derive(serde::Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Errs {
        errors: Vec<E>,
    }
    let errs: Errs = serde_json::from_slice(&buf).ok()?;
    let parts: Vec<String> = errs
        .errors
        .iter()
        .take(3)
        .map(|e| {
            let s = format!(
                "{} {}",
                e.code.as_deref().unwrap_or(""),
                e.message.as_deref().unwrap_or("")
            );
            s.trim().chars().take(200).collect()
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `scheme://authority/...` → `authority`.
pub(crate) fn url_authority(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    // userinfo@host would let "registry@evil" pass a prefix check; refuse it outright.
    if auth.contains('@') || auth.is_empty() {
        return None;
    }
    Some(auth)
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_string()
}

/// Resolves a Location header against the URL that returned it.
pub(crate) fn resolve_location(base: &str, loc: &str) -> String {
    if loc.starts_with("http://") || loc.starts_with("https://") {
        return loc.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let auth_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    if let Some(rest) = loc.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    if loc.starts_with('/') {
        return format!("{}{loc}", &base[..auth_end]);
    }
    let path = strip_query(base);
    let dir = path.rfind('/').map_or(path.len(), |i| i + 1);
    format!("{}{loc}", &path[..dir.max(auth_end)])
}

pub(crate) fn encode_query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent(k), percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_contradiction_is_refused() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let e = manifest_media_type(m, Some(media::DOCKER_MANIFEST)).unwrap_err();
        assert!(e.contains("contradicts"), "{e}");
        assert_eq!(
            manifest_media_type(m, Some("application/json")).unwrap(),
            media::OCI_INDEX
        );
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(bare, Some(media::DOCKER_MANIFEST)).unwrap(),
            media::DOCKER_MANIFEST
        );
        assert_eq!(
            manifest_media_type(bare, None).unwrap(),
            media::OCI_MANIFEST
        );
        // Header says manifest, body has the index shape only.
        let e = manifest_media_type(
            br#"{"schemaVersion":2,"manifests":[]}"#,
            Some(media::OCI_MANIFEST),
        )
        .unwrap_err();
        assert!(e.contains("not shaped"), "{e}");
        assert!(manifest_media_type(br#"{"schemaVersion":1}"#, None).is_err());
    }

    #[test]
    fn authority_and_locations() {
        assert_eq!(url_authority("https://a:5000/v2/"), Some("a:5000"));
        assert_eq!(url_authority("http://a"), Some("a"));
        assert_eq!(url_authority("https://user@evil/x"), None);
        assert_eq!(url_authority("ftp://a"), None);
        assert_eq!(
            resolve_location(
                "http://a:1/v2/r/blobs/uploads/",
                "/v2/r/blobs/uploads/u?x=1"
            ),
            "http://a:1/v2/r/blobs/uploads/u?x=1"
        );
        assert_eq!(
            resolve_location("http://a:1/v2/x", "https://b/y"),
            "https://b/y"
        );
        assert_eq!(resolve_location("http://a:1/v2/x", "//c/z"), "http://c/z");
        assert_eq!(
            resolve_location("http://a:1/v2/x?q", "y"),
            "http://a:1/v2/y"
        );
    }

    #[test]
    fn retry_delay_honours_retry_after_with_a_cap() {
        let r = Retry::default();
        assert_eq!(
            r.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            r.delay(0, Some(Duration::from_secs(9999))),
            Duration::from_secs(60)
        );
        assert!(r.delay(10, None) <= r.max_delay);
        assert!(r.delay(1, None) > r.delay(0, None));
    }

    #[test]
    fn token_realm_must_be_on_the_registry_host() {
        assert!(realm_allowed(
            "127.0.0.1:5002",
            "127.0.0.1:5002",
            "127.0.0.1:5003"
        ));
        assert!(!realm_allowed(
            "127.0.0.1:5002",
            "127.0.0.1:5002",
            "localhost:5003"
        ));
        assert!(!realm_allowed(
            "reg.example",
            "reg.example",
            "reg.example.evil.com"
        ));
        assert!(realm_allowed(
            "docker.io",
            "registry-1.docker.io",
            "auth.docker.io"
        ));
        assert!(!realm_allowed(
            "reg.example",
            "reg.example",
            "auth.docker.io"
        ));
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode_query(&[("scope", "repository:a/b:pull,push".into())]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
