//! The re-executed helper (outside the new pid namespace) and the sandbox's
//! pid 1 (inside it). Both are single-threaded, fresh processes: nothing here
//! runs in a forked copy of kiln's multi-threaded runtime.
//!
//! helper: read spec → unshare user ns → parent maps ids → unshare
//! mount/pid/ipc/uts(/net) → fork pid 1 → relay signals, exit with its code.
//! pid 1: mounts → lo → hostname → pivot_root → cwd → fork payload → reap
//! and forward signals → report status.

use crate::error::StepError;
use crate::proto::{self, ChildConfig, ToChild, ToParent};
use crate::spec::Network;
use crate::sys::{self, Fork};
use crate::{dev, exec, init, mounts, net};
use rustix::fs::{Mode, OFlags};
use rustix::io::FdFlags;
use rustix::thread::UnshareFlags;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Entry point of the helper process; see [`crate::init_main`].
pub(crate) fn main() -> ! {
    let code = match start() {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("kiln sandbox helper: {msg}");
            1
        }
    };
    std::process::exit(code)
}

fn parse_fd(arg: Option<String>) -> Result<OwnedFd, String> {
    let fd: RawFd = arg
        .and_then(|a| a.parse().ok())
        .filter(|&fd| fd > 2)
        .ok_or("missing descriptor argument")?;
    // Check the number names an open descriptor before taking ownership.
    if rustix::io::fcntl_getfd(
        // SAFETY: only used for this one fcntl call while `fd` is known open or not.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    .is_err()
    {
        return Err(format!("descriptor {fd} is not open"));
    }
    // SAFETY: the parent passed this descriptor to us for our exclusive use;
    // nothing else in this fresh process refers to it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count() == 1)
        .unwrap_or(false)
}

fn start() -> Result<i32, String> {
    let mut args = std::env::args().skip(2);
    let sock = parse_fd(args.next())?;
    let status = parse_fd(args.next())?;
    if !single_threaded() {
        return Err(
            "init_main() must run before any thread is started (call it first in main)".into(),
        );
    }
    let mut keep = [sock.as_raw_fd(), status.as_raw_fd()];
    keep.sort_unstable();
    // Whatever else kiln let us inherit must not reach the sandbox.
    sys::close_fds_except(&keep).map_err(|e| format!("close inherited descriptors: {e}"))?;
    for fd in [&sock, &status] {
        rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC)
            .map_err(|e| format!("set close-on-exec: {e}"))?;
    }
    sys::block_all_signals();
    let mut sock = File::from(sock);
    let cfg = match proto::recv::<ToChild>(&mut sock) {
        Ok(Some(ToChild::Start(cfg))) => cfg,
        Ok(_) => return Err("expected a start message".into()),
        Err(e) => return Err(format!("read spec: {e}")),
    };
    Ok(helper(&cfg, sock, status))
}

fn unshare(flags: UnshareFlags, what: &str) -> Result<(), StepError> {
    // SAFETY: the flags never include CLONE_FILES, the one case rustix marks
    // unsafe (descriptor tables diverging between threads); we have one thread.
    unsafe { rustix::thread::unshare_unsafe(flags) }
        .map_err(|e| StepError::os(format!("unshare {what}"), None, e))
}

fn enter_namespaces(cfg: &ChildConfig, sock: &mut File) -> Result<(), StepError> {
    if cfg.userns {
        unshare(UnshareFlags::NEWUSER, "user namespace")?;
        proto::send(&mut *sock, &ToParent::UserNsReady)
            .map_err(|e| StepError::msg("sync with parent", None, e.to_string()))?;
        match proto::recv::<ToChild>(&mut *sock) {
            Ok(Some(ToChild::MapsWritten)) => {}
            _ => {
                return Err(StepError::msg(
                    "wait for id maps",
                    None,
                    "parent did not confirm",
                ))
            }
        }
    }
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    if cfg.spec.network == Network::None {
        flags |= UnshareFlags::NEWNET;
    }
    unshare(flags, "mount/pid/ipc/uts namespaces")?;
    // Not dumpable: a sandboxed process cannot ptrace us or open our
    // /proc/<pid>/exe (the host kiln binary) or descriptors.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    Ok(())
}

