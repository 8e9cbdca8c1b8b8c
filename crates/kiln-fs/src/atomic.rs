//! Atomic replacement of a file in one of kiln's own (trusted) directories: metadata,
//! cache records, snapshot descriptions. Untrusted trees go through [`crate::SafeRoot`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread uses at the same time: pid + time + counter.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos:x}-{n}", std::process::id())
}

/// Writes `bytes` to `dest` via a fsynced temp file in the same directory and a rename,
/// then fsyncs the directory: readers see the old or the new file, never a partial one.
/// The error says which step failed on which path.
pub fn write_file(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_mode(dest, bytes, 0o666)
}

/// [`write_file`] with the permission bits the file is created with (before the umask).
/// Secrets (credential files) pass 0o600 so no reader ever sees them world-readable, not
/// even between create and a later chmod.
pub fn write_file_mode(dest: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(unique_name(".tmp"));
    let step = |what: &str, p: &Path| {
        let p = p.display().to_string();
        let what = what.to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{what} {p}: {e}"))
    };
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(step("create", &tmp))?;
        f.write_all(bytes).map_err(step("write", &tmp))?;
        f.sync_all().map_err(step("fsync", &tmp))?;
        fs::rename(&tmp, dest).map_err(step("rename into place", dest))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(step("fsync directory", dir))
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_file(&dir.path().join("missing/f"), b"x").is_err());
    }

    #[test]
    fn mode_is_set_at_creation() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.json");
        write_file_mode(&p, b"{}", 0o600).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
