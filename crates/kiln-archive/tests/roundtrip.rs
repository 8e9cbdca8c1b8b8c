//! write_tree → apply → same tree; determinism of bytes and digests; overlay upper dirs.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use common::is_root;
use kiln_archive::*;
use kiln_fs::SafeRoot;
use rustix::fs::{self as rfs, AtFlags, Mode, Timespec, Timestamps};

/// Everything the archive must preserve, per path; hardlinks as "same as <first path>".
fn describe(dir: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<u8>> = HashMap::new();
    fn walk(
        base: &Path,
        dir: &Path,
        out: &mut BTreeMap<Vec<u8>, String>,
        inodes: &mut HashMap<u64, Vec<u8>>,
    ) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            let ft = m.file_type();
            let mut d = format!(
                "mode={:o} uid={} gid={} mtime={}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime()
            );
            if ft.is_symlink() {
                d += &format!(" -> {:?}", std::fs::read_link(&p).unwrap());
            } else if ft.is_file() {
                if m.nlink() > 1 {
                    if let Some(first) = inodes.get(&m.ino()) {
                        out.insert(
                            rel,
                            format!("hardlink to {:?}", String::from_utf8_lossy(first)),
                        );
                        continue;
                    }
                    inodes.insert(m.ino(), rel.clone());
                }
                d += &format!(
                    " {}",
                    kiln_oci::Digest::of_bytes(&std::fs::read(&p).unwrap())
                );
            } else if !ft.is_dir() {
                d += &format!(" rdev={}", m.rdev());
            }
            if !ft.is_symlink() {
                let mut keys = vec![0u8; 4096];
                let n = rfs::llistxattr(&p, &mut keys[..]).unwrap_or(0);
                let mut ks: Vec<&[u8]> = keys[..n]
                    .split(|b| *b == 0)
                    .filter(|k| k.starts_with(b"user."))
                    .collect();
                ks.sort();
                for k in ks {
                    let mut v = vec![0u8; 4096];
                    let vn = rfs::lgetxattr(&p, OsStr::from_bytes(k), &mut v[..]).unwrap();
                    d += &format!(" {}={:?}", String::from_utf8_lossy(k), &v[..vn]);
                }
            }
            out.insert(rel, d);
            if ft.is_dir() {
                walk(base, &p, out, inodes);
            }
        }
    }
    walk(dir, dir, &mut out, &mut inodes);
    out
}

