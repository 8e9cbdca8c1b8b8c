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
}
