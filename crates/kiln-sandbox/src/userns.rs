//! Running one request of kiln's own code inside a user namespace with the full
//! subordinate id mapping — what rootless kiln needs to create and remove files owned by
//! subordinate ids (unpacking base layers with their real owners, removing snapshots a
//! RUN step filled with such files). Rootless podman and buildah do the same.
//!
//! Like the sandbox it starts from a re-exec of the kiln binary ([`USERNS_HELPER_ARG`]),
//! never from a fork of the multi-threaded caller: the helper is single-threaded when it
//! unshares its user namespace (the kernel requires it), the caller maps its ids with
//! `newuidmap`/`newgidmap` exactly as for a sandbox, and then the helper — now uid 0 of
//! that namespace, with every capability over the mapped ids, and in the caller's mount
//! namespace (so paths mean the same) — runs the handler the binary gave
//! [`namespace_helper_main`] on the request and sends back its answer. No other
//! namespace is created; nothing is mounted; the helper exits after one request.
//!
//! The request and answer are opaque strings to this crate (kiln-snapshot defines them),
//! so kiln-sandbox stays free of snapshot and archive code.

use crate::error::Error;
use crate::idmap::{self, Plan};
use crate::proto;
use crate::spec::IdMapPolicy;
use kiln_fs::IdMapping;
use rustix::io::FdFlags;
use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{ChildStdout, Command};

/// The hidden first argument that makes the kiln binary act as the namespace helper (see
/// [`namespace_helper_main`]).
pub const USERNS_HELPER_ARG: &str = "__kiln-userns-helper";

#[derive(Debug, Serialize, Deserialize)]
enum Down {
    Request(String),
    MapsWritten,
}

#[derive(Debug, Serialize, Deserialize)]
enum Up {
    UserNsReady,
    Done(Result<String, String>),
}

/// Starts namespace helpers by re-executing `exe` (the kiln binary), whose `main` hands
/// over to [`namespace_helper_main`] when its first argument is [`USERNS_HELPER_ARG`].
#[derive(Debug, Clone)]
pub struct NamespaceHelper {
    exe: PathBuf,
    plan: Plan,
}

impl NamespaceHelper {
    /// A helper for this process, or None when it would not help: as root (no namespace
    /// needed) or without subordinate ranges (a single-id map can own nothing but
    /// container 0, which the caller already is).
    pub fn detect(exe: impl Into<PathBuf>) -> Option<NamespaceHelper> {
        match idmap::plan(IdMapPolicy::Auto).0 {
            plan @ Plan::Subordinate { .. } => Some(NamespaceHelper {
                exe: exe.into(),
                plan,
            }),
            _ => None,
        }
    }

    /// The mapping the helper's namespace gets (the sandbox's, `IdMapPolicy::Auto`).
    pub fn mapping(&self) -> IdMapping {
        self.plan.mapping()
    }

    /// Runs `request` in a fresh helper and returns the handler's answer; a handler
    /// failure is [`Error::Request`]. Blocks until the helper has exited.
    pub fn call(&self, request: &str) -> Result<String, Error> {
        self.call_inner(request, None)
    }

    /// [`NamespaceHelper::call`] for a handler that also writes a stream to its standard
    /// output (e.g. a tar of a tree only the namespace can read): it is copied into `out`
    /// as it comes.
    pub fn call_streaming(&self, request: &str, out: &mut dyn Write) -> Result<String, Error> {
        self.call_inner(request, Some(out))
    }

