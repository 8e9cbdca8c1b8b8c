//! kiln-snapshot against a real store. Tests that need root (trusted.* xattrs, mknod of
//! whiteouts, overlay mounts) skip themselves when not root.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_archive::{EntryHeader, EntryKind, TarBuilder};
use kiln_oci::spec::Descriptor;
use kiln_oci::Digest;
use kiln_snapshot::{
    chain_ids, ActiveMount, CommitOptions, LayerCompression, Snapshots, Snapshotter,
};
use kiln_store::Store;

fn is_root() -> bool {
    kiln_fs::running_as_root()
}

enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a str),
    Link(&'a str, &'a str),
}

/// A layer tar + gzip blob in the store; returns (descriptor, diff_id).
fn layer(store: &Store, entries: &[E]) -> (Descriptor, Digest) {
    let mut tar = TarBuilder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p) => {
                let mut h = EntryHeader::new(*p, EntryKind::Directory);
                h.mtime = 1_700_000_000;
                tar.append(&h, &mut std::io::empty()).unwrap();
            }
            E::File(p, c) => {
                let mut h = EntryHeader::new(*p, EntryKind::Regular);
                h.size = c.len() as u64;
                h.mtime = 1_700_000_000;
                tar.append(&h, &mut c.as_bytes()).unwrap();
            }
            E::Link(p, t) => {
                let mut h = EntryHeader::new(*p, EntryKind::Symlink);
                h.link_name = Some((*t).into());
                tar.append(&h, &mut std::io::empty()).unwrap();
            }
        }
    }
    let tar = tar.finish().unwrap();
    let diff_id = Digest::of_bytes(&tar);
    let mut gz = kiln_archive::compress(Vec::new(), kiln_archive::Compression::Gzip, None).unwrap();
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let info = store.put_bytes(None, &gz).unwrap();
    (info.descriptor(kiln_oci::media::OCI_LAYER_GZIP), diff_id)
}

fn base(store: &Store) -> (Descriptor, Digest) {
    layer(
        store,
        &[
            E::Dir("etc"),
            E::File("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            E::File("etc/keep", "keep\n"),
            E::File("etc/gone", "gone\n"),
            E::Dir("opt"),
            E::Dir("opt/old"),
            E::File("opt/old/a", "a\n"),
            E::Dir("var"),
            E::Dir("var/lib"),
            E::File("var/lib/data", "data\n"),
        ],
    )
}

/// [`base`] unpacked: the lower of the commit tests.
fn base_snapshot(store: &Store, snaps: &Snapshots) -> kiln_snapshot::SnapshotId {
    let (desc, diff_id) = base(store);
    snaps
        .ensure_layer_snapshot(&[diff_id], &desc, &limits())
        .unwrap()
}

/// Root with unshare(1): an overlay can be mounted in a throwaway mount namespace.
fn can_mount_overlay() -> bool {
    is_root() && Command::new("unshare").arg("--version").output().is_ok()
}

fn limits() -> kiln_archive::DecodeLimits {
    kiln_archive::DecodeLimits::default()
}

fn open() -> (tempfile::TempDir, Store, Snapshots) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let snaps = Snapshots::open(&store).unwrap();
    (dir, store, snaps)
}

fn tmp_is_empty(snaps: &Snapshots) -> bool {
    std::fs::read_dir(snaps.dir().join("tmp")).unwrap().count() == 0
}

/// Entry names of a layer blob, in order; whiteouts keep their `.wh.` names.
fn layer_names(store: &Store, digest: &Digest) -> Vec<String> {
    let f = store.open_blob(digest).unwrap();
    let mut names = Vec::new();
    kiln_archive::read_entries(f, &limits(), |h, _| {
        names.push(h.path.to_string_lossy().into_owned());
        Ok(())
    })
    .unwrap();
    names
}

