//! `USER` resolution against the image's `/etc/passwd` and `/etc/group`.
//! Pure: the caller reads those files (through the safe root) and the sandbox
//! only ever sees numbers.

/// Why a `USER` string could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid user specification {0:?}")]
    Invalid(String),
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 4 {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if line.starts_with('#') || f.len() < 3 {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f
                .get(3)
                .map(|m| m.split(',').filter(|s| !s.is_empty()).collect())
                .unwrap_or_default(),
        })
    })
}

/// Resolves a Dockerfile `USER` value — `name`, `uid`, `name:group`,
/// `uid:gid` (either side numeric or a name) — to `(uid, gid, supplementary
/// gids)`, following runc's rules:
///
/// - an empty string is root;
/// - a name must exist in `passwd`; a numeric uid need not (its gid is then 0);
/// - without an explicit group the gid is the passwd entry's and the
///   supplementary groups are every `group` entry listing the user's name;
/// - with an explicit group (name must exist in `group`; a number need not)
///   there are no supplementary groups.
pub fn resolve_user(
    user_spec: &str,
    passwd: &str,
    group: &str,
) -> Result<(u32, u32, Vec<u32>), UserError> {
    let (user_part, group_part) = match user_spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user_spec, None),
    };
    if user_part.is_empty() && group_part.is_some() {
        return Err(UserError::Invalid(user_spec.to_owned()));
    }
    let (uid, mut gid, name) = if user_part.is_empty() {
        (0, 0, Some("root"))
    } else if let Ok(uid) = user_part.parse::<u32>() {
        match passwd_entries(passwd).find(|e| e.uid == uid) {
            Some(e) => (uid, e.gid, Some(e.name)),
            None => (uid, 0, None),
        }
    } else {
        let e = passwd_entries(passwd)
            .find(|e| e.name == user_part)
            .ok_or_else(|| UserError::NoSuchUser(user_part.to_owned()))?;
        (e.uid, e.gid, Some(e.name))
    };
    let mut groups = Vec::new();
    match group_part {
        Some("") => return Err(UserError::Invalid(user_spec.to_owned())),
        Some(g) => {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => {
                    group_entries(group)
                        .find(|e| e.name == g)
                        .ok_or_else(|| UserError::NoSuchGroup(g.to_owned()))?
                        .gid
                }
            };
        }
        None => {
            if let Some(name) = name {
                for e in group_entries(group) {
                    if e.members.contains(&name) && !groups.contains(&e.gid) {
                        groups.push(e.gid);
                    }
                }
            }
        }
    }
    Ok((uid, gid, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\nbad line\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str =
        "root:x:0:\nwheel:x:10:root,app\naudio:x:29:app\napp:x:1000:\nwww-data:x:33:\n";

    #[test]
    fn forms() {
        assert_eq!(resolve_user("", PASSWD, GROUP), Ok((0, 0, vec![10])));
        assert_eq!(resolve_user("root", PASSWD, GROUP), Ok((0, 0, vec![10])));
        assert_eq!(
            resolve_user("app", PASSWD, GROUP),
            Ok((1000, 1000, vec![10, 29]))
        );
        assert_eq!(
            resolve_user("1000", PASSWD, GROUP),
            Ok((1000, 1000, vec![10, 29]))
        );
        assert_eq!(resolve_user("4242", PASSWD, GROUP), Ok((4242, 0, vec![])));
        assert_eq!(
            resolve_user("app:www-data", PASSWD, GROUP),
            Ok((1000, 33, vec![]))
        );
        assert_eq!(resolve_user("33:7", PASSWD, GROUP), Ok((33, 7, vec![])));
        assert_eq!(resolve_user("4242:4343", "", ""), Ok((4242, 4343, vec![])));
    }

    #[test]
    fn errors() {
        assert_eq!(
            resolve_user("nobody", PASSWD, GROUP),
            Err(UserError::NoSuchUser("nobody".into()))
        );
        assert_eq!(
            resolve_user("app:nogroup", PASSWD, GROUP),
            Err(UserError::NoSuchGroup("nogroup".into()))
        );
        assert!(matches!(
            resolve_user(":0", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
        assert!(matches!(
            resolve_user("app:", PASSWD, GROUP),
            Err(UserError::Invalid(_))
        ));
    }
}
