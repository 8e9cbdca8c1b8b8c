//! `RUN --mount=type=ssh`: an ssh-agent socket that kiln owns, bind-mounted into the step.
//!
//! The step never sees the caller's agent socket itself. kiln listens on a socket of its
//! own (in a private temporary directory) and answers only the two requests a client needs
//! to authenticate — list identities, sign — either by relaying them to the caller's agent
//! (`--ssh default=$SSH_AUTH_SOCK`) or by serving keys read from files (`--ssh id=KEYFILE`).
//! Adding, removing or locking keys, and agent extensions, are refused: a step could
//! otherwise plant a key in the developer's agent or lock it.
//!
//! Messages come from the sandboxed step (untrusted): each is bounded by
//! [`MAX_AGENT_MESSAGE`] and a malformed one closes that connection only.

use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest agent message kiln reads from either side (OpenSSH's own agent limit).
pub const MAX_AGENT_MESSAGE: usize = 256 * 1024;

const SSH_AGENT_FAILURE: u8 = 5;
const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
const SSH_AGENT_SIGN_RESPONSE: u8 = 14;

/// Why an `--ssh` source cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("--ssh {id}={path}: {source}")]
    Read {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("--ssh {id}={path}: not an OpenSSH private key: {message}")]
    Parse {
        id: String,
        path: PathBuf,
        message: String,
    },
    #[error("--ssh {id}={path}: the key is passphrase-protected; kiln cannot decrypt keys, add it to an ssh-agent and pass --ssh {id}=$SSH_AUTH_SOCK")]
    Encrypted { id: String, path: PathBuf },
    #[error("--ssh {id}={path}: {algorithm} keys are not supported (only ed25519); add the key to an ssh-agent and pass --ssh {id}=$SSH_AUTH_SOCK")]
    UnsupportedKey {
        id: String,
        path: PathBuf,
        algorithm: String,
    },
    #[error("--ssh {id}: no agent socket given and SSH_AUTH_SOCK is not set")]
    NoAgent { id: String },
}

/// What one `--ssh ID=…` provides.
#[derive(Clone)]
pub enum SshSource {
    /// The caller's agent socket: requests are relayed to it.
    Agent(PathBuf),
    /// Private keys read from files, served by kiln itself.
    Keys(Arc<Vec<ssh_key::PrivateKey>>),
}

impl std::fmt::Debug for SshSource {
    // Never print key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshSource::Agent(p) => write!(f, "Agent({})", p.display()),
            SshSource::Keys(k) => write!(f, "Keys({} keys)", k.len()),
        }
    }
}

impl SshSource {
    /// `--ssh ID[=PATH[,PATH…]]`: no path means `$SSH_AUTH_SOCK`; a socket path is an agent;
    /// anything else is a list of private key files.
    pub fn from_paths(id: &str, paths: &[PathBuf]) -> Result<SshSource, SshError> {
        if paths.is_empty() {
            let sock = std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| SshError::NoAgent { id: id.into() })?;
            return Ok(SshSource::Agent(PathBuf::from(sock)));
        }
        if let [one] = paths {
            use std::os::unix::fs::FileTypeExt;
            let meta = std::fs::metadata(one).map_err(|source| SshError::Read {
                id: id.into(),
                path: one.clone(),
                source,
            })?;
            if meta.file_type().is_socket() {
                return Ok(SshSource::Agent(one.clone()));
            }
        }
        let keys = paths
            .iter()
            .map(|p| load_key(id, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SshSource::Keys(Arc::new(keys)))
    }
}

fn load_key(id: &str, path: &Path) -> Result<ssh_key::PrivateKey, SshError> {
    let text = std::fs::read(path).map_err(|source| SshError::Read {
        id: id.into(),
        path: path.into(),
        source,
    })?;
    let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|e| SshError::Parse {
        id: id.into(),
        path: path.into(),
        message: e.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(SshError::Encrypted {
            id: id.into(),
            path: path.into(),
        });
    }
    if key.algorithm() != ssh_key::Algorithm::Ed25519 {
        return Err(SshError::UnsupportedKey {
            id: id.into(),
            path: path.into(),
            algorithm: key.algorithm().to_string(),
        });
    }
    Ok(key)
}

