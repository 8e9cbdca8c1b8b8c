//! USER / --chown names, resolved against the image's own /etc/passwd and /etc/group.

use crate::error::OpError;
use kiln_fs::SafeRoot;
use std::io::Read;
use std::path::Path;

const MAX_DB: u64 = 4 << 20;

/// Reads a small file through the safe root; None when absent.
pub fn read_small(root: &SafeRoot, path: &str) -> Result<Option<String>, OpError> {
    let p = Path::new(path);
    match root.try_lstat(p)? {
        Some(m) if m.kind == kiln_fs::FileKind::Regular => {
            let mut f = root.open_file(p, rustix::fs::OFlags::RDONLY, 0)?;
            let mut s = String::new();
            (&mut f)
                .take(MAX_DB)
                .read_to_string(&mut s)
                .map_err(OpError::io("read", path))?;
            Ok(Some(s))
        }
        _ => Ok(None),
    }
}

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

/// Resolves `spec` in the filesystem `root` (its /etc/passwd and /etc/group).
pub fn resolve_in(root: &SafeRoot, spec: &str) -> Result<(u32, u32, Vec<u32>), OpError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new()));
    }
    let all_numeric = spec
        .split(':')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if all_numeric {
        return resolve(spec, None, None);
    }
    let passwd = read_small(root, "etc/passwd")?;
    let group = read_small(root, "etc/group")?;
    resolve(spec, passwd.as_deref(), group.as_deref())
}
