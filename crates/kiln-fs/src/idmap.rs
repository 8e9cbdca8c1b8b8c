//! User-namespace id mappings as plain values, and the rootless owner override.
//!
//! A rootless kiln runs its RUN steps in a user namespace where container uid 0 is the
//! invoking user and container uids 1..=N are its subordinate range (`/etc/subuid`). Files
//! that a step creates therefore carry *host* ids on disk, while layer tars must carry
//! *container* ids. [`IdMapping`] is that relation as a pure value: kiln-sandbox builds the
//! user namespace from it (see `kiln_sandbox::id_mapping`), kiln-archive translates tar
//! headers with it, kiln-snapshot uses the mapping of the current process for every
//! snapshot it unpacks or commits. It lives here, below all three, because kiln-archive
//! and kiln-snapshot must not depend on kiln-sandbox.
//!
//! # The owner override xattr
//!
//! With a subordinate range, rootless kiln unpacks base layers inside a user namespace with
//! this mapping (kiln-snapshot's `NamespaceRunner`, served by kiln-sandbox's namespace
//! helper), so files get their real owners and no override is needed. Without one (a
//! single-id map, or `KILN_USERNS_HELPER=0`) an unprivileged process cannot `chown` a file
//! to another host id, so when it unpacks a
//! layer whose files belong to container uid 1234, those files end up owned by the user
//! itself (container 0). kiln keeps the intended owner in the xattr [`OWNER_XATTR`]
//! (`user.kiln.owner`, value `"uid:gid"`, *container* ids, decimal) on the node, and the
//! layer writer prefers it — but only while the node is still owned by the user that
//! wrote it (container 0 after mapping): a RUN step that `chown`s the node to another id
//! moves it to that host id, and then the mapping is the truth again. The xattr never
//! appears in a layer tar (the writer strips it, the applier refuses it from input).
//! Limits: symlinks, devices and fifos cannot carry `user.*` xattrs (their owner is
//! recorded as root); the sandbox itself still *sees* such files as root-owned; and a RUN
//! that chowns an override-carrying file back to exactly 0:0 is not noticed.

use std::path::{Path, PathBuf};

/// The xattr holding the intended container owner (`"uid:gid"`) of a node that an
/// unprivileged process could not chown.
pub const OWNER_XATTR: &str = "user.kiln.owner";

/// What a host id outside the mapping becomes in a container view (and in layer tars):
/// the kernel's default overflow id, `nobody`.
pub const OVERFLOW_ID: u32 = 65534;

/// `len` consecutive ids starting at `container` inside, `host` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub len: u32,
}

/// One direction-agnostic id map (the contents of a `uid_map` or `gid_map`). The first
/// matching range wins in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct IdMap {
    ranges: Vec<IdRange>,
}

impl IdMap {
    pub fn new(ranges: Vec<IdRange>) -> IdMap {
        IdMap { ranges }
    }

    /// Every id maps to itself (all but `u32::MAX`, which is `(uid_t)-1`, never an id).
    pub fn identity() -> IdMap {
        IdMap::new(vec![IdRange {
            container: 0,
            host: 0,
            len: u32::MAX,
        }])
    }

    pub fn ranges(&self) -> &[IdRange] {
        &self.ranges
    }

    /// The container id a host id appears as; None when unmapped.
    pub fn to_container(&self, host: u32) -> Option<u32> {
        self.ranges.iter().find_map(|r| {
            let off = host.checked_sub(r.host).filter(|&o| o < r.len)?;
            r.container.checked_add(off)
        })
    }

    /// The host id behind a container id; None when unmapped.
    pub fn to_host(&self, container: u32) -> Option<u32> {
        self.ranges.iter().find_map(|r| {
            let off = container.checked_sub(r.container).filter(|&o| o < r.len)?;
            r.host.checked_add(off)
        })
    }
}