fn set_mtime(p: &Path, secs: i64) {
    let ts = Timestamps {
        last_access: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rfs::utimensat(rfs::CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// A tree exercising every entry kind the writer knows. `reverse` creates the same
/// content in the opposite order (different inode numbers and readdir order).
fn build_tree(dir: &Path, reverse: bool) {
    let long100 = "l".repeat(120);
    let long255 = format!("{}/{}", "m".repeat(200), "n".repeat(200));
    // Directories first (children need them), then the leaves in either order.
    std::fs::create_dir_all(dir.join("etc/ssl")).unwrap();
    std::fs::create_dir_all(dir.join(Path::new(&long255).parent().unwrap())).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    type Step = Box<dyn Fn(&Path)>;
    let mut steps: Vec<Step> = vec![
        Box::new(|d| std::fs::write(d.join("etc/hostname"), b"kiln\n").unwrap()),
        Box::new(|d| std::fs::write(d.join("etc/ssl/cert.pem"), vec![42u8; 70_000]).unwrap()),
        Box::new(|d| std::fs::write(d.join("empty"), b"").unwrap()),
        Box::new(|d| std::os::unix::fs::symlink("etc/hostname", d.join("rel-link")).unwrap()),
        Box::new(|d| {
            std::os::unix::fs::symlink("/nowhere/at/all", d.join("abs-dangling")).unwrap()
        }),
        Box::new(move |d| std::fs::write(d.join(&long100), b"long").unwrap()),
        Box::new(move |d| std::fs::write(d.join(&long255), b"longer").unwrap()),
        Box::new(|d| std::os::unix::fs::symlink("x".repeat(150), d.join("long-target")).unwrap()),
        Box::new(|d| {
            std::fs::write(d.join("suid"), b"#!/bin/true\n").unwrap();
            std::fs::set_permissions(d.join("suid"), std::fs::Permissions::from_mode(0o4755))
                .unwrap();
        }),
        Box::new(|d| {
            rfs::mknodat(
                rfs::CWD,
                d.join("fifo"),
                rfs::FileType::Fifo,
                Mode::from_raw_mode(0o640),
                0,
            )
            .unwrap()
        }),
    ];
    if reverse {
        // Hardlink pair created in the other order: the writer must still pick the
        // first path in sorted order as the link target.
        steps.push(Box::new(|d| {
            std::fs::write(d.join("hard-b"), b"shared").unwrap();
            std::fs::hard_link(d.join("hard-b"), d.join("hard-a")).unwrap();
        }));
        steps.reverse();
    } else {
        steps.push(Box::new(|d| {
            std::fs::write(d.join("hard-a"), b"shared").unwrap();
            std::fs::hard_link(d.join("hard-a"), d.join("hard-b")).unwrap();
        }));
    }
    for s in &steps {
        s(dir);
    }
    rfs::lsetxattr(
        dir.join("etc/hostname"),
        "user.kiln.test",
        b"v1",
        rfs::XattrFlags::empty(),
    )
    .unwrap();
    rfs::lsetxattr(
        dir.join("etc/ssl/cert.pem"),
        "user.kiln.bin",
        b"a\nb=\0c",
        rfs::XattrFlags::empty(),
    )
    .unwrap();
    if is_root() {
        rfs::mknodat(
            rfs::CWD,
            dir.join("null"),
            rfs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rfs::makedev(1, 3),
        )
        .unwrap();
        rfs::mknodat(
            rfs::CWD,
            dir.join("loop9"),
            rfs::FileType::BlockDevice,
            Mode::from_raw_mode(0o660),
            rfs::makedev(7, 9),
        )
        .unwrap();
        let own = |p: &str, u: u32, g: u32, f: AtFlags| {
            rfs::chownat(
                rfs::CWD,
                dir.join(p),
                Some(rfs::Uid::from_raw(u)),
                Some(rfs::Gid::from_raw(g)),
                f,
            )
            .unwrap()
        };
        own("etc/ssl/cert.pem", 1234, 5678, AtFlags::empty());
        own("rel-link", 99, 98, AtFlags::SYMLINK_NOFOLLOW);
        own("tmp", 3_000_000, 3_000_001, AtFlags::empty());
    }
    // Fixed mtimes everywhere (children first so directory times stick).
    let mut all: Vec<_> = Vec::new();
    fn collect(d: &Path, all: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                collect(&p, all);
            }
            all.push(p);
        }
    }
    collect(dir, &mut all);
    for (i, p) in all.iter().enumerate() {
        let _ = i;
        set_mtime(p, 1_600_000_000 + p.as_os_str().len() as i64);
    }
}

fn opts() -> WriteOptions {
    WriteOptions {
        clamp_mtime: None,
        overlay_upper: false,
        xattrs: true,
        id_map: None,
    }
}

#[test]
fn write_then_apply_reproduces_the_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    build_tree(&src, false);
    let tar = write_tree(&SafeRoot::open(&src).unwrap(), Vec::new(), &opts()).unwrap();
    let stats = apply_layer(
        &SafeRoot::open(&dst).unwrap(),
        &tar[..],
        &ApplyOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.hardlinks, 1);
    assert_eq!(describe(&src), describe(&dst));
    if !is_root() {
        eprintln!("not root: devices and ownership were not exercised");
    }
}

#[test]
fn write_then_apply_through_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src, false);
    for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let dst = tmp.path().join(format!("dst-{c:?}"));
        std::fs::create_dir(&dst).unwrap();
        let (blob, d) =
            write_layer(&SafeRoot::open(&src).unwrap(), Vec::new(), &opts(), c, None).unwrap();
        assert_eq!(d.digest, kiln_oci::Digest::of_bytes(&blob));
        assert_eq!(d.size, blob.len() as u64);
        apply_layer(
            &SafeRoot::open(&dst).unwrap(),
            &blob[..],
            &ApplyOptions::default(),
        )
        .unwrap();
        assert_eq!(describe(&src), describe(&dst), "{c:?}");
        // diff_id is the digest of the decompressed stream.
        let mut plain = Vec::new();
        std::io::Read::read_to_end(
            &mut decompress(&blob[..], &DecodeLimits::default()).unwrap(),
            &mut plain,
        )
        .unwrap();
        assert_eq!(d.diff_id, kiln_oci::Digest::of_bytes(&plain));
        assert_eq!(d.uncompressed_size, plain.len() as u64);
    }
}

