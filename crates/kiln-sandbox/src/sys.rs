//! The few syscalls `rustix` does not offer (fork, signal masks and waiting,
//! resetting dispositions, execve, close_range, interface flags), wrapped so
//! every `unsafe` of the crate sits here with its justification.

use std::ffi::CString;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

pub(crate) enum Fork {
    Parent(libc::pid_t),
    Child,
}

/// `fork(2)`. Only called by the helper process, which [`crate::init_main`]
/// has verified to be single-threaded, so the child inherits no lock held by
/// another thread (allocator, stdio).
pub(crate) fn fork() -> io::Result<Fork> {
    // SAFETY: the process is single-threaded (checked at startup), so the
    // child may keep running ordinary Rust code after the fork.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

fn full_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises the whole set it is given.
    unsafe {
        libc::sigfillset(set.as_mut_ptr());
        set.assume_init()
    }
}

/// Blocks every signal, so they queue for [`wait_signal`] instead of running
/// default actions (which, for a pid-namespace init, would drop them).
pub(crate) fn block_all_signals() {
    let all = full_set();
    // SAFETY: valid set pointer; a null old-set pointer is allowed.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) };
}

/// Restores default dispositions and an empty mask for the payload: ignored
/// signals (Rust ignores SIGPIPE) and the mask survive `execve` otherwise.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL is always a valid disposition; invalid or
            // libc-reserved numbers just fail with EINVAL.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    let mut empty = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set; then a valid pointer is passed.
    unsafe {
        libc::sigemptyset(empty.as_mut_ptr());
        libc::sigprocmask(libc::SIG_SETMASK, empty.as_ptr(), std::ptr::null_mut());
    }
}

/// Waits for the next (blocked) signal and returns its number.
pub(crate) fn wait_signal() -> i32 {
    let all = full_set();
    loop {
        // SAFETY: valid set pointer; a null siginfo pointer is allowed.
        let sig = unsafe { libc::sigwaitinfo(&all, std::ptr::null_mut()) };
        if sig > 0 {
            return sig;
        }
    }
}

pub(crate) fn kill(pid: libc::pid_t, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) };
}

/// `close_range(first, ~0, CLOSE_RANGE_CLOEXEC)` (or closing, with `cloexec`
/// false): nothing the helper inherited beyond what it means to pass on
/// survives into the payload.
pub(crate) fn close_range(first: u32, last: u32, cloexec: bool) -> io::Result<()> {
    let flags = if cloexec {
        libc::CLOSE_RANGE_CLOEXEC
    } else {
        0
    };
    // SAFETY: close_range only affects this process's descriptor table; the
    // callers own every descriptor in the range (none is in use by Rust
    // objects other than those explicitly excluded).
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Closes every descriptor ≥ 3 except `keep` (which must be sorted).
pub(crate) fn close_fds_except(keep: &[RawFd]) -> io::Result<()> {
    let mut next = 3u32;
    for &fd in keep {
        let fd = fd as u32;
        if fd > next {
            close_range(next, fd - 1, false)?;
        }
        next = next.max(fd + 1);
    }
    close_range(next, u32::MAX, false)
}

/// `execve(path, argv, envp)`; returns only on failure.
pub(crate) fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // SAFETY: all pointers are NUL-terminated strings kept alive by `argv`,
    // `envp` and `path` for the duration of the call; both arrays end in NULL.
    unsafe { libc::execve(path.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    io::Error::last_os_error()
}

/// Sets `IFF_UP` on interface `name` through `SIOCSIFFLAGS`.
pub(crate) fn interface_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket creation; the result is checked and owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock);
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for these ioctls, which read the name and
    // read/write only the flags member of the union.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