#[test]
fn unpacks_once_and_shares() {
    let (_d, store, snaps) = open();
    // A layer no other test uses, so the per-snapshot unpack counter is ours alone.
    let (desc, diff_id) = layer(
        &store,
        &[
            E::Dir("etc"),
            E::File("etc/keep", "keep\n"),
            E::File("only-here", "1"),
        ],
    );
    let ids: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let snaps = snaps.clone();
                let (desc, diff_id) = (desc.clone(), diff_id.clone());
                s.spawn(move || {
                    snaps
                        .ensure_layer_snapshot(&[diff_id], &desc, &limits())
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids[0], ids[1]);
    assert_eq!(
        kiln_snapshot::unpack_count(&ids[0]),
        1,
        "unpacked exactly once"
    );
    assert_eq!(snaps.list().unwrap(), vec![ids[0].clone()]);
    assert!(tmp_is_empty(&snaps));
    let meta = snaps.meta(&ids[0]).unwrap();
    assert_eq!(meta.diff_id, diff_id);
    assert_eq!(meta.chain_id, diff_id, "bottom layer: chain id = diff_id");
    assert_eq!(meta.parent, None);
    let fs = snaps.snapshot_fs(&ids[0]);
    assert_eq!(
        std::fs::read_to_string(fs.join("etc/keep")).unwrap(),
        "keep\n"
    );
    // A second call is a no-op.
    snaps
        .ensure_layer_snapshot(std::slice::from_ref(&diff_id), &desc, &limits())
        .unwrap();
    assert_eq!(kiln_snapshot::unpack_count(&ids[0]), 1);
}

#[test]
fn stacked_image_layers_use_chain_ids() {
    let (_d, store, snaps) = open();
    let (d0, id0) = base(&store);
    let (d1, id1) = layer(&store, &[E::Dir("etc"), E::File("etc/.wh.gone", "")]);
    let ids = [
        snaps
            .ensure_layer_snapshot(std::slice::from_ref(&id0), &d0, &limits())
            .unwrap(),
        snaps
            .ensure_layer_snapshot(&[id0.clone(), id1.clone()], &d1, &limits())
            .unwrap(),
    ];
    let chain = chain_ids(&[id0.clone(), id1]);
    assert_eq!(ids[1].chain_id(), &chain[1]);
    assert_eq!(snaps.meta(&ids[1]).unwrap().parent, Some(id0));
    if is_root() {
        // Overlay-native: the whiteout is a 0/0 char device.
        use std::os::unix::fs::FileTypeExt;
        let m = std::fs::symlink_metadata(snaps.snapshot_fs(&ids[1]).join("etc/gone")).unwrap();
        assert!(m.file_type().is_char_device());
    }
    // The layered lookup sees through it: etc/gone is gone, etc/passwd is there.
    let active = snaps
        .prepare_active_with(&ids, Snapshotter::Overlay)
        .unwrap();
    assert!(active
        .read_file(Path::new("etc/gone"), 1 << 20)
        .unwrap()
        .is_none());
    assert!(active
        .read_file(Path::new("/etc/passwd"), 1 << 20)
        .unwrap()
        .unwrap()
        .starts_with(b"root:"));
}

#[test]
fn diff_id_mismatch_leaves_no_snapshot() {
    let (_d, store, snaps) = open();
    let (desc, _) = base(&store);
    let wrong = Digest::of_bytes(b"not this layer");
    let err = snaps
        .ensure_layer_snapshot(&[wrong], &desc, &limits())
        .unwrap_err();
    assert!(
        matches!(err, kiln_snapshot::Error::DiffIdMismatch { .. }),
        "{err}"
    );
    assert!(snaps.list().unwrap().is_empty());
    assert!(tmp_is_empty(&snaps));
}

#[test]
fn hostile_layer_stays_confined() {
    let (d, store, snaps) = open();
    let victim = d.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("file"), "original").unwrap();
    let v = victim.to_str().unwrap().to_string();
    let (desc, diff_id) = layer(
        &store,
        &[
            E::Link("escape", &v),
            E::File("escape/file", "pwned"),
            E::File("../../file", "pwned"),
        ],
    );
    let _ = snaps.ensure_layer_snapshot(&[diff_id], &desc, &limits());
    assert_eq!(
        std::fs::read_to_string(victim.join("file")).unwrap(),
        "original"
    );
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    assert!(tmp_is_empty(&snaps));
}