#[test]
fn same_tree_gives_identical_bytes_and_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    build_tree(&a, false);
    build_tree(&b, true);
    // Different atimes must not matter.
    let _ = std::fs::read(b.join("etc/hostname"));
    assert_eq!(describe(&a), describe(&b), "fixtures differ");
    let ra = SafeRoot::open(&a).unwrap();
    let rb = SafeRoot::open(&b).unwrap();
    let t1 = write_tree(&ra, Vec::new(), &opts()).unwrap();
    let t2 = write_tree(&ra, Vec::new(), &opts()).unwrap();
    let t3 = write_tree(&rb, Vec::new(), &opts()).unwrap();
    assert!(t1 == t2, "same tree twice differs");
    assert!(t1 == t3, "copy of the tree differs");
    for c in [Compression::Gzip, Compression::Zstd] {
        let (x, dx) = write_layer(&ra, Vec::new(), &opts(), c, None).unwrap();
        let (y, dy) = write_layer(&rb, Vec::new(), &opts(), c, None).unwrap();
        assert!(x == y, "{c:?} bytes differ");
        assert_eq!(dx, dy);
    }
}

#[test]
fn clamp_mtime_applies_source_date_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"x").unwrap();
    set_mtime(&tmp.path().join("f"), 2_000_000_000);
    let o = WriteOptions {
        clamp_mtime: Some(1_000),
        ..opts()
    };
    let tar = write_tree(&SafeRoot::open(tmp.path()).unwrap(), Vec::new(), &o).unwrap();
    let mut seen = Vec::new();
    read_entries(&tar[..], &DecodeLimits::default(), |h, _| {
        seen.push((h.path.clone(), h.mtime));
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![(Path::new("f").to_path_buf(), 1_000)]);
}

#[test]
fn reads_pax_records_and_fractional_mtimes() {
    let mut b = TarBuilder::new(Vec::new());
    let name = "p/".repeat(150) + "file";
    let mut h = EntryHeader::new(&name, EntryKind::Regular);
    h.size = 3;
    h.uid = 5_000_000;
    h.gid = 6_000_000;
    h.mtime = -5;
    h.xattrs = vec![
        ("user.a".into(), vec![0, 1, 2, b'\n']),
        ("user.b".into(), b"=".to_vec()),
    ];
    b.append(&h, &mut &b"abc"[..]).unwrap();
    let tar = b.finish().unwrap();
    let mut got = Vec::new();
    read_entries(&tar[..], &DecodeLimits::default(), |e, body| {
        let mut s = Vec::new();
        body.read_to_end(&mut s).unwrap();
        got.push((e.clone(), s));
        Ok(())
    })
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, h);
    assert_eq!(got[0].1, b"abc");

    // A foreign PAX header with a fractional mtime.
    let mut rec = Vec::new();
    for (k, v) in [("mtime", "1700000000.123456789"), ("path", "frac")] {
        let line = format!(" {k}={v}\n");
        let len = line.len() + 2 + if line.len() + 2 >= 100 { 1 } else { 0 };
        rec.extend_from_slice(format!("{len}{line}").as_bytes());
    }
    let mut x = tar::Header::new_ustar();
    x.set_path("PaxHeaders/frac").unwrap();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(rec.len() as u64);
    x.set_cksum();
    let mut f = tar::Header::new_ustar();
    f.set_path("ignored").unwrap();
    f.set_size(0);
    f.set_entry_type(tar::EntryType::Regular);
    f.set_cksum();
    let mut raw = x.as_bytes().to_vec();
    raw.extend_from_slice(&rec);
    raw.resize(1024, 0);
    raw.extend_from_slice(f.as_bytes());
    raw.extend_from_slice(&[0u8; 1024]);
    read_entries(&raw[..], &DecodeLimits::default(), |e, _| {
        assert_eq!(e.path, Path::new("frac"));
        assert_eq!((e.mtime, e.mtime_nsec), (1_700_000_000, 123_456_789));
        Ok(())
    })
    .unwrap();
}