/// A listening agent socket served by background threads until dropped.
pub(crate) struct AgentSocket {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl AgentSocket {
    /// Listens on a new socket in a private directory under `tmp`.
    pub(crate) fn start(source: &SshSource, tmp: &Path) -> io::Result<AgentSocket> {
        let dir = tempfile::Builder::new()
            .prefix("kiln-ssh")
            .tempdir_in(tmp)?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let stop = stop.clone();
            let source = source.clone();
            std::thread::Builder::new()
                .name("kiln-ssh-agent".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let source = source.clone();
                        // One thread per client connection; it ends when the client does.
                        let _ = std::thread::Builder::new()
                            .name("kiln-ssh-conn".into())
                            .spawn(move || {
                                let _ = serve(conn, &source);
                            });
                    }
                })?
        };
        Ok(AgentSocket {
            dir: Some(dir),
            path,
            stop,
            accept: Some(accept),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        drop(self.dir.take());
    }
}

/// Reads one length-prefixed agent message (without its length), or None at a clean EOF.
fn read_message(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > MAX_AGENT_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("agent message of {len} bytes (limit {MAX_AGENT_MESSAGE})"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(Some(buf))
}

fn write_message(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out)
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

/// Takes one SSH `string` off the front of `buf`.
fn take_string<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    if buf.len() < 4 {
        return None;
    }
    let n = u32::from_be_bytes(buf[..4].try_into().ok()?) as usize;
    let rest = &buf[4..];
    if rest.len() < n {
        return None;
    }
    let (s, tail) = rest.split_at(n);
    *buf = tail;
    Some(s)
}

fn serve(mut conn: UnixStream, source: &SshSource) -> io::Result<()> {
    let mut upstream = match source {
        SshSource::Agent(p) => Some(UnixStream::connect(p)?),
        SshSource::Keys(_) => None,
    };
    while let Some(msg) = read_message(&mut conn)? {
        let kind = msg[0];
        let allowed = kind == SSH_AGENTC_REQUEST_IDENTITIES || kind == SSH_AGENTC_SIGN_REQUEST;
        let reply = match (&mut upstream, source) {
            (_, _) if !allowed => vec![SSH_AGENT_FAILURE],
            (Some(up), _) => {
                write_message(up, &msg)?;
                read_message(up)?.ok_or_else(|| {
                    io::Error::new(io::ErrorKind::UnexpectedEof, "agent closed the connection")
                })?
            }
            (None, SshSource::Keys(keys)) => answer(keys, &msg),
            (None, SshSource::Agent(_)) => vec![SSH_AGENT_FAILURE],
        };
        write_message(&mut conn, &reply)?;
    }
    Ok(())
}

/// The in-process agent: identities and signatures for `keys`.
fn answer(keys: &[ssh_key::PrivateKey], msg: &[u8]) -> Vec<u8> {
    match msg[0] {
        SSH_AGENTC_REQUEST_IDENTITIES => {
            let mut out = vec![SSH_AGENT_IDENTITIES_ANSWER];
            let blobs: Vec<(Vec<u8>, String)> = keys
                .iter()
                .filter_map(|k| Some((k.public_key().to_bytes().ok()?, k.comment().to_string())))
                .collect();
            out.extend_from_slice(&(blobs.len() as u32).to_be_bytes());
            for (blob, comment) in blobs {
                put_string(&mut out, &blob);
                put_string(&mut out, comment.as_bytes());
            }
            out
        }
        SSH_AGENTC_SIGN_REQUEST => sign(keys, &msg[1..]).unwrap_or_else(|| vec![SSH_AGENT_FAILURE]),
        _ => vec![SSH_AGENT_FAILURE],
    }
}

fn sign(keys: &[ssh_key::PrivateKey], mut body: &[u8]) -> Option<Vec<u8>> {
    let blob = take_string(&mut body)?;
    let data = take_string(&mut body)?;
    let key = keys
        .iter()
        .find(|k| k.public_key().to_bytes().ok().as_deref() == Some(blob))?;
    let sig = try_sign(key, data)?;
    let mut sig_blob = Vec::new();
    put_string(&mut sig_blob, sig.algorithm().as_str().as_bytes());
    put_string(&mut sig_blob, sig.as_bytes());
    let mut out = vec![SSH_AGENT_SIGN_RESPONSE];
    put_string(&mut out, &sig_blob);
    Some(out)
}