/// A hand-made upper dir — new file, 0/0 whiteout, opaque dir, a mountpoint stub — turns
/// into an OCI layer with `.wh.` entries, and becomes the next snapshot.
#[test]
fn commit_converts_upper_dir_and_keeps_it_as_snapshot() {
    if !is_root() {
        eprintln!("skipping: needs root (mknod, trusted.* xattrs)");
        return;
    }
    let (_d, store, snaps) = open();
    let lower = base_snapshot(&store, &snaps);
    let active = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Overlay)
        .unwrap();
    let upper = kiln_fs::SafeRoot::open(&active.upper).unwrap();
    upper.mkdir(Path::new("etc"), 0o755).unwrap();
    upper
        .create_file_excl(Path::new("etc/new"), 0o644)
        .unwrap()
        .write_all(b"new\n")
        .unwrap();
    upper
        .mknod(
            Path::new("etc/gone"),
            kiln_fs::FileKind::CharDevice,
            0,
            0,
            0,
        )
        .unwrap();
    upper.mkdir(Path::new("opt"), 0o755).unwrap();
    upper.mkdir(Path::new("opt/old"), 0o755).unwrap();
    upper
        .set_xattr(
            Path::new("opt/old"),
            OsStr::new("trusted.overlay.opaque"),
            b"y",
        )
        .unwrap();
    upper
        .create_file_excl(Path::new("opt/old/b"), 0o644)
        .unwrap();
    // Sandbox stubs: a new /proc and an /etc/hosts file.
    upper.mkdir(Path::new("proc"), 0o755).unwrap();
    upper
        .create_file_excl(Path::new("etc/hosts"), 0o644)
        .unwrap();
    let active_dir = active.dir().to_path_buf();

    let lease = store.lease().unwrap();
    let opts = CommitOptions {
        exclude_mountpoints: vec!["/proc".into(), "/etc/hosts".into()],
        clamp_mtime: Some(0),
        ..CommitOptions::default()
    };
    let c = snaps.commit_active(active, &lease, &opts).unwrap();
    let layer = c.layer.clone().unwrap();
    assert_eq!(
        layer_names(&store, &layer.digest),
        [
            "etc",
            "etc/.wh.gone",
            "etc/new",
            "opt",
            "opt/old",
            "opt/old/.wh..wh..opq",
            "opt/old/b"
        ]
    );
    assert_eq!(c.media_type, Some(kiln_oci::media::OCI_LAYER_GZIP));
    assert!(store.has_blob(&layer.digest));
    let id = c.snapshot.unwrap();
    let meta = snaps.meta(&id).unwrap();
    assert_eq!(meta.parent.as_ref(), Some(lower.chain_id()));
    assert_eq!(meta.diff_id, layer.diff_id);
    assert!(snaps.snapshot_fs(&id).join("etc/new").is_file());
    assert!(!active_dir.exists(), "the active dir is gone after commit");

    // Deterministic: the same change committed again gives the same blob and reuses the
    // snapshot.
    let again = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Overlay)
        .unwrap();
    let up = kiln_fs::SafeRoot::open(&again.upper).unwrap();
    up.mkdir(Path::new("etc"), 0o755).unwrap();
    up.create_file_excl(Path::new("etc/new"), 0o644)
        .unwrap()
        .write_all(b"new\n")
        .unwrap();
    up.mknod(
        Path::new("etc/gone"),
        kiln_fs::FileKind::CharDevice,
        0,
        0,
        0,
    )
    .unwrap();
    up.mkdir(Path::new("opt"), 0o755).unwrap();
    up.mkdir(Path::new("opt/old"), 0o755).unwrap();
    up.set_xattr(
        Path::new("opt/old"),
        OsStr::new("trusted.overlay.opaque"),
        b"y",
    )
    .unwrap();
    up.create_file_excl(Path::new("opt/old/b"), 0o644).unwrap();
    let c2 = snaps.commit_active(again, &lease, &opts).unwrap();
    assert_eq!(c2.layer.unwrap().digest, layer.digest);
    assert!(c2.reused);

    // An empty change gives no layer and keeps the lower on top.
    let empty = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Overlay)
        .unwrap();
    let c3 = snaps.commit_active(empty, &lease, &opts).unwrap();
    assert!(c3.layer.is_none());
    assert_eq!(c3.snapshot, Some(lower));
}