#[test]
fn overlay_upper_becomes_oci_whiteouts_and_back() {
    if !is_root() {
        eprintln!("skipped: needs root for 0/0 char devices and trusted.* xattrs");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let upper = tmp.path().join("upper");
    std::fs::create_dir_all(upper.join("opq")).unwrap();
    std::fs::write(upper.join("opq/kept"), b"k").unwrap();
    std::fs::write(upper.join("new"), b"n").unwrap();
    rfs::mknodat(
        rfs::CWD,
        upper.join("gone"),
        rfs::FileType::CharacterDevice,
        Mode::empty(),
        rfs::makedev(0, 0),
    )
    .unwrap();
    rfs::lsetxattr(
        upper.join("opq"),
        "trusted.overlay.opaque",
        b"y",
        rfs::XattrFlags::empty(),
    )
    .unwrap();
    rfs::lsetxattr(
        upper.join("opq"),
        "trusted.overlay.origin",
        b"junk",
        rfs::XattrFlags::empty(),
    )
    .unwrap();
    let o = WriteOptions {
        overlay_upper: true,
        ..opts()
    };
    let tar = write_tree(&SafeRoot::open(&upper).unwrap(), Vec::new(), &o).unwrap();
    let mut names = Vec::new();
    read_entries(&tar[..], &DecodeLimits::default(), |h, _| {
        assert!(h.xattrs.is_empty(), "overlay xattrs leaked: {:?}", h.xattrs);
        names.push(h.path.to_str().unwrap().to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        names,
        [".wh.gone", "new", "opq", "opq/.wh..wh..opq", "opq/kept"]
    );

    // Applied over a lower tree: the whiteout deletes, the opaque dir hides lower files.
    let lower = tmp.path().join("lower");
    std::fs::create_dir_all(lower.join("opq")).unwrap();
    std::fs::write(lower.join("gone"), b"g").unwrap();
    std::fs::write(lower.join("opq/old"), b"o").unwrap();
    apply_layer(
        &SafeRoot::open(&lower).unwrap(),
        &tar[..],
        &ApplyOptions::default(),
    )
    .unwrap();
    assert!(!lower.join("gone").exists());
    assert!(!lower.join("opq/old").exists());
    assert!(lower.join("opq/kept").exists() && lower.join("new").exists());

    // Overlay-native apply turns them back into overlayfs form.
    let native = tmp.path().join("native");
    std::fs::create_dir(&native).unwrap();
    let ao = ApplyOptions {
        mode: ApplyMode::OverlayNative(OverlayXattr::Trusted),
        ..Default::default()
    };
    apply_layer(&SafeRoot::open(&native).unwrap(), &tar[..], &ao).unwrap();
    let m = std::fs::symlink_metadata(native.join("gone")).unwrap();
    assert_eq!((m.mode() & 0o170000, m.rdev()), (0o020000, 0));
    let mut v = [0u8; 8];
    let n = rfs::lgetxattr(native.join("opq"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    // And the native dir, read as an upper, gives the same tar back.
    let again = write_tree(
        &SafeRoot::open(&native).unwrap(),
        Vec::new(),
        &WriteOptions {
            overlay_upper: true,
            ..opts()
        },
    )
    .unwrap();
    let mut names2 = Vec::new();
    read_entries(&again[..], &DecodeLimits::default(), |h, _| {
        names2.push(h.path.to_str().unwrap().to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(names, names2);
}

#[test]
fn gzip_output_is_deterministic_and_headerless() {
    let mut e = compress(Vec::new(), Compression::Gzip, None).unwrap();
    std::io::Write::write_all(&mut e, b"hello").unwrap();
    let out = e.finish().unwrap();
    // mtime (bytes 4..8) zero, OS byte 255, no FNAME flag.
    assert_eq!(&out[4..8], &[0, 0, 0, 0]);
    assert_eq!(out[9], 255);
    assert_eq!(out[3] & 0x08, 0);
    assert_eq!(detect(&out), Compression::Gzip);
}

#[allow(unused_imports)]
use std::io::Read as _;
