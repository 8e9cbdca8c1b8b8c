//! The caller's side: start the helper by re-executing the kiln binary,
//! hand it the spec, map its ids, and wait for "exec'd" or a typed error.
//! Safe to call from a multi-threaded (tokio) process: the only code that
//! runs between fork and exec is std's plus one `fcntl` per descriptor.

use crate::error::Error;
use crate::idmap::{self, Plan};
use crate::proto::{self, ChildConfig, ToChild, ToParent};
use crate::spec::{EtcFile, Network, Spec};
use crate::{ExitStatus, INIT_ARG};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command};

/// Starts sandboxes by re-executing `helper_exe` (normally the kiln binary
/// itself, `std::env::current_exe()`), whose `main` hands over to
/// [`crate::init_main`] when its first argument is [`INIT_ARG`].
#[derive(Debug, Clone)]
pub struct Sandbox {
    helper_exe: PathBuf,
}

/// Where the payload's stdin/stdout/stderr go (any `std::process::Stdio`).
#[derive(Debug)]
pub struct Stdio {
    pub stdin: std::process::Stdio,
    pub stdout: std::process::Stdio,
    pub stderr: std::process::Stdio,
}

impl Stdio {
    /// All three inherited from the caller.
    pub fn inherit() -> Self {
        Stdio {
            stdin: std::process::Stdio::inherit(),
            stdout: std::process::Stdio::inherit(),
            stderr: std::process::Stdio::inherit(),
        }
    }
    /// stdin from /dev/null, stdout and stderr piped (build log capture).
    pub fn piped() -> Self {
        Stdio {
            stdin: std::process::Stdio::null(),
            stdout: std::process::Stdio::piped(),
            stderr: std::process::Stdio::piped(),
        }
    }
}

/// How a sandbox ended, plus setup warnings (e.g. the single-id fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: ExitStatus,
    pub warnings: Vec<String>,
    /// Mountpoints (in-root paths such as `/proc`, `/etc/hosts`) the sandbox
    /// created in the rootfs because the image lacked them, parents before
    /// children. They are empty stubs, not the payload's work: a layer
    /// differ should leave them out (BuildKit does the same).
    pub created_mountpoints: Vec<String>,
}

/// [`RunOutcome`] with captured output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub outcome: RunOutcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A running sandbox whose payload has been exec'd.
#[derive(Debug)]
pub struct Child {
    inner: std::process::Child,
    status: io::PipeReader,
    warnings: Vec<String>,
    created: Vec<String>,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    pub stderr: Option<ChildStderr>,
}

impl Sandbox {
    pub fn new(helper_exe: impl Into<PathBuf>) -> Self {
        Sandbox {
            helper_exe: helper_exe.into(),
        }
    }

    /// Runs `spec` to completion. With piped stdio use [`Sandbox::spawn`] or
    /// [`Sandbox::output`] instead, or the pipes may fill up.
    pub fn run(&self, spec: &Spec, stdio: Stdio) -> Result<RunOutcome, Error> {
        self.spawn(spec, stdio)?.wait()
    }

    /// Runs `spec` with stdin from /dev/null and captures stdout and stderr.
    pub fn output(&self, spec: &Spec) -> Result<Output, Error> {
        self.spawn(spec, Stdio::piped())?.wait_with_output()
    }

    /// Starts `spec` and returns once its payload has been exec'd; a setup
    /// failure anywhere in the sandbox comes back as [`Error::Setup`].
    /// Blocks for the setup (milliseconds); call from `spawn_blocking` in async code.
    pub fn spawn(&self, spec: &Spec, stdio: Stdio) -> Result<Child, Error> {
        if spec.args.is_empty() {
            return Err(Error::InvalidSpec("empty argv".into()));
        }
        let (plan, warning) = idmap::plan(spec.id_map);
        let etc_dir = tempfile::Builder::new()
            .prefix("kiln-sandbox-etc")
            .tempdir()
            .map_err(Error::EtcFiles)?;
        let cfg = ChildConfig {
            spec: spec.clone(),
            userns: plan.userns(),
            setgroups: plan.setgroups(),
            full_id_range: plan.full_range(),
            etc_hosts: etc_file(&spec.etc_files.hosts, etc_dir.path(), "hosts", || {
                hosts(&spec.hostname)
            })?,
            etc_hostname: etc_file(&spec.etc_files.hostname, etc_dir.path(), "hostname", || {
                Ok(format!("{}\n", spec.hostname))
            })?,
            etc_resolv_conf: etc_file(
                &spec.etc_files.resolv_conf,
                etc_dir.path(),
                "resolv.conf",
                || resolv_conf(spec.network),
            )?,
        };

        let (mut sock, child_sock) =
            UnixStream::pair().map_err(|e| Error::Protocol(e.to_string()))?;
        let (status_r, status_w) = io::pipe().map_err(|e| Error::Protocol(e.to_string()))?;
        let status_w = OwnedFd::from(status_w);
        let pass = [child_sock.as_raw_fd(), status_w.as_raw_fd()];
        let mut cmd = Command::new(&self.helper_exe);
        cmd.arg(INIT_ARG)
            .arg(pass[0].to_string())
            .arg(pass[1].to_string())
            .env_clear()
            .current_dir("/")
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        // SAFETY: the hook runs between fork and exec and only calls fcntl
        // (async-signal-safe, no allocation) on descriptors that stay open in
        // the parent until after spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                for fd in pass {
                    let fd = std::os::fd::BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                }
                Ok(())
            });
        }
        let mut inner = cmd.spawn().map_err(|source| Error::Spawn {
            helper: self.helper_exe.clone(),
            source,
        })?;
        drop(child_sock);
        drop(status_w);
        let pid = inner.id();

        let result = handshake(&mut sock, &cfg, &plan, pid);
        drop(sock);
        drop(etc_dir); // the binds hold the files now
        let mut warnings: Vec<String> = warning.into_iter().collect();
        let created = match result {
            Ok((w, created)) => {
                warnings.extend(w);
                created
            }
            Err(e) => {
                let _ = inner.kill();
                let st = inner.wait();
                return Err(match e {
                    Error::HelperDied(_) => Error::HelperDied(
                        st.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    ),
                    e => e,
                });
            }
        };
        Ok(Child {
            stdin: inner.stdin.take(),
            stdout: inner.stdout.take(),
            stderr: inner.stderr.take(),
            inner,
            status: status_r,
            warnings,
            created,
        })
    }
}

