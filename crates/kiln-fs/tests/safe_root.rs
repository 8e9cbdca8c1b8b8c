//! SafeRoot confinement, run with both resolvers (openat2 and the manual walk).

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_fs::{copy, CopyOptions, Error, FileKind, Resolver, SafeRoot};
use rustix::fs::OFlags;

struct Env {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    victim: std::path::PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let victim = tmp.path().join("victim");
    std::fs::create_dir_all(root.join("dir")).unwrap();
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("secret"), b"outside").unwrap();
    std::fs::write(root.join("dir/secret"), b"inside").unwrap();
    Env {
        _tmp: tmp,
        root,
        victim,
    }
}

fn each(f: impl Fn(&Env, &SafeRoot)) {
    for r in [Resolver::Openat2, Resolver::Walk] {
        let e = env();
        let sr = SafeRoot::open_with(&e.root, r).unwrap();
        f(&e, &sr);
        assert_eq!(
            std::fs::read(e.victim.join("secret")).unwrap(),
            b"outside",
            "{r:?}"
        );
    }
}

fn read(sr: &SafeRoot, p: &str) -> Result<Vec<u8>, Error> {
    let mut f = sr.open_file(Path::new(p), OFlags::RDONLY, 0)?;
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut v).unwrap();
    Ok(v)
}

#[test]
fn absolute_symlink_resolves_inside_root() {
    each(|e, sr| {
        std::os::unix::fs::symlink(&e.victim, e.root.join("abs")).unwrap();
        std::os::unix::fs::symlink("/dir", e.root.join("abs-in")).unwrap();
        assert!(read(sr, "abs/secret").unwrap_err().is_not_found());
        assert_eq!(read(sr, "abs-in/secret").unwrap(), b"inside");
    });
}

#[test]
fn dotdot_in_symlink_is_clamped_at_root() {
    each(|e, sr| {
        std::os::unix::fs::symlink("../../../../dir", e.root.join("dir/up")).unwrap();
        assert_eq!(read(sr, "dir/up/secret").unwrap(), b"inside");
        std::os::unix::fs::symlink("../victim", e.root.join("rel")).unwrap();
        assert!(read(sr, "rel/secret").is_err());
    });
}

#[test]
fn escaping_names_are_rejected_lexically() {
    each(|_, sr| {
        assert!(matches!(
            read(sr, "../victim/secret"),
            Err(Error::PathEscapes { .. })
        ));
        assert_eq!(read(sr, "/dir/../dir/secret").unwrap(), b"inside");
    });
}

#[test]
fn symlink_loop_reports_eloop() {
    each(|e, sr| {
        std::os::unix::fs::symlink("b", e.root.join("a")).unwrap();
        std::os::unix::fs::symlink("a", e.root.join("b")).unwrap();
        assert!(matches!(read(sr, "a"), Err(Error::SymlinkLoop { .. })));
    });
}

#[test]
fn final_symlink_is_never_followed_by_create_chmod_chown_remove() {
    each(|e, sr| {
        let target = e.victim.join("secret");
        std::os::unix::fs::symlink(&target, e.root.join("link")).unwrap();
        assert!(sr.create_or_truncate(Path::new("link"), 0o644).is_err());
        assert!(sr.create_file_excl(Path::new("link"), 0o644).is_err());
        sr.chmod(Path::new("link"), 0o777).unwrap();
        if kiln_fs::running_as_root() {
            sr.chown(Path::new("link"), 4242, 4242).unwrap();
            assert_eq!(
                std::fs::symlink_metadata(e.root.join("link"))
                    .unwrap()
                    .uid(),
                4242
            );
            assert_ne!(std::fs::metadata(&target).unwrap().uid(), 4242);
        }
        assert_ne!(
            std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o777
        );
        sr.set_times(Path::new("link"), (1, 0), (1, 0)).unwrap();
        assert_ne!(std::fs::metadata(&target).unwrap().mtime(), 1);
        std::os::unix::fs::symlink(&e.victim, e.root.join("dirlink")).unwrap();
        sr.remove_all(Path::new("dirlink")).unwrap();
        assert!(e.victim.join("secret").exists());
        assert!(!e.root.join("dirlink").exists());
    });
}