const CHANGES: &str = "set -e
echo more >> etc/keep
echo fresh > etc/fresh
rm etc/gone
rm -rf opt/old && mkdir opt/old && echo b > opt/old/b
rm -rf var/lib
chmod 600 etc/passwd
mkdir -p srv/app && echo app > srv/app/main
";

/// The copy fallback and overlayfs produce the same layer for the same change.
/// Runs the shell `changes` in an overlay over `lower`, mounted in a throwaway mount
/// namespace (umask 022), and commits the result.
fn commit_through_overlay(
    snaps: &Snapshots,
    lower: &kiln_snapshot::SnapshotId,
    lease: &kiln_store::Lease,
    opts: &CommitOptions,
    changes: &str,
) -> kiln_archive::LayerDigests {
    let mut ov = snaps
        .prepare_active_with(std::slice::from_ref(lower), Snapshotter::Overlay)
        .unwrap();
    let ActiveMount::Overlay {
        lowers,
        upper,
        work,
    } = ov.mount().unwrap()
    else {
        panic!("overlay expected")
    };
    let merged: PathBuf = ov.dir().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let script = format!(
        "umask 022 && mount -t overlay overlay -o lowerdir={},upperdir={},workdir={} {m} && cd {m} && {changes}",
        lowers[0].display(),
        upper.display(),
        work.display(),
        m = merged.display()
    );
    let st = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::remove_dir(&merged).unwrap();
    snaps.commit_active(ov, lease, opts).unwrap().layer.unwrap()
}

#[test]
fn copy_fallback_matches_overlay() {
    if !can_mount_overlay() {
        eprintln!("skipping: needs root and unshare(1)");
        return;
    }
    let (_d, store, snaps) = open();
    let lower = base_snapshot(&store, &snaps);
    let lease = store.lease().unwrap();
    let opts = CommitOptions {
        clamp_mtime: Some(1000),
        compression: LayerCompression::Gzip {
            level: None,
            parallel: false,
        },
        ..CommitOptions::default()
    };

    let a = commit_through_overlay(&snaps, &lower, &lease, &opts, CHANGES);

    // Copy fallback.
    let mut cp = snaps
        .prepare_active_with(&[lower], Snapshotter::Copy)
        .unwrap();
    let ActiveMount::Dir(root) = cp.mount().unwrap() else {
        panic!("dir expected")
    };
    let st = Command::new("sh")
        .arg("-c")
        .arg(CHANGES)
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(st.success());
    let b = snaps
        .commit_active(cp, &lease, &opts)
        .unwrap()
        .layer
        .unwrap();

    let names = layer_names(&store, &a.digest);
    assert_eq!(
        names,
        [
            "etc",
            "etc/fresh",
            "etc/.wh.gone",
            "etc/keep",
            "etc/passwd",
            "opt",
            "opt/old",
            "opt/old/.wh..wh..opq",
            "opt/old/b",
            "srv",
            "srv/app",
            "srv/app/main",
            "var",
            "var/.wh.lib"
        ]
    );
    assert_eq!(names, layer_names(&store, &b.digest));
    assert_eq!(a.diff_id, b.diff_id);
}

