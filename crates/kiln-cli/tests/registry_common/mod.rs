//! Helpers for the registry tests: the real test registries (started by
//! scripts/registry.sh when they are not running), unique repository names, a scripted HTTP
//! server for hostile answers, and a fault-injecting TCP proxy.

#![allow(dead_code)]

use crate::common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub const PLAIN: &str = "localhost:5100";
pub const TLS: &str = "127.0.0.1:5101";
pub const USER: &str = "kiln";
pub const PASSWORD: &str = "kiln-secret";

/// Starts the test registries if needed (idempotent) and returns their state directory
/// (holding `ca.crt`). `None` (skip) when docker-registry is not installed outside CI.
pub fn registries() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if !need("docker-registry") || !need("openssl") || !need("curl") {
            return None;
        }
        let out = sh_ok(Command::new("bash").arg(workspace().join("scripts/registry.sh")));
        Some(PathBuf::from(
            out.trim().lines().last().expect("registry dir"),
        ))
    })
    .clone()
}

/// A repository name no other test (or earlier run) uses.
pub fn repo(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "kt{}x{:x}x{}/{name}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `skopeo inspect` of an image in a test registry (TLS checked with the test CA).
pub fn skopeo_inspect(image: &str, extra: &[&str]) -> serde_json::Value {
    let mut c = Command::new("skopeo");
    c.arg("inspect");
    if image.starts_with(PLAIN) {
        c.arg("--tls-verify=false");
    }
    c.args(extra).arg(format!("docker://{image}"));
    let out = sh_ok(&mut c);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo inspect {image}: {e}: {out}"))
}

/// The manifest digest the store holds for `r` (the index.json entry's digest).
pub fn stored_digest(env: &Env, r: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&env.ok(&["images", "--format", "json", "--no-trunc"])).unwrap();
    let full = if r.contains('/') {
        r.to_string()
    } else {
        format!("docker.io/library/{r}")
    };
    let full = if full.rsplit('/').next().unwrap().contains(':') {
        full
    } else {
        format!("{full}:latest")
    };
    v.as_array()
        .unwrap()
        .iter()
        .find(|i| i["reference"].as_str() == Some(full.as_str()))
        .unwrap_or_else(|| panic!("{full} not in images: {v:#}"))["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

// ---------------------------------------------------------------------------------------
// A scripted HTTP/1.1 server: one request per connection, answers from a closure, records
// every request it saw.

#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this many body bytes (Content-Length still says all).
    pub cut: Option<usize>,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: vec![],
            cut: None,
        }
    }
    pub fn cut_after(mut self, n: usize) -> Reply {
        self.cut = Some(n);
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Reply {
        self.body = b.into();
        self
    }
}

pub struct Scripted {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Scripted {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        Scripted::start_on("127.0.0.1:0", handler)
    }