/// The uid and gid maps of a user namespace (or the identity when there is none).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdMapping {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl IdMapping {
    /// No user namespace: container ids are host ids.
    pub fn identity() -> IdMapping {
        IdMapping {
            uid: IdMap::identity(),
            gid: IdMap::identity(),
        }
    }

    /// Container 0 ↔ `uid`/`gid`, nothing else.
    pub fn single(uid: u32, gid: u32) -> IdMapping {
        let one = |host| {
            IdMap::new(vec![IdRange {
                container: 0,
                host,
                len: 1,
            }])
        };
        IdMapping {
            uid: one(uid),
            gid: one(gid),
        }
    }

    /// Container 0 ↔ `uid`/`gid`, container 1..=count ↔ the subordinate `(start, count)`
    /// ranges — what kiln-sandbox asks `newuidmap`/`newgidmap` for.
    pub fn subordinate(uid: u32, gid: u32, subuid: (u32, u32), subgid: (u32, u32)) -> IdMapping {
        let map = |id, (start, count)| {
            IdMap::new(vec![
                IdRange {
                    container: 0,
                    host: id,
                    len: 1,
                },
                IdRange {
                    container: 1,
                    host: start,
                    len: count,
                },
            ])
        };
        IdMapping {
            uid: map(uid, subuid),
            gid: map(gid, subgid),
        }
    }

    /// The mapping kiln-sandbox's `IdMapPolicy::Auto` uses for this process: the identity
    /// as root, otherwise [`detect_rootless`]'s. Computed once per process.
    pub fn for_current_process() -> IdMapping {
        static CURRENT: std::sync::OnceLock<IdMapping> = std::sync::OnceLock::new();
        CURRENT
            .get_or_init(|| {
                if crate::running_as_root() {
                    IdMapping::identity()
                } else {
                    detect_rootless().mapping()
                }
            })
            .clone()
    }

    pub fn is_identity(&self) -> bool {
        *self == IdMapping::identity()
    }

    /// Host owner → container owner; unmapped ids become [`OVERFLOW_ID`].
    pub fn container_owner(&self, host_uid: u32, host_gid: u32) -> (u32, u32) {
        (
            self.uid.to_container(host_uid).unwrap_or(OVERFLOW_ID),
            self.gid.to_container(host_gid).unwrap_or(OVERFLOW_ID),
        )
    }

    /// The container owner of a node of a rootless tree owned by `host_uid`/`host_gid` and
    /// carrying the owner override `over` (module docs): the mapped owner, with each id
    /// that maps to container 0 — the id an unprivileged unpacker had to leave — replaced
    /// by the override's.
    pub fn effective_owner(
        &self,
        host_uid: u32,
        host_gid: u32,
        over: Option<(u32, u32)>,
    ) -> (u32, u32) {
        let (uid, gid) = self.container_owner(host_uid, host_gid);
        match over {
            Some((ou, og)) => (
                if uid == 0 { ou } else { uid },
                if gid == 0 { og } else { gid },
            ),
            None => (uid, gid),
        }
    }

    /// Container owner → host owner; None for either when unmapped.
    pub fn host_owner(&self, uid: u32, gid: u32) -> (Option<u32>, Option<u32>) {
        (self.uid.to_host(uid), self.gid.to_host(gid))
    }
}

/// The value of [`OWNER_XATTR`] for a container owner.
pub fn format_owner(uid: u32, gid: u32) -> String {
    format!("{uid}:{gid}")
}

