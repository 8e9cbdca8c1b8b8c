//! The payload's last steps between fork and `execve`: working directory,
//! capability bounding set, ids, signal state, descriptors, `PATH` lookup.
//! Failures go back to the parent over the setup socket.

use crate::error::StepError;
use crate::proto::{self, ChildConfig, ToParent};
use crate::spec::DEFAULT_PATH;
use crate::sys;
use rustix::fs::{Access, FileType};
use rustix::process::{Gid, Uid};
use rustix::thread::CapabilitySet;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::OwnedFd;

/// Docker's default capabilities (numbers from linux/capability.h): chown,
/// dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
/// net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap.
const DOCKER_DEFAULT_CAPS: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

/// Runs in the forked payload process; never returns.
pub(crate) fn payload(cfg: &ChildConfig, cwd: OwnedFd, mut sock: File) -> ! {
    let err = prepare_and_exec(cfg, cwd);
    let _ = proto::send(&mut sock, &ToParent::Failed(err));
    std::process::exit(127)
}

fn drop_bounding_set() -> Result<(), StepError> {
    for cap in 0..64u32 {
        if DOCKER_DEFAULT_CAPS.contains(&cap) {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(StepError::os("drop capability", Some(&cap.to_string()), e)),
        }
    }
    Ok(())
}

fn cstring(s: &str, what: &str) -> Result<CString, StepError> {
    CString::new(s).map_err(|_| StepError::msg(what, Some(s), "contains a NUL byte"))
}

/// `args[0]` as `execve` needs it: unchanged when it has a `/`, otherwise
/// the first executable regular file on the spec's `PATH`.
fn lookup(arg0: &str, env: &[String]) -> Result<CString, StepError> {
    if arg0.contains('/') {
        return cstring(arg0, "executable");
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = format!("{}/{arg0}", dir.trim_end_matches('/'));
        let is_file = rustix::fs::stat(candidate.as_str())
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .unwrap_or(false);
        if is_file && rustix::fs::access(candidate.as_str(), Access::EXEC_OK).is_ok() {
            return cstring(&candidate, "executable");
        }
    }
    Err(StepError::msg(
        "exec",
        Some(arg0),
        format!("executable file not found in PATH ({path})"),
    ))
}

fn prepare_and_exec(cfg: &ChildConfig, cwd: OwnedFd) -> StepError {
    match prepare(cfg, cwd) {
        Ok((exe, argv, envp)) => {
            let e = sys::execve(&exe, &argv, &envp);
            StepError::msg("exec", Some(&cfg.spec.args[0]), e.to_string())
        }
        Err(e) => e,
    }
}

type Exec = (CString, Vec<CString>, Vec<CString>);

fn prepare(cfg: &ChildConfig, cwd: OwnedFd) -> Result<Exec, StepError> {
    let spec = &cfg.spec;
    rustix::process::fchdir(&cwd).map_err(|e| StepError::os("chdir", Some(&spec.cwd), e))?;
    drop(cwd);
    if !spec.privileged {
        drop_bounding_set()?;
    }
    let (uid, gid, groups) = &spec.user;
    let id_err = |what: &str, id: u32, e: rustix::io::Errno| {
        let mut err = StepError::os(what, Some(&id.to_string()), e);
        if e == rustix::io::Errno::INVAL {
            err.detail = "id is not mapped in the sandbox's user namespace".into();
        }
        err
    };
    if cfg.setgroups {
        let gids: Vec<Gid> = groups.iter().map(|&g| Gid::from_raw(g)).collect();
        rustix::thread::set_thread_groups(&gids)
            .map_err(|e| StepError::os("setgroups", None, e))?;
    }
    // rustix's set_thread_* are the raw per-thread syscalls: fine, we are the only thread.
    let g = Gid::from_raw(*gid);
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| id_err("setgid", *gid, e))?;
    let u = Uid::from_raw(*uid);
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| id_err("setuid", *uid, e))?;
    let exe = lookup(&spec.args[0], &spec.env)?;
    let argv = spec
        .args
        .iter()
        .map(|a| cstring(a, "argument"))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|a| cstring(a, "environment"))
        .collect::<Result<Vec<_>, _>>()?;
    sys::reset_signals();
    // Every descriptor but stdio closes at exec (the setup socket included,
    // which is how the parent learns the exec succeeded).
    sys::close_range(3, u32::MAX, true)
        .map_err(|e| StepError::msg("close descriptors", None, e.to_string()))?;
    Ok((exe, argv, envp))
}