#[test]
fn mkdir_all_follows_in_root_symlinks_and_refuses_dangling_ones() {
    each(|e, sr| {
        std::os::unix::fs::symlink("dir", e.root.join("lib")).unwrap();
        sr.mkdir_all(Path::new("lib/x/y"), 0o755).unwrap();
        assert!(e.root.join("dir/x/y").is_dir());
        std::os::unix::fs::symlink(&e.victim, e.root.join("out")).unwrap();
        assert!(sr.mkdir_all(Path::new("out/z"), 0o755).is_err());
        assert!(!e.victim.join("z").exists());
    });
}

#[test]
fn hardlink_refuses_non_regular_sources() {
    each(|e, sr| {
        std::os::unix::fs::symlink(e.victim.join("secret"), e.root.join("s")).unwrap();
        assert!(matches!(
            sr.hardlink(Path::new("s"), Path::new("h")),
            Err(Error::HardlinkSource { .. })
        ));
        assert!(matches!(
            sr.hardlink(Path::new("dir"), Path::new("h")),
            Err(Error::HardlinkSource { .. })
        ));
        sr.hardlink(Path::new("dir/secret"), Path::new("h"))
            .unwrap();
        assert_eq!(std::fs::read(e.root.join("h")).unwrap(), b"inside");
    });
}

#[test]
fn xattrs_set_and_list_without_following() {
    each(|e, sr| {
        sr.set_xattr(Path::new("dir/secret"), OsStr::new("user.k"), b"v")
            .unwrap();
        let x = sr.list_xattrs(Path::new("dir/secret")).unwrap();
        assert!(x.iter().any(|(k, v)| k == "user.k" && v == b"v"));
        std::os::unix::fs::symlink(e.victim.join("secret"), e.root.join("l")).unwrap();
        // user.* xattrs are not allowed on symlinks: the call must not reach the target.
        assert!(sr
            .set_xattr(Path::new("l"), OsStr::new("user.k"), b"v")
            .is_err());
    });
}

#[test]
fn device_nodes_need_privilege() {
    each(|_, sr| {
        let r = sr.mknod(Path::new("null"), FileKind::CharDevice, 0o666, 1, 3);
        if kiln_fs::running_as_root() {
            r.unwrap();
        } else {
            assert!(matches!(r, Err(Error::DeviceNodeNotPermitted { .. })));
        }
        sr.mknod(Path::new("fifo"), FileKind::Fifo, 0o600, 0, 0)
            .unwrap();
    });
}

#[test]
fn copy_between_roots_preserves_metadata_and_hardlinks() {
    each(|e, sr| {
        let d = e.root.join("dir");
        std::fs::write(d.join("a"), b"hello").unwrap();
        std::fs::hard_link(d.join("a"), d.join("b")).unwrap();
        std::fs::set_permissions(d.join("a"), std::fs::Permissions::from_mode(0o4711)).unwrap();
        std::os::unix::fs::symlink(&e.victim, d.join("out")).unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let dst = SafeRoot::open(dst_dir.path()).unwrap();
        let stats = copy(
            sr,
            Path::new("dir"),
            &dst,
            Path::new("copied"),
            &CopyOptions {
                xattrs: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(stats.hardlinks, 1);
        let c = dst_dir.path().join("copied");
        let (ma, mb) = (
            std::fs::metadata(c.join("a")).unwrap(),
            std::fs::metadata(c.join("b")).unwrap(),
        );
        assert_eq!(ma.ino(), mb.ino());
        assert_eq!(ma.mode() & 0o7777, 0o4711);
        assert_eq!(std::fs::read_link(c.join("out")).unwrap(), e.victim);
        assert_eq!(std::fs::read(c.join("secret")).unwrap(), b"inside");
    });
}

#[test]
fn clear_dir_keeps_selected_entries() {
    each(|e, sr| {
        std::fs::create_dir_all(e.root.join("dir/keep/sub")).unwrap();
        std::fs::write(e.root.join("dir/keep/sub/new"), b"").unwrap();
        std::fs::write(e.root.join("dir/keep/old"), b"").unwrap();
        let keep = |p: &Path| {
            ["dir/keep", "dir/keep/sub", "dir/keep/sub/new"]
                .iter()
                .any(|k| Path::new(k) == p)
        };
        sr.clear_dir(Path::new("dir"), &keep).unwrap();
        assert!(e.root.join("dir/keep/sub/new").exists());
        assert!(!e.root.join("dir/keep/old").exists());
        assert!(!e.root.join("dir/secret").exists());
    });
}