    pub fn start_on(
        addr: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Scripted {
        Scripted::try_start_on(addr, handler).unwrap_or_else(|| panic!("bind {addr}"))
    }

    /// [`Scripted::start_on`], or None when `addr` cannot be bound (one bind, no probe
    /// that another process could race).
    pub fn try_start_on(
        addr: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Option<Scripted> {
        let listener = TcpListener::bind(addr).ok()?;
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(mut s) = conn else { continue };
                    let seen = seen.clone();
                    let handler = handler.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let Some(req) = read_request(&mut s) else {
                            return;
                        };
                        seen.lock().unwrap().push(req.clone());
                        let r = handler(&req);
                        let _ = write_reply(&mut s, &req.method, &r);
                    });
                }
            });
        }
        Some(Scripted { port, seen, stop })
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Reads one request head (and a Content-Length body). TLS hellos (kiln probing HTTPS
/// first) and garbage give `None`.
fn read_request(s: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = s.read(&mut byte).ok()?;
        if n == 0 {
            return None;
        }
        if buf.is_empty() && byte[0] == 0x16 {
            return None; // TLS ClientHello
        }
        buf.push(byte[0]);
        if buf.ends_with(b"\r\n\r\n") {
            break;
        }
        if buf.len() > 64 << 10 {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn write_reply(s: &mut TcpStream, method: &str, r: &Reply) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
    let mut has_len = false;
    for (k, v) in &r.headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_len {
        head.push_str(&format!("Content-Length: {}\r\n", r.body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    if method != "HEAD" {
        let n = r.cut.unwrap_or(r.body.len()).min(r.body.len());
        s.write_all(&r.body[..n])?;
    }
    s.flush()?;
    let _ = s.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A fault-injecting TCP proxy in front of a real registry: by connection number it answers
// 503 or 429 (Retry-After: 1) without forwarding, or forwards and cuts the connection after
// a few tens of KiB of the answer (mid-blob), else forwards untouched.

pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let faults = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        {
            let stop = stop.clone();
            let faults = faults.clone();
            std::thread::spawn(move || {
                for (i, conn) in listener.incoming().enumerate() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(client) = conn else { continue };
                    let upstream = upstream.clone();
                    let faults = faults.clone();
                    std::thread::spawn(move || proxy_one(i, client, &upstream, &faults));
                }
            });
        }
        FaultProxy { port, faults, stop }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn proxy_one(i: usize, mut client: TcpStream, upstream: &str, faults: &AtomicUsize) {
    let mut first = [0u8; 1];
    let tls = matches!(client.peek(&mut first), Ok(1) if first[0] == 0x16);
    if !tls && (i % 4 == 1 || i % 4 == 2) {
        // Read the request head, then refuse it like an overloaded registry.
        let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 65536 {
            match client.read(&mut b) {
                Ok(1) => head.push(b[0]),
                _ => break,
            }
        }
        faults.fetch_add(1, Ordering::Relaxed);
        let reply = if i % 4 == 1 {
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        } else {
            "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        };
        let _ = client.write_all(reply.as_bytes());
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    // Every third forwarded connection dies after 48 KiB of answer: mid-blob for layers.
    let cut = if !tls && i % 4 == 3 {
        Some(48 << 10)
    } else {
        None
    };
    let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut s2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let mut server = server;
    let mut client = client;
    let mut sent = 0usize;
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(limit) = cut {
            if sent + n > limit {
                let _ = client.write_all(&buf[..limit - sent]);
                faults.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
    let _ = up.join();
}

// ---------------------------------------------------------------------------------------
// The token server for the token-auth registry on :5102 (realm http://127.0.0.1:5103/token):
// checks basic credentials kiln / kiln-secret and answers an ES256 JWT granting what was
// asked, signed with the key scripts/registry.sh made. The registry itself is the real one.

pub const TOKEN_REGISTRY: &str = "127.0.0.1:5102";

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_string()
}

/// Starts the token server on 127.0.0.1:5103; `None` if that port is taken.
pub fn token_server(dir: &std::path::Path) -> Option<Scripted> {
    use base64::Engine as _;
    let pk8 = std::fs::read(dir.join("token.pk8")).ok()?;
    let der = std::fs::read(dir.join("token.der")).ok()?;
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &pk8,
        &rng,
    )
    .expect("token.pk8 is a P-256 PKCS#8 key");
    let x5c = base64::engine::general_purpose::STANDARD.encode(&der);
    let counter = AtomicUsize::new(0);
    Scripted::try_start_on("127.0.0.1:5103", move |req| {
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
        );
        if req.header("authorization") != Some(expected.as_str()) {
            return Reply::new(401);
        }
        let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
        let mut access = Vec::new();
        for kv in query.split('&') {
            if let Some(v) = kv.strip_prefix("scope=") {
                let scope = url_decode(v);
                let parts: Vec<&str> = scope.split(':').collect();
                if parts.len() == 3 {
                    access.push(serde_json::json!({
                        "type": parts[0],
                        "name": parts[1],
                        "actions": parts[2].split(',').collect::<Vec<_>>(),
                    }));
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = serde_json::json!({
            "iss": "kiln-test-issuer",
            "sub": USER,
            "aud": "kiln-test-registry",
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": format!("kiln-{}", counter.fetch_add(1, Ordering::Relaxed)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = key
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .expect("sign");
        let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
        Reply::new(200)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"token": token, "expires_in": 600}).to_string())
    })
}
