//! Where the store lives: `--root`, else `$KILN_ROOT`, else `/var/lib/kiln` for root, else
//! `$XDG_DATA_HOME/kiln`, else `~/.local/share/kiln`. The decision is a pure function
//! ([`resolve_root`]) so it can be tested without touching the real environment.

use crate::error::{Result, StoreError};
use std::ffi::OsString;
use std::path::PathBuf;

/// Resolves the store root from explicit inputs. Empty values count as unset, as with
/// most XDG-aware tools.
pub fn resolve_root(
    flag: Option<PathBuf>,
    kiln_root: Option<OsString>,
    euid_is_root: bool,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf> {
    let set = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
    if let Some(p) = flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p);
    }
    if let Some(p) = set(kiln_root) {
        return Ok(p);
    }
    if euid_is_root {
        return Ok(PathBuf::from("/var/lib/kiln"));
    }
    // XDG requires an absolute path; a relative one is ignored.
    if let Some(p) = set(xdg_data_home).filter(|p| p.is_absolute()) {
        return Ok(p.join("kiln"));
    }
    if let Some(h) = set(home) {
        return Ok(h.join(".local").join("share").join("kiln"));
    }
    Err(StoreError::NoRoot(
        "neither --root, KILN_ROOT, XDG_DATA_HOME nor HOME is set".into(),
    ))
}

/// [`resolve_root`] with the process environment and effective uid.
pub fn default_root(flag: Option<PathBuf>) -> Result<PathBuf> {
    resolve_root(
        flag,
        std::env::var_os("KILN_ROOT"),
        rustix::process::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(s.into())
    }

    #[test]
    fn precedence() {
        let r = |f: Option<&str>, k, root, x, h| {
            resolve_root(f.map(PathBuf::from), k, root, x, h).unwrap()
        };
        assert_eq!(
            r(Some("/f"), os("/k"), true, os("/x"), os("/h")),
            PathBuf::from("/f")
        );
        assert_eq!(
            r(None, os("/k"), true, os("/x"), os("/h")),
            PathBuf::from("/k")
        );
        assert_eq!(
            r(None, None, true, os("/x"), os("/h")),
            PathBuf::from("/var/lib/kiln")
        );
        assert_eq!(
            r(None, None, false, os("/x"), os("/h")),
            PathBuf::from("/x/kiln")
        );
        assert_eq!(
            r(None, os(""), false, os("rel"), os("/h")),
            PathBuf::from("/h/.local/share/kiln")
        );
        assert!(resolve_root(None, None, false, None, None).is_err());
    }
}