#[test]
fn prune_keeps_referenced_and_live_snapshots() {
    let (_d, store, snaps) = open();
    let (d0, id0) = base(&store);
    let (d1, id1) = layer(&store, &[E::File("x", "x")]);
    let (d2, id2) = layer(&store, &[E::File("y", "y")]);
    let s0 = snaps
        .ensure_layer_snapshot(std::slice::from_ref(&id0), &d0, &limits())
        .unwrap();
    let s1 = snaps
        .ensure_layer_snapshot(&[id0, id1], &d1, &limits())
        .unwrap();
    let s2 = snaps.ensure_layer_snapshot(&[id2], &d2, &limits()).unwrap();
    // A stale active dir (its owner "crashed": kept, lock released).
    let stale = snaps.prepare_active(&[]).unwrap().keep();
    // A live one pins s2.
    let live = snaps.prepare_active(std::slice::from_ref(&s2)).unwrap();

    let keep: HashSet<_> = [s1.clone()].into_iter().collect();
    let r = snaps.prune_with(&keep, std::time::Duration::ZERO).unwrap();
    assert_eq!(
        r.snapshots_removed, 0,
        "s0 is below s1, s2 is under a live active"
    );
    assert_eq!(r.active_removed, 1);
    assert!(!stale.exists());
    drop(live);
    let r = snaps.prune_with(&keep, std::time::Duration::ZERO).unwrap();
    assert_eq!(r.snapshots_removed, 1);
    assert!(r.bytes_freed > 0);
    let mut left = snaps.list().unwrap();
    left.sort();
    let mut want = vec![s0, s1];
    want.sort();
    assert_eq!(left, want);
    // The default grace period protects fresh snapshots.
    assert_eq!(snaps.prune(&HashSet::new()).unwrap().snapshots_removed, 0);
}

/// Writing a new path straight into the upper dir (no overlay mount) must give the layer
/// overlayfs gives: the existing ancestor `var` copied up with its metadata, the new
/// subtree below it, nothing else.
#[test]
fn direct_upper_write_matches_overlay() {
    if !can_mount_overlay() {
        eprintln!("skipping: needs root and unshare(1)");
        return;
    }
    let (_d, store, snaps) = open();
    let lower = base_snapshot(&store, &snaps);
    let lease = store.lease().unwrap();
    let opts = CommitOptions {
        clamp_mtime: Some(1000),
        ..CommitOptions::default()
    };
    const CHANGES: &str = "mkdir -m 755 var/new var/new/deep && printf x > var/new/deep/f";
    let through_overlay = commit_through_overlay(&snaps, &lower, &lease, &opts, CHANGES);

    let direct = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Overlay)
        .unwrap();
    let root = direct
        .upper_for_new_path(Path::new("/var/new"))
        .unwrap()
        .expect("a path new in the image can be written directly");
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 022 && {CHANGES}"))
        .current_dir(&direct.upper)
        .status()
        .unwrap();
    assert!(st.success());
    drop(root);
    let written = snaps
        .commit_active(direct, &lease, &opts)
        .unwrap()
        .layer
        .unwrap();
    assert_eq!(
        layer_names(&store, &written.digest),
        ["var", "var/new", "var/new/deep", "var/new/deep/f"]
    );
    assert_eq!(through_overlay.diff_id, written.diff_id);
}

/// Paths the overlay must resolve are refused: one that exists, one below a symlink,
/// one with `..`, a relative one, and any once the upper dir holds something.
#[test]
fn direct_upper_write_refuses_what_needs_the_overlay() {
    let (_d, store, snaps) = open();
    let (desc, diff_id) = layer(
        &store,
        &[
            E::Dir("var"),
            E::File("var/f", "f\n"),
            E::Link("lnk", "var"),
        ],
    );
    let lower = snaps
        .ensure_layer_snapshot(&[diff_id], &desc, &limits())
        .unwrap();
    let active = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Overlay)
        .unwrap();
    for refused in [
        "/var",
        "/var/f",
        "/var/f/x",
        "/lnk/x",
        "/var/../x",
        "var/x",
        "/",
    ] {
        assert!(
            active
                .upper_for_new_path(Path::new(refused))
                .unwrap()
                .is_none(),
            "{refused} must go through the overlay"
        );
    }
    if is_root() {
        assert!(active
            .upper_for_new_path(Path::new("/var/new"))
            .unwrap()
            .is_some());
        // Now var is copied up: a second request sees a non-empty upper dir.
        assert!(active
            .upper_for_new_path(Path::new("/srv"))
            .unwrap()
            .is_none());
    }
    let copy = snaps
        .prepare_active_with(std::slice::from_ref(&lower), Snapshotter::Copy)
        .unwrap();
    assert!(copy
        .upper_for_new_path(Path::new("/new"))
        .unwrap()
        .is_none());
}
