//! Owners of rootless trees: host → container ids in the writer (with the owner override
//! xattr), container → host ids in the applier, and the override never leaking into tars.

use std::os::unix::fs::{lchown, MetadataExt};

use kiln_archive::{
    apply_layer, read_entries, write_tree, ApplyOptions, DecodeLimits, WriteOptions,
};
use kiln_fs::{IdMapping, SafeRoot, OVERFLOW_ID, OWNER_XATTR};
use rustix::fs as rfs;

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

/// uid/gid 1000 is container 0, 100000.. is container 1..
fn map() -> IdMapping {
    IdMapping::subordinate(1000, 1000, (100000, 65536), (100000, 65536))
}

fn owners(tar: &[u8]) -> Vec<(String, u32, u32, Vec<String>)> {
    let mut v = Vec::new();
    read_entries(tar, &DecodeLimits::default(), |h, _| {
        let keys = h
            .xattrs
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        v.push((h.path.to_string_lossy().into_owned(), h.uid, h.gid, keys));
        Ok(())
    })
    .unwrap();
    v
}

fn wopts(id_map: Option<IdMapping>) -> WriteOptions {
    WriteOptions {
        clamp_mtime: None,
        overlay_upper: false,
        xattrs: true,
        id_map,
    }
}

fn set_override(p: &std::path::Path, v: &str) -> bool {
    rfs::lsetxattr(p, OWNER_XATTR, v.as_bytes(), rfs::XattrFlags::empty()).is_ok()
}

#[test]
fn writer_maps_host_ids_and_honours_the_override() {
    if !root() {
        eprintln!("SKIPPED: needs root to chown test files");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    for f in [
        "as-root",
        "sub",
        "override",
        "override-stale",
        "unmapped",
        "forged",
    ] {
        std::fs::write(t.join(f), f).unwrap();
    }
    lchown(t.join("as-root"), Some(1000), Some(1000)).unwrap();
    lchown(t.join("sub"), Some(101233), Some(100004)).unwrap();
    lchown(t.join("override"), Some(1000), Some(1000)).unwrap();
    // chowned away from the user after the override was written: the mapping wins
    lchown(t.join("override-stale"), Some(100009), Some(1000)).unwrap();
    lchown(t.join("unmapped"), Some(5), Some(999_999)).unwrap();
    lchown(t.join("forged"), Some(1000), Some(1000)).unwrap();
    if !set_override(&t.join("override"), "4321:99")
        || !set_override(&t.join("override-stale"), "7:7")
        || !set_override(&t.join("forged"), "not-an-owner")
    {
        eprintln!("SKIPPED: no user xattrs on this filesystem");
        return;
    }
    let sr = SafeRoot::open(t).unwrap();
    let tar = write_tree(&sr, Vec::new(), &wopts(Some(map()))).unwrap();
    let got = owners(&tar);
    let find = |n: &str| got.iter().find(|e| e.0 == n).cloned().unwrap();
    assert_eq!((find("as-root").1, find("as-root").2), (0, 0));
    assert_eq!((find("sub").1, find("sub").2), (1234, 5));
    assert_eq!((find("override").1, find("override").2), (4321, 99));
    assert_eq!(
        (find("override-stale").1, find("override-stale").2),
        (10, 7)
    );
    assert_eq!(
        (find("unmapped").1, find("unmapped").2),
        (OVERFLOW_ID, OVERFLOW_ID)
    );
    assert_eq!((find("forged").1, find("forged").2), (0, 0));
    for e in &got {
        assert!(
            !e.3.iter().any(|k| k == OWNER_XATTR),
            "override leaked: {e:?}"
        );
    }
    // Without a mapping: raw ids, and still no override in the tar.
    let raw = owners(&write_tree(&sr, Vec::new(), &wopts(None)).unwrap());
    let sub = raw.iter().find(|e| e.0 == "sub").unwrap();
    assert_eq!((sub.1, sub.2), (101233, 100004));
    assert!(raw.iter().all(|e| !e.3.iter().any(|k| k == OWNER_XATTR)));
}

#[test]
fn apply_chowns_to_host_ids_and_round_trips() {
    if !root() {
        eprintln!("SKIPPED: needs root to chown");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir_all(src.join("d")).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("d/f"), b"x").unwrap();
    std::fs::write(src.join("r"), b"r").unwrap();
    lchown(src.join("d"), Some(1234), Some(1234)).unwrap();
    lchown(src.join("d/f"), Some(1), Some(2)).unwrap();
    let tar = write_tree(&SafeRoot::open(&src).unwrap(), Vec::new(), &wopts(None)).unwrap();
    let opts = ApplyOptions {
        id_map: Some(map()),
        ..ApplyOptions::default()
    };
    apply_layer(&SafeRoot::open(&dst).unwrap(), &tar[..], &opts).unwrap();
    let m = |p: &str| {
        let md = std::fs::symlink_metadata(dst.join(p)).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(m("d"), (101233, 101233));
    assert_eq!(m("d/f"), (100000, 100001));
    assert_eq!(m("r"), (1000, 1000));
    let back = write_tree(
        &SafeRoot::open(&dst).unwrap(),
        Vec::new(),
        &wopts(Some(map())),
    )
    .unwrap();
    let orig = owners(&tar);
    assert_eq!(owners(&back), orig);
}

#[test]
fn layers_cannot_forge_the_override() {
    // A tar carrying SCHILY.xattr.user.kiln.owner: dropped on apply, counted as filtered.
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.kiln.owner", &b"0:0"[..])])
        .unwrap();
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let stats = apply_layer(
        &SafeRoot::open(&dst).unwrap(),
        &tar[..],
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.filtered_xattrs, 1);
    let mut v = [0u8; 16];
    assert!(rfs::lgetxattr(dst.join("f"), OWNER_XATTR, &mut v[..]).is_err());
}