/// Parses an [`OWNER_XATTR`] value; None for anything but `"<u32>:<u32>"`.
pub fn parse_owner(value: &[u8]) -> Option<(u32, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (u, g) = s.split_once(':')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(u) || !digits(g) {
        return None;
    }
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// What an unprivileged process can map: its own ids, and the subordinate ranges when
/// `/etc/subuid`, `/etc/subgid` list it *and* `newuidmap`/`newgidmap` exist to install them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootlessIds {
    pub uid: u32,
    pub gid: u32,
    pub subordinate: Option<SubordinateIds>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubordinateIds {
    /// `(start, count)`.
    pub subuid: (u32, u32),
    pub subgid: (u32, u32),
    pub newuidmap: PathBuf,
    pub newgidmap: PathBuf,
}

impl RootlessIds {
    pub fn mapping(&self) -> IdMapping {
        match &self.subordinate {
            Some(s) => IdMapping::subordinate(self.uid, self.gid, s.subuid, s.subgid),
            None => IdMapping::single(self.uid, self.gid),
        }
    }
}

/// Reads `/etc/passwd`, `/etc/subuid`, `/etc/subgid` and looks for the map tools, for the
/// effective ids of this process.
pub fn detect_rootless() -> RootlessIds {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|p| user_name(&p, uid));
    let range = |file: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|s| sub_range(&s, name.as_deref(), uid))
    };
    let subordinate = match (
        find_tool("newuidmap"),
        find_tool("newgidmap"),
        range("/etc/subuid"),
        range("/etc/subgid"),
    ) {
        (Some(newuidmap), Some(newgidmap), Some(subuid), Some(subgid)) => Some(SubordinateIds {
            subuid,
            subgid,
            newuidmap,
            newgidmap,
        }),
        _ => None,
    };
    RootlessIds {
        uid,
        gid,
        subordinate,
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

    #[test]
    fn subordinate_mapping_both_directions() {
        let m = IdMapping::subordinate(1001, 1002, (200000, 65536), (300000, 1000));
        // container root is the user
        assert_eq!(m.uid.to_container(1001), Some(0));
        assert_eq!(m.gid.to_container(1002), Some(0));
        assert_eq!(m.uid.to_host(0), Some(1001));
        // container N is start + N - 1
        assert_eq!(m.uid.to_host(1234), Some(201233));
        assert_eq!(m.uid.to_container(201233), Some(1234));
        assert_eq!(m.uid.to_host(1), Some(200000));
        assert_eq!(m.uid.to_host(65536), Some(265535));
        assert_eq!(m.uid.to_host(65537), None);
        assert_eq!(m.uid.to_container(265536), None);
        assert_eq!(m.uid.to_container(199999), None);
        assert_eq!(m.gid.to_host(1000), Some(300999));
        assert_eq!(m.gid.to_host(1001), None);
        // host root is not mapped at all
        assert_eq!(m.uid.to_container(0), None);
        assert_eq!(m.container_owner(0, 300001), (OVERFLOW_ID, 2));
        assert_eq!(m.host_owner(0, 5000), (Some(1001), None));
        // round trip over the whole range
        for c in [0u32, 1, 2, 999, 65535, 65536] {
            assert_eq!(m.uid.to_container(m.uid.to_host(c).unwrap()), Some(c));
        }
        assert!(!m.is_identity());
        // the override only replaces ids still at container 0
        assert_eq!(m.effective_owner(1001, 1002, Some((5, 6))), (5, 6));
        assert_eq!(m.effective_owner(201233, 1002, Some((5, 6))), (1234, 6));
        assert_eq!(m.effective_owner(201233, 300005, Some((5, 7))), (1234, 6));
        assert_eq!(m.effective_owner(7, 1002, None), (OVERFLOW_ID, 0));
    }

    #[test]
    fn single_and_identity() {
        let s = IdMapping::single(1000, 1000);
        assert_eq!(s.uid.to_container(1000), Some(0));
        assert_eq!(s.uid.to_host(1), None);
        assert_eq!(s.container_owner(1000, 5), (0, OVERFLOW_ID));
        let id = IdMapping::identity();
        assert!(id.is_identity());
        assert_eq!(id.uid.to_container(0), Some(0));
        assert_eq!(id.uid.to_host(u32::MAX - 1), Some(u32::MAX - 1));
        assert_eq!(id.uid.to_host(u32::MAX), None);
        assert_eq!(id.container_owner(4321, 8765), (4321, 8765));
    }

    #[test]
    fn first_range_wins_and_no_overflow() {
        let m = IdMap::new(vec![
            IdRange {
                container: 0,
                host: 10,
                len: 5,
            },
            IdRange {
                container: 3,
                host: 100,
                len: 5,
            },
            IdRange {
                container: u32::MAX - 1,
                host: 500,
                len: 10,
            },
        ]);
        assert_eq!(m.to_host(3), Some(13)); // first range
        assert_eq!(m.to_container(101), Some(4));
        assert_eq!(m.to_container(502), None); // container id would overflow u32
        assert_eq!(IdMap::default().to_host(0), None);
    }

    #[test]
    fn owner_xattr_values() {
        assert_eq!(format_owner(1234, 50), "1234:50");
        assert_eq!(parse_owner(b"1234:50"), Some((1234, 50)));
        assert_eq!(parse_owner(b"0:0"), Some((0, 0)));
        for bad in [
            &b""[..],
            b":",
            b"1:",
            b":1",
            b"-1:2",
            b"+1:2",
            b"1:2:3",
            b" 1:2",
            b"4294967296:0",
            b"\xff:1",
        ] {
            assert_eq!(parse_owner(bad), None, "{bad:?}");
        }
    }
}
