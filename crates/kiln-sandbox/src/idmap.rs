//! User-namespace id maps, decided and written by the parent (which is
//! outside the new namespace, as the kernel and `newuidmap` require).

use crate::error::Error;
use crate::spec::IdMapPolicy;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How the sandbox's ids relate to the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No user namespace: we are root and ids are the host's.
    Host,
    /// Container 0 ↔ our uid/gid, nothing else (`setgroups` denied).
    Single { uid: u32, gid: u32 },
    /// Container 0 ↔ our ids, 1..=count ↔ the subordinate ranges.
    Subordinate {
        uid: u32,
        gid: u32,
        subuid: (u32, u32),
        subgid: (u32, u32),
        newuidmap: PathBuf,
        newgidmap: PathBuf,
    },
}

impl Plan {
    pub fn userns(&self) -> bool {
        !matches!(self, Plan::Host)
    }
    pub fn setgroups(&self) -> bool {
        !matches!(self, Plan::Single { .. })
    }
    pub fn full_range(&self) -> bool {
        !matches!(self, Plan::Single { .. })
    }
}

/// Chooses the plan for `policy`; the string is a one-line warning for the
/// caller when we fall back to a single-id map.
pub(crate) fn plan(policy: IdMapPolicy) -> (Plan, Option<String>) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    match policy {
        IdMapPolicy::Single => return (Plan::Single { uid, gid }, None),
        IdMapPolicy::Auto if uid == 0 => return (Plan::Host, None),
        IdMapPolicy::Auto => {}
    }
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| user_name(&p, uid));
    let tools = (find_tool("newuidmap"), find_tool("newgidmap"));
    let ranges = (
        std::fs::read_to_string("/etc/subuid")
            .ok()
            .and_then(|s| sub_range(&s, name.as_deref(), uid)),
        std::fs::read_to_string("/etc/subgid")
            .ok()
            .and_then(|s| sub_range(&s, name.as_deref(), uid)),
    );
    match (tools, ranges) {
        ((Some(newuidmap), Some(newgidmap)), (Some(subuid), Some(subgid))) => (
            Plan::Subordinate {
                uid,
                gid,
                subuid,
                subgid,
                newuidmap,
                newgidmap,
            },
            None,
        ),
        _ => (
            Plan::Single { uid, gid },
            Some(format!(
                "rootless sandbox maps only container uid/gid 0 (to host {uid}/{gid}): \
                 newuidmap/newgidmap or a /etc/subuid,/etc/subgid range for this user is missing"
            )),
        ),
    }
}

fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0].to_owned())
    })
}

/// The first `name:start:count` (or `uid:start:count`) line for us.
fn sub_range(contents: &str, name: Option<&str>, uid: u32) -> Option<(u32, u32)> {
    contents.lines().find_map(|l| {
        let f: Vec<&str> = l.trim().split(':').collect();
        if f.len() != 3 || !(Some(f[0]) == name || f[0].parse() == Ok(uid)) {
            return None;
        }
        let (start, count) = (f[1].parse().ok()?, f[2].parse::<u32>().ok()?);
        (count > 0).then_some((start, count))
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Writes the maps for the helper `pid`, which has unshared its user
/// namespace and is waiting.
pub(crate) fn apply(plan: &Plan, pid: u32) -> Result<(), Error> {
    match plan {
        Plan::Host => Ok(()),
        Plan::Single { uid, gid } => {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            // Without CAP_SETGID in the parent namespace the kernel requires
            // setgroups to be denied before gid_map may be written.
            write_map(pid, "setgroups", &proc.join("setgroups"), "deny")?;
            write_map(
                pid,
                "uid_map",
                &proc.join("uid_map"),
                &format!("0 {uid} 1\n"),
            )?;
            write_map(
                pid,
                "gid_map",
                &proc.join("gid_map"),
                &format!("0 {gid} 1\n"),
            )
        }
        Plan::Subordinate {
            uid,
            gid,
            subuid,
            subgid,
            newuidmap,
            newgidmap,
        } => {
            run_map_tool(newuidmap, "uid_map", pid, *uid, *subuid)?;
            run_map_tool(newgidmap, "gid_map", pid, *gid, *subgid)
        }
    }
}

fn write_map(pid: u32, what: &'static str, path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|e| Error::IdMap {
        what,
        pid,
        detail: e.to_string(),
    })
}

fn run_map_tool(
    tool: &Path,
    what: &'static str,
    pid: u32,
    id: u32,
    (start, count): (u32, u32),
) -> Result<(), Error> {
    let out = Command::new(tool)
        .args([
            pid.to_string(),
            "0".into(),
            id.to_string(),
            "1".into(),
            "1".into(),
            start.to_string(),
            count.to_string(),
        ])
        .env_clear()
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::IdMap {
            what,
            pid,
            detail: format!("{}: {e}", tool.display()),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::IdMap {
            what,
            pid,
            detail: format!(
                "{} {}: {}",
                tool.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges() {
        let s = "alice:100000:65536\n1001:200000:1000\nbob:0:0\n";
        assert_eq!(sub_range(s, Some("alice"), 1000), Some((100000, 65536)));
        assert_eq!(sub_range(s, None, 1001), Some((200000, 1000)));
        assert_eq!(sub_range(s, Some("bob"), 5), None);
        assert_eq!(
            user_name("root:x:0:0::/:/bin/sh\nk:x:1000:1000::/:/bin/sh", 1000),
            Some("k".into())
        );
    }
}