    fn call_inner(&self, request: &str, out: Option<&mut dyn Write>) -> Result<String, Error> {
        let (mut sock, child_sock) =
            UnixStream::pair().map_err(|e| Error::Protocol(e.to_string()))?;
        let fd = child_sock.as_raw_fd();
        let mut cmd = Command::new(&self.exe);
        cmd.arg(USERNS_HELPER_ARG)
            .arg(fd.to_string())
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::null())
            .stdout(if out.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stderr(std::process::Stdio::inherit());
        // SAFETY: the hook runs between fork and exec and only calls fcntl
        // (async-signal-safe, no allocation) on a descriptor that stays open in the
        // parent until after spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            helper: self.exe.clone(),
            source,
        })?;
        drop(child_sock);
        let stdout = child.stdout.take();
        let stream = out.zip(stdout);
        let result = self.converse(&mut sock, request, child.id(), stream);
        drop(sock);
        if result.is_err() {
            let _ = child.kill();
        }
        let status = child.wait().map_err(Error::Wait)?;
        match result {
            Err(Error::HelperDied(_)) => Err(Error::HelperDied(status.to_string())),
            other => other,
        }
    }

    fn converse(
        &self,
        sock: &mut UnixStream,
        request: &str,
        pid: u32,
        mut stream: Option<(&mut dyn Write, ChildStdout)>,
    ) -> Result<String, Error> {
        let proto_err = |e: std::io::Error| Error::Protocol(e.to_string());
        if proto::send(&mut *sock, &Down::Request(request.to_owned())).is_err() {
            return Err(Error::HelperDied(String::new()));
        }
        loop {
            match proto::recv::<Up>(&mut *sock).map_err(proto_err)? {
                Some(Up::UserNsReady) => {
                    idmap::apply(&self.plan, pid)?;
                    proto::send(&mut *sock, &Down::MapsWritten).map_err(proto_err)?;
                    // The handler writes its stream, then answers, then exits: read the
                    // stream to its end first (the answer is small and waits in the socket).
                    if let Some((out, mut from)) = stream.take() {
                        std::io::copy(&mut from, out)
                            .map_err(|e| Error::Protocol(format!("helper output: {e}")))?;
                    }
                }
                Some(Up::Done(Ok(answer))) => return Ok(answer),
                Some(Up::Done(Err(msg))) => return Err(Error::Request(msg)),
                None => return Err(Error::HelperDied(String::new())),
            }
        }
    }
}

/// The namespace helper's entry point: call it first thing in `main` when
/// `argv[1] == USERNS_HELPER_ARG` (before any thread exists). Enters the user namespace,
/// runs `handler` on the request (it may start threads) and exits.
pub fn namespace_helper_main(handler: impl FnOnce(&str) -> Result<String, String>) -> ! {
    let code = match serve(handler) {
        Ok(()) => 0,
        Err(msg) => {
            eprintln!("kiln namespace helper: {msg}");
            1
        }
    };
    std::process::exit(code)
}

fn serve(handler: impl FnOnce(&str) -> Result<String, String>) -> Result<(), String> {
    let sock = crate::child::parse_fd(std::env::args().nth(2))?;
    if !crate::child::single_threaded() {
        return Err(
            "namespace_helper_main() must run before any thread is started (call it first in main)"
                .into(),
        );
    }
    crate::sys::close_fds_except(&[sock.as_raw_fd()])
        .map_err(|e| format!("close inherited descriptors: {e}"))?;
    rustix::io::fcntl_setfd(&sock, FdFlags::CLOEXEC)
        .map_err(|e| format!("set close-on-exec: {e}"))?;
    let mut sock = File::from(sock);
    let request = match proto::recv::<Down>(&mut sock) {
        Ok(Some(Down::Request(r))) => r,
        Ok(_) => return Err("expected a request".into()),
        Err(e) => return Err(format!("read request: {e}")),
    };
    let entered = crate::child::unshare(UnshareFlags::NEWUSER, "user namespace")
        .map_err(|e| e.to_string())
        .and_then(|()| {
            proto::send(&mut sock, &Up::UserNsReady).map_err(|e| e.to_string())?;
            match proto::recv::<Down>(&mut sock) {
                Ok(Some(Down::MapsWritten)) => Ok(()),
                _ => Err("wait for id maps: parent did not confirm".to_string()),
            }
        });
    let answer = match entered {
        Ok(()) => handler(&request),
        Err(e) => Err(e),
    };
    proto::send(&mut sock, &Up::Done(answer)).map_err(|e| format!("send answer: {e}"))
}