fn try_sign<K: ssh_key::SigningKey>(key: &K, data: &[u8]) -> Option<ssh_key::Signature> {
    key.try_sign(data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sock: &Path, body: &[u8]) -> Vec<u8> {
        let mut c = UnixStream::connect(sock).unwrap();
        write_message(&mut c, body).unwrap();
        read_message(&mut c).unwrap().unwrap()
    }

    fn test_key() -> ssh_key::PrivateKey {
        // A fixed seed: the test needs a key, not randomness.
        let kp = ssh_key::private::Ed25519Keypair::from_seed(&[7u8; 32]);
        ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Ed25519(kp), "test@kiln").unwrap()
    }

    #[test]
    fn key_agent_lists_and_signs_verifiably() {
        let tmp = tempfile::tempdir().unwrap();
        let key = test_key();
        let agent =
            AgentSocket::start(&SshSource::Keys(Arc::new(vec![key.clone()])), tmp.path()).unwrap();
        let ids = request(agent.path(), &[SSH_AGENTC_REQUEST_IDENTITIES]);
        assert_eq!(ids[0], SSH_AGENT_IDENTITIES_ANSWER);
        assert_eq!(&ids[1..5], &1u32.to_be_bytes());
        let mut rest = &ids[5..];
        let blob = take_string(&mut rest).unwrap().to_vec();
        assert_eq!(blob, key.public_key().to_bytes().unwrap());
        assert_eq!(take_string(&mut rest).unwrap(), b"test@kiln");

        let mut req = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut req, &blob);
        put_string(&mut req, b"challenge");
        req.extend_from_slice(&0u32.to_be_bytes());
        let resp = request(agent.path(), &req);
        assert_eq!(resp[0], SSH_AGENT_SIGN_RESPONSE);
        let mut rest = &resp[1..];
        let mut sig_blob = take_string(&mut rest).unwrap();
        assert_eq!(take_string(&mut sig_blob).unwrap(), b"ssh-ed25519");
        let sig = take_string(&mut sig_blob).unwrap();
        // Verified independently (ed25519-dalek, the public key alone): a wrong signature
        // or message fails here.
        let public = key.public_key().key_data().ed25519().unwrap().0;
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(sig).unwrap();
        assert!(vk.verify_strict(b"challenge", &sig).is_ok());
        assert!(vk.verify_strict(b"other", &sig).is_err());
    }

    #[test]
    fn step_cannot_add_remove_or_lock_keys_in_the_forwarded_agent() {
        let tmp = tempfile::tempdir().unwrap();
        // A fake upstream agent that records what reaches it.
        let up_path = tmp.path().join("upstream.sock");
        let up = UnixListener::bind(&up_path).unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for c in up.incoming() {
                    let mut c = c.unwrap();
                    while let Ok(Some(m)) = read_message(&mut c) {
                        seen.lock().unwrap().push(m[0]);
                        write_message(&mut c, &[SSH_AGENT_IDENTITIES_ANSWER, 0, 0, 0, 0]).unwrap();
                    }
                }
            });
        }
        let agent = AgentSocket::start(&SshSource::Agent(up_path), tmp.path()).unwrap();
        // 17 add identity, 18 remove, 19 remove all, 22 lock, 27 extension.
        for kind in [17u8, 18, 19, 22, 27] {
            assert_eq!(
                request(agent.path(), &[kind, 0, 0, 0, 0]),
                [SSH_AGENT_FAILURE]
            );
        }
        assert_eq!(
            request(agent.path(), &[SSH_AGENTC_REQUEST_IDENTITIES])[0],
            SSH_AGENT_IDENTITIES_ANSWER
        );
        assert_eq!(*seen.lock().unwrap(), vec![SSH_AGENTC_REQUEST_IDENTITIES]);
    }

    #[test]
    fn oversized_agent_message_closes_the_connection() {
        let tmp = tempfile::tempdir().unwrap();
        let agent = AgentSocket::start(&SshSource::Keys(Arc::new(vec![])), tmp.path()).unwrap();
        let mut c = UnixStream::connect(agent.path()).unwrap();
        c.write_all(&((MAX_AGENT_MESSAGE as u32) + 1).to_be_bytes())
            .unwrap();
        let mut buf = Vec::new();
        c.read_to_end(&mut buf).unwrap();
        assert!(buf.is_empty());
    }
}
