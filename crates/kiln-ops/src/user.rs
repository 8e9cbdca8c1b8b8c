//! USER / --chown names, resolved against the image's own /etc/passwd and /etc/group.

use crate::error::OpError;
use std::path::Path;

const MAX_DB: u64 = 4 << 20;

/// `user[:group]` → (uid, gid, supplementary gids) with the given passwd/group texts.
pub fn resolve(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<(u32, u32, Vec<u32>), OpError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    kiln_sandbox::resolve_user(spec, passwd.unwrap_or(""), group.unwrap_or("")).map_err(|e| {
        OpError::User {
            user: spec.to_string(),
            message: e.to_string(),
        }
    })
}

/// The image's /etc/passwd and /etc/group as a step's root presents them, read once per
/// file operation for `--chown` and WORKDIR owners. Read through the active snapshot, not
/// through the closure's view: without root that view is the upper directory alone.
pub struct UserDb {
    passwd: Option<String>,
    group: Option<String>,
}

impl UserDb {
    pub fn read(active: &kiln_snapshot::Active) -> Result<UserDb, OpError> {
        let text = |p: &str| -> Result<Option<String>, OpError> {
            Ok(active
                .read_file(Path::new(p), MAX_DB)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        Ok(UserDb {
            passwd: text("etc/passwd")?,
            group: text("etc/group")?,
        })
    }

    /// `user[:group]` (names or ids) → (uid, gid, supplementary gids).
    pub fn resolve(&self, spec: &str) -> Result<(u32, u32, Vec<u32>), OpError> {
        let all_numeric = spec
            .split(':')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if all_numeric {
            return resolve(spec, None, None);
        }
        resolve(spec, self.passwd.as_deref(), self.group.as_deref())
    }

    /// The home directory a step running as `spec` gets as `HOME` (runc's rule, which
    /// BuildKit follows): the passwd entry of the user's name, or of its uid when the
    /// user is numeric; `/` when there is none.
    pub fn home(&self, spec: &str, uid: u32) -> String {
        let user = spec.split(':').next().unwrap_or("");
        let numeric = user.is_empty() || user.bytes().all(|b| b.is_ascii_digit());
        home_in(self.passwd.as_deref().unwrap_or(""), user, numeric, uid)
    }
}

fn home_in(passwd: &str, user: &str, numeric: bool, uid: u32) -> String {
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 6 || line.starts_with('#') {
            continue;
        }
        let hit = if numeric {
            f[2].parse::<u32>().ok() == Some(uid)
        } else {
            f[0] == user
        };
        if hit && !f[5].is_empty() {
            return f[5].to_string();
        }
        if hit {
            break;
        }
    }
    "/".to_string()
}

#[cfg(test)]
mod tests {
    use super::home_in;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          app:x:1000:1000::/home/app:/bin/sh\n\
                          nohome:x:1001:1001:::/bin/sh\n";

    #[test]
    fn home_comes_from_passwd_by_name_or_uid_and_defaults_to_slash() {
        assert_eq!(home_in(PASSWD, "", true, 0), "/root");
        assert_eq!(home_in(PASSWD, "app", false, 1000), "/home/app");
        assert_eq!(home_in(PASSWD, "1000", true, 1000), "/home/app");
        assert_eq!(home_in(PASSWD, "4242", true, 4242), "/");
        assert_eq!(home_in(PASSWD, "nohome", false, 1001), "/");
        assert_eq!(home_in("", "", true, 0), "/");
    }
}