/// Drives the setup protocol; returns the helper's warnings and created mountpoints.
fn handshake(
    sock: &mut UnixStream,
    cfg: &ChildConfig,
    plan: &Plan,
    pid: u32,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let proto_err = |e: io::Error| Error::Protocol(e.to_string());
    // The helper may already be gone (wrong binary); that is not a protocol error.
    if proto::send(&mut *sock, &ToChild::Start(Box::new(cfg.clone()))).is_err() {
        return Err(Error::HelperDied(String::new()));
    }
    let mut warnings = Vec::new();
    let mut created = Vec::new();
    let mut spawning = false;
    loop {
        match proto::recv::<ToParent>(&mut *sock).map_err(proto_err)? {
            Some(ToParent::UserNsReady) => {
                idmap::apply(plan, pid)?;
                proto::send(&mut *sock, &ToChild::MapsWritten).map_err(proto_err)?;
            }
            Some(ToParent::Warning(w)) => warnings.push(w),
            Some(ToParent::CreatedMountpoints(c)) => created = c,
            Some(ToParent::Spawning) => spawning = true,
            Some(ToParent::Failed(step)) => return Err(Error::Setup(step)),
            None if spawning => return Ok((warnings, created)),
            None => return Err(Error::HelperDied(String::new())),
        }
    }
}

fn etc_file(
    choice: &EtcFile,
    dir: &Path,
    name: &str,
    generate: impl FnOnce() -> io::Result<String>,
) -> Result<Option<PathBuf>, Error> {
    match choice {
        EtcFile::Keep => Ok(None),
        EtcFile::Path(p) => Ok(Some(p.clone())),
        EtcFile::Generate => {
            let path = dir.join(name);
            std::fs::write(&path, generate().map_err(Error::EtcFiles)?).map_err(Error::EtcFiles)?;
            Ok(Some(path))
        }
    }
}

fn hosts(hostname: &str) -> io::Result<String> {
    Ok(format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
    ))
}

/// The host's resolver config (host network shares its view); none at all
/// for an isolated network.
fn resolv_conf(network: Network) -> io::Result<String> {
    match network {
        Network::None => Ok(String::new()),
        Network::Host => match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        },
    }
}

impl Child {
    /// Host pid of the helper process (signals sent to it are forwarded to
    /// the payload).
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the payload, via the helper.
    pub fn signal(&self, signal: i32) -> io::Result<()> {
        let pid = rustix::process::Pid::from_raw(self.inner.id() as i32)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let sig =
            rustix::process::Signal::from_named_raw(signal).ok_or(io::ErrorKind::InvalidInput)?;
        rustix::process::kill_process(pid, sig).map_err(io::Error::from)
    }

    /// Kills the whole sandbox (SIGKILL to the helper; its pid 1 follows
    /// through the parent-death signal, and the pid namespace with it).
    pub fn kill(&mut self) -> io::Result<()> {
        self.inner.kill()
    }

    /// Waits for the payload to exit.
    pub fn wait(mut self) -> Result<RunOutcome, Error> {
        drop(self.stdin.take());
        let st = self.inner.wait().map_err(Error::Wait)?;
        let mut report = Vec::new();
        let _ = self.status.read_to_end(&mut report);
        let status = serde_json::from_slice::<ExitStatus>(&report).unwrap_or(ExitStatus {
            code: st.code(),
            signal: st.signal(),
        });
        Ok(RunOutcome {
            status,
            warnings: self.warnings,
            created_mountpoints: self.created,
        })
    }

    /// Waits, collecting piped stdout/stderr.
    pub fn wait_with_output(mut self) -> Result<Output, Error> {
        drop(self.stdin.take());
        let err_reader = self.stderr.take().map(|mut e| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = e.read_to_end(&mut buf);
                buf
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_end(&mut stdout);
        }
        let stderr = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();
        let outcome = self.wait()?;
        Ok(Output {
            outcome,
            stdout,
            stderr,
        })
    }
}
