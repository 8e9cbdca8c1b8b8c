//! User-namespace id maps, decided and written by the parent (which is
//! outside the new namespace, as the kernel and `newuidmap` require).

use crate::error::Error;
use crate::spec::IdMapPolicy;
use kiln_fs::IdMapping;
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

impl Plan {
    /// The ids this plan maps, as a value (what kiln-archive and kiln-snapshot translate
    /// layer owners with).
    pub fn mapping(&self) -> IdMapping {
        match self {
            Plan::Host => IdMapping::identity(),
            Plan::Single { uid, gid } => IdMapping::single(*uid, *gid),
            Plan::Subordinate {
                uid,
                gid,
                subuid,
                subgid,
                ..
            } => IdMapping::subordinate(*uid, *gid, *subuid, *subgid),
        }
    }
}

/// Chooses the plan for `policy`; the string is a one-line warning for the
/// caller when we fall back to a single-id map. The ranges and tools come from
/// [`kiln_fs::idmap::detect_rootless`], the same code
/// [`IdMapping::for_current_process`] uses, so both always agree.
pub(crate) fn plan(policy: IdMapPolicy) -> (Plan, Option<String>) {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    match policy {
        IdMapPolicy::Single => return (Plan::Single { uid, gid }, None),
        IdMapPolicy::Auto if uid == 0 => return (Plan::Host, None),
        IdMapPolicy::Auto => {}
    }
    let ids = kiln_fs::idmap::detect_rootless();
    match ids.subordinate {
        Some(s) => (
            Plan::Subordinate {
                uid: ids.uid,
                gid: ids.gid,
                subuid: s.subuid,
                subgid: s.subgid,
                newuidmap: s.newuidmap,
                newgidmap: s.newgidmap,
            },
            None,
        ),
        None => (
            Plan::Single { uid, gid },
            Some(format!(
                "rootless sandbox maps only container uid/gid 0 (to host {uid}/{gid}): \
                 newuidmap/newgidmap or a /etc/subuid,/etc/subgid range for this user is missing"
            )),
        ),
    }
}

/// The id mapping a sandbox started by this process with `policy` uses: the identity
/// as root (`Auto`), container 0 ↔ our ids plus the subordinate ranges when rootless.
/// A pure value; nothing is written.
pub fn id_mapping(policy: IdMapPolicy) -> IdMapping {
    plan(policy).0.mapping()
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
    fn plan_mappings() {
        assert!(Plan::Host.mapping().is_identity());
        let single = Plan::Single {
            uid: 1000,
            gid: 1001,
        }
        .mapping();
        assert_eq!(single.uid.to_container(1000), Some(0));
        assert_eq!(single.gid.to_container(1001), Some(0));
        assert_eq!(single.uid.to_host(1), None);
        let sub = Plan::Subordinate {
            uid: 1000,
            gid: 1001,
            subuid: (100000, 65536),
            subgid: (200000, 65536),
            newuidmap: "/usr/bin/newuidmap".into(),
            newgidmap: "/usr/bin/newgidmap".into(),
        }
        .mapping();
        assert_eq!(sub.uid.to_host(1234), Some(101233));
        assert_eq!(sub.gid.to_host(1234), Some(201233));
        assert_eq!(sub.uid.to_container(1000), Some(0));
    }

    #[test]
    fn auto_agrees_with_kiln_fs() {
        assert_eq!(
            id_mapping(IdMapPolicy::Auto),
            IdMapping::for_current_process()
        );
    }
}
