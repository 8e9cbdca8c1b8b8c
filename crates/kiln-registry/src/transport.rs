//! The HTTP seam: one request in, one response out, no redirects followed, no status turned
//! into an error. Everything registry-specific (auth, retries, redirects, verification)
//! lives above it in [`crate::client`], so unit tests can script a transport and the real
//! one stays a thin wrapper over `ureq`.

use std::io::Read;
use std::time::Duration;

/// A request body. Readers are consumed once; the client rebuilds the request (reopening
/// the blob) for every retry.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    Reader {
        reader: Box<dyn Read + Send>,
        len: u64,
    },
}

pub struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Streamed; never buffered whole by the transport.
    pub body: Box<dyn Read + Send>,
}

impl Response {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header (WWW-Authenticate may repeat).
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TLS handshake or certificate failure: retrying will not help; for an insecure-allowed
    /// host it means "try plain HTTP".
    Tls,
    /// Name resolution or a malformed URL: permanent.
    Permanent,
    /// Connection refused/reset, timeouts, truncated responses: worth a retry.
    Transient,
}

#[derive(Debug, Clone)]
pub struct TransportError {
    pub kind: FailureKind,
    pub message: String,
}

pub trait Transport: Send + Sync {
    fn send(&self, req: Request) -> Result<Response, TransportError>;
}

/// `ureq` with automatic redirects off (credentials must not follow a redirect to another
/// host, so the client follows them itself) and HTTP statuses returned, not raised.
pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// `roots`: trust exactly these certificates (the system bundle plus a registry's own
    /// CA); `None` uses the platform verifier. `proxy`: false for loopback registries, which
    /// must never be reached through an HTTP proxy from the environment.
    pub fn new(roots: Option<Vec<ureq::tls::Certificate<'static>>>, proxy: bool) -> Self {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(match roots {
                Some(certs) => ureq::tls::RootCerts::new_with_certs(&certs),
                None => ureq::tls::RootCerts::PlatformVerifier,
            })
            .build();
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls)
            .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)));
        if !proxy {
            cfg = cfg.proxy(None);
        }
        UreqTransport {
            agent: ureq::Agent::new_with_config(cfg.build()),
        }
    }
}

fn classify(e: &ureq::Error) -> FailureKind {
    match e {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => FailureKind::Tls,
        ureq::Error::BadUri(_) | ureq::Error::HostNotFound | ureq::Error::Http(_) => {
            FailureKind::Permanent
        }
        // A plain-HTTP server answering a TLS ClientHello shows up as a protocol error or
        // an I/O error mentioning the handshake; the caller decides what that means.
        ureq::Error::Io(io) => {
            let m = io.to_string().to_ascii_lowercase();
            if m.contains("certificate") || m.contains("tls") || m.contains("handshake") {
                FailureKind::Tls
            } else {
                FailureKind::Transient
            }
        }
        _ => FailureKind::Transient,
    }
}

impl Transport for UreqTransport {
    fn send(&self, req: Request) -> Result<Response, TransportError> {
        let err = |e: ureq::Error| TransportError {
            kind: classify(&e),
            message: e.to_string(),
        };
        let mut b = ureq::http::Request::builder()
            .method(req.method)
            .uri(&req.url);
        let has_len = req
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let perm = |m: String| TransportError {
            kind: FailureKind::Permanent,
            message: m,
        };
        let result = match req.body {
            Body::Empty => {
                // Registries want an explicit zero length on body-less PUT/POST/PATCH.
                if req.method != "GET" && req.method != "HEAD" && !has_len {
                    b = b.header("Content-Length", "0");
                }
                let r = b.body(()).map_err(|e| perm(e.to_string()))?;
                self.agent.run(r)
            }
            Body::Bytes(bytes) => {
                let r = b.body(bytes).map_err(|e| perm(e.to_string()))?;
                self.agent.run(r)
            }
            Body::Reader { reader, len } => {
                if !has_len {
                    b = b.header("Content-Length", len.to_string());
                }
                let r = b
                    .body(ureq::SendBody::from_owned_reader(reader))
                    .map_err(|e| perm(e.to_string()))?;
                self.agent.run(r)
            }
        };
        let resp = result.map_err(err)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = resp.into_body().into_reader();
        Ok(Response {
            status,
            headers,
            body: Box::new(body),
        })
    }
}
