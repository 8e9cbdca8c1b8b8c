//! Fixture trees for the tests, described as `(path, spec)`:
//! `f:text` file 0644, `x:text` file 0755, `d` dir, `l:target` symlink,
//! `h:other` hardlink to `other`, `tar` / `tgz` / `tzst` a tar holding `x/inner.txt`.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use kiln_archive::{compress, Compression, EntryHeader, EntryKind, TarBuilder};

pub fn tar_bytes(kind: Compression) -> Vec<u8> {
    let mut b = TarBuilder::new(Vec::new());
    b.append(
        &EntryHeader::new("x", EntryKind::Directory),
        &mut std::io::empty(),
    )
    .unwrap();
    let mut h = EntryHeader::new("x/inner.txt", EntryKind::Regular);
    h.size = 5;
    h.uid = 42;
    b.append(&h, &mut &b"inner"[..]).unwrap();
    let tar = b.finish().unwrap();
    let mut enc = compress(Vec::new(), kind, None).unwrap();
    std::io::Write::write_all(&mut enc, &tar).unwrap();
    enc.finish().unwrap()
}

pub fn build(root: &Path, spec: &[(&str, &str)]) {
    for (path, what) in spec {
        let p = root.join(path);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        let (kind, arg) = what.split_once(':').unwrap_or((what, ""));
        match kind {
            "f" | "x" => {
                fs::write(&p, arg).unwrap();
                let mode = if kind == "x" { 0o755 } else { 0o644 };
                fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            }
            "d" => fs::create_dir_all(&p).unwrap(),
            "l" => symlink(arg, &p).unwrap(),
            "h" => fs::hard_link(root.join(arg), &p).unwrap(),
            "tar" => fs::write(&p, tar_bytes(Compression::None)).unwrap(),
            "tgz" => fs::write(&p, tar_bytes(Compression::Gzip)).unwrap(),
            "tzst" => fs::write(&p, tar_bytes(Compression::Zstd)).unwrap(),
            other => panic!("bad fixture kind {other}"),
        }
    }
}