fn fail(sock: &mut File, step: StepError) -> i32 {
    let _ = proto::send(sock, &ToParent::Failed(step));
    1
}

/// The helper: returns its exit code (pid 1's).
fn helper(cfg: &ChildConfig, mut sock: File, status: OwnedFd) -> i32 {
    if let Err(step) = enter_namespaces(cfg, &mut sock) {
        return fail(&mut sock, step);
    }
    match sys::fork() {
        Err(e) => fail(&mut sock, StepError::msg("fork pid 1", None, e.to_string())),
        Ok(Fork::Child) => pid1(cfg, sock, status),
        Ok(Fork::Parent(pid)) => {
            // Only pid 1 and the payload may hold the setup socket now, so
            // its EOF can mean "payload exec'd"; pid 1 alone reports status.
            drop(sock);
            drop(status);
            init::exit_code(&init::supervise(pid, false))
        }
    }
}

/// pid 1 of the sandbox. Never returns.
fn pid1(cfg: &ChildConfig, mut sock: File, status: OwnedFd) -> ! {
    // If the helper dies (kiln killed it), take the whole sandbox down.
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let cwd = match setup(cfg, &mut sock) {
        Ok(cwd) => cwd,
        Err(step) => std::process::exit(fail(&mut sock, step)),
    };
    let _ = proto::send(&mut sock, &ToParent::Spawning);
    match sys::fork() {
        Ok(Fork::Child) => exec::payload(cfg, cwd, sock),
        Ok(Fork::Parent(pid)) => {
            drop(sock);
            drop(cwd);
            let st = init::supervise(pid, true);
            let mut status = File::from(status);
            let _ = status.write_all(&serde_json::to_vec(&st).unwrap_or_default());
            std::process::exit(init::exit_code(&st))
        }
        Err(e) => std::process::exit(fail(
            &mut sock,
            StepError::msg("fork payload", None, e.to_string()),
        )),
    }
}

/// Everything between the new namespaces and the payload's fork; returns
/// the working directory, opened confined to the new root.
fn setup(cfg: &ChildConfig, sock: &mut File) -> Result<OwnedFd, StepError> {
    let spec = &cfg.spec;
    let root = mounts::mount_root(cfg)?;
    mounts::mount_proc(&root)?;
    dev::mount_dev(&root, cfg.full_id_range)?;
    mounts::mount_etc_files(&root, cfg)?;
    mounts::mount_extra(&root, &spec.mounts, cfg.userns)?;
    if spec.network == Network::None {
        net::loopback_up()?;
    }
    rustix::system::sethostname(spec.hostname.as_bytes())
        .map_err(|e| StepError::os("sethostname", Some(&spec.hostname), e))?;
    mounts::pivot(&root, spec.readonly_rootfs)?;
    let created = root.created.take();
    drop(root);
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    if !cfg.setgroups && !spec.user.2.is_empty() {
        let _ = proto::send(
            &mut *sock,
            &ToParent::Warning("supplementary groups ignored: setgroups is denied under a single-id user namespace".into()),
        );
    }
    // After pivot_root "/" is the container root, so resolution stays inside;
    // RESOLVE_NO_MAGICLINKS (in open_in_root) stops /proc/self/fd/N escapes.
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StepError::os("open", Some("/"), e))?;
    let root = mounts::Root::new(slash, String::new());
    let cwd = if spec.create_cwd {
        mounts::ensure_dir(&root, &spec.cwd)
    } else {
        mounts::open_in_root(root.fd.as_fd(), &spec.cwd, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| StepError::os("working directory", Some(&spec.cwd), e))
    }?;
    // A created cwd is a real change of the step (like WORKDIR), not a stub.
    let _ = proto::send(&mut *sock, &ToParent::CreatedMountpoints(created));
    Ok(cwd)
}
