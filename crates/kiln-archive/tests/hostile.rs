//! Hostile layers: each test is one attack. Every test ends in a clear error or a write
//! confined to the target root, and the victim directory next to the root is unchanged.

mod common;

use std::io::Write;

use common::{is_root, Craft, Scene};
use kiln_archive::{apply_layer, ApplyOptions, DecodeLimits, DevicePolicy, Error};

fn apply(
    scene: &Scene,
    tar: &[u8],
    opts: &ApplyOptions,
) -> Result<kiln_archive::ApplyStats, Error> {
    apply_layer(&scene.safe_root(), tar, opts)
}

fn opts() -> ApplyOptions {
    ApplyOptions::default()
}

#[test]
fn dotdot_name_escaping_root_is_rejected() {
    let s = Scene::new();
    let tar = Craft::new().file("../victim/file", b"pwned").end();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(err, Error::Fs(kiln_fs::Error::PathEscapes { .. })),
        "{err}"
    );
    let tar = Craft::new().file("a/../../victim/file", b"pwned").end();
    assert!(apply(&s, &tar, &opts()).is_err());
    s.assert_victim_unchanged();
}

#[test]
fn absolute_name_is_confined_to_root() {
    let s = Scene::new();
    let name = format!("{}/file", s.victim_abs());
    let tar = Craft::new().file(&name, b"pwned").end();
    apply(&s, &tar, &opts()).unwrap();
    let inside = s.root.join(name.trim_start_matches('/'));
    assert_eq!(std::fs::read(inside).unwrap(), b"pwned");
    s.assert_victim_unchanged();
}

#[test]
fn absolute_symlink_then_write_through_is_confined() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("a", &s.victim_abs())
        .file("a/file", b"pwned")
        .end();
    // The link resolves to <root>/<victim path>, which does not exist: an error, and
    // never a write into the real victim.
    let r = apply(&s, &tar, &opts());
    assert!(r.is_err(), "{r:?}");
    s.assert_victim_unchanged();
}

#[test]
fn absolute_symlink_then_write_through_lands_inside_root() {
    let s = Scene::new();
    let abs = s.victim_abs();
    let tar = Craft::new()
        .dir(&abs[1..])
        .symlink("a", &abs)
        .file("a/file", b"pwned")
        .end();
    apply(&s, &tar, &opts()).unwrap();
    assert_eq!(
        std::fs::read(s.root.join(&abs[1..]).join("file")).unwrap(),
        b"pwned"
    );
    s.assert_victim_unchanged();
}

#[test]
fn relative_symlink_escaping_is_clamped_at_root() {
    let s = Scene::new();
    let tar = Craft::new()
        .dir("victim")
        .dir("x")
        .symlink("x/a", "../../victim")
        .file("x/a/file", b"pwned")
        .symlink("b", "../victim/sub")
        .file("b/inner", b"pwned")
        .end();
    let r = apply(&s, &tar, &opts());
    // `../../victim` from x/ clamps to <root>/victim; `../victim/sub` does not exist.
    assert!(r.is_err(), "{r:?}");
    assert_eq!(std::fs::read(s.root.join("victim/file")).unwrap(), b"pwned");
    s.assert_victim_unchanged();
}

#[test]
fn hardlink_to_outside_relative_is_rejected() {
    let s = Scene::new();
    let tar = Craft::new()
        .hardlink("link", "../victim/file")
        .file("link", b"pwned")
        .end();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(err, Error::Fs(kiln_fs::Error::PathEscapes { .. })),
        "{err}"
    );
    s.assert_victim_unchanged();
}

#[test]
fn hardlink_to_outside_absolute_is_rejected() {
    let s = Scene::new();
    let target = format!("{}/file", s.victim_abs());
    let tar = Craft::new().hardlink("link", &target).end();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(err, Error::Fs(kiln_fs::Error::HardlinkSource { .. })),
        "{err}"
    );
    s.assert_victim_unchanged();
}

#[test]
fn hardlink_through_symlinked_parent_is_confined() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("d", &s.victim_abs())
        .hardlink("x", "d/file")
        .end();
    assert!(apply(&s, &tar, &opts()).is_err());
    let tar = Craft::new()
        .symlink("e", "../victim")
        .hardlink("y", "e/file")
        .end();
    assert!(apply(&s, &tar, &opts()).is_err());
    s.assert_victim_unchanged();
}

#[test]
fn hardlink_to_symlink_or_directory_is_rejected() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("l", &format!("{}/file", s.victim_abs()))
        .hardlink("x", "l")
        .end();
    assert!(matches!(
        apply(&s, &tar, &opts()),
        Err(Error::Fs(kiln_fs::Error::HardlinkSource { .. }))
    ));
    let tar = Craft::new().dir("d").hardlink("y", "d").end();
    assert!(matches!(
        apply(&s, &tar, &opts()),
        Err(Error::Fs(kiln_fs::Error::HardlinkSource { .. }))
    ));
    s.assert_victim_unchanged();
}

#[test]
fn whiteout_through_symlinked_parent_is_confined() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("dir", &s.victim_abs())
        .file("dir/.wh.file", b"")
        .symlink("rel", "../victim")
        .file("rel/.wh.sub", b"")
        .end();
    apply(&s, &tar, &opts()).unwrap();
    s.assert_victim_unchanged();
}

#[test]
fn whiteout_of_symlink_removes_only_the_link() {
    let s = Scene::new();
    let tar = Craft::new().symlink("v", &s.victim_abs()).end();
    apply(&s, &tar, &opts()).unwrap();
    std::os::unix::fs::symlink(&s.victim, s.root.join("host-link")).unwrap();
    let tar = Craft::new()
        .file(".wh.v", b"")
        .file(".wh.host-link", b"")
        .end();
    apply(&s, &tar, &opts()).unwrap();
    assert!(std::fs::symlink_metadata(s.root.join("v")).is_err());
    assert!(std::fs::symlink_metadata(s.root.join("host-link")).is_err());
    s.assert_victim_unchanged();
}

#[test]
fn opaque_whiteout_through_symlink_is_confined() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("dir", &s.victim_abs())
        .file("dir/.wh..wh..opq", b"")
        .symlink("rel", "../victim")
        .file("rel/.wh..wh..opq", b"")
        .end();
    apply(&s, &tar, &opts()).unwrap();
    s.assert_victim_unchanged();
}

#[test]
fn opaque_whiteout_of_host_symlink_does_not_follow_it() {
    let s = Scene::new();
    // A lower layer (here: the host, simulating a hostile snapshot) put an absolute
    // symlink at d; the opaque marker in d resolves in-root and clears nothing outside.
    std::os::unix::fs::symlink(&s.victim, s.root.join("d")).unwrap();
    let tar = Craft::new().file("d/.wh..wh..opq", b"").end();
    let _ = apply(&s, &tar, &opts());
    s.assert_victim_unchanged();
}

#[test]
fn opaque_after_entries_of_same_layer_keeps_them() {
    let s = Scene::new();
    let lower = Craft::new()
        .dir("d")
        .file("d/old", b"o")
        .dir("d/sub")
        .file("d/sub/old-inner", b"o")
        .end();
    apply(&s, &lower, &opts()).unwrap();
    let upper = Craft::new()
        .dir("d")
        .file("d/new", b"n")
        .dir("d/sub")
        .file("d/sub/newer", b"n")
        .file("d/.wh..wh..opq", b"")
        .end();
    let stats = apply(&s, &upper, &opts()).unwrap();
    assert_eq!(stats.opaques, 1);
    assert!(s.root.join("d/new").exists());
    assert!(s.root.join("d/sub/newer").exists());
    assert!(!s.root.join("d/old").exists());
    assert!(!s.root.join("d/sub/old-inner").exists());
    s.assert_victim_unchanged();
}

#[test]
fn opaque_before_entries_of_same_layer_keeps_them() {
    let s = Scene::new();
    apply(
        &s,
        &Craft::new().dir("d").file("d/old", b"o").end(),
        &opts(),
    )
    .unwrap();
    let upper = Craft::new()
        .file("d/.wh..wh..opq", b"")
        .file("d/new", b"n")
        .end();
    apply(&s, &upper, &opts()).unwrap();
    assert!(s.root.join("d/new").exists());
    assert!(!s.root.join("d/old").exists());
}

#[test]
fn opaque_on_root_clears_lower_but_not_this_layer() {
    let s = Scene::new();
    apply(
        &s,
        &Craft::new()
            .file("x", b"lower")
            .dir("etc")
            .file("etc/passwd", b"l")
            .end(),
        &opts(),
    )
    .unwrap();
    let upper = Craft::new()
        .file("y", b"upper")
        .file(".wh..wh..opq", b"")
        .file("z", b"upper")
        .end();
    apply(&s, &upper, &opts()).unwrap();
    assert!(!s.root.join("x").exists());
    assert!(!s.root.join("etc").exists());
    assert!(s.root.join("y").exists() && s.root.join("z").exists());
    assert!(s.root.exists());
    s.assert_victim_unchanged();
}

#[test]
fn whiteout_does_not_delete_entries_of_same_layer() {
    let s = Scene::new();
    apply(&s, &Craft::new().file("f", b"lower").end(), &opts()).unwrap();
    let upper = Craft::new().file("f", b"upper").file(".wh.f", b"").end();
    apply(&s, &upper, &opts()).unwrap();
    assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"upper");
}

/// A tar holding one file of `size` zero bytes, streamed into `w` without buffering it.
fn zero_tar_into<W: Write>(mut w: W, size: u64) -> W {
    let mut h = tar::Header::new_ustar();
    h.set_path("zeros").unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    w.write_all(h.as_bytes()).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        w.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    w.write_all(&[0u8; 1024]).unwrap();
    w
}

#[test]
fn gzip_bomb_over_size_limit_is_stopped() {
    let s = Scene::new();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let bomb = zero_tar_into(gz, 64 << 20).finish().unwrap();
    assert!(bomb.len() < 1 << 20, "the bomb is small: {}", bomb.len());
    let mut o = opts();
    o.limits.max_total_bytes = 16 << 20;
    o.limits.max_ratio = u64::MAX; // isolate the size budget
    let err = apply(&s, &bomb, &o).unwrap_err();
    match &err {
        Error::LimitExceeded(l) => assert_eq!(l.limit, "max-layer-size"),
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("--max-layer-size"), "{err}");
    s.assert_victim_unchanged();
}

#[test]
fn zstd_bomb_over_ratio_limit_is_stopped() {
    let s = Scene::new();
    let z = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let bomb = zero_tar_into(z, 64 << 20).finish().unwrap();
    let mut o = opts();
    o.limits.max_ratio = 100;
    o.limits.ratio_grace_bytes = 1 << 20;
    let err = apply(&s, &bomb, &o).unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(l) if l.limit == "max-decompression-ratio"),
        "{err}"
    );
    assert!(
        err.to_string().contains("--max-decompression-ratio"),
        "{err}"
    );
}

#[test]
fn garbage_after_end_of_archive_is_rejected() {
    let s = Scene::new();
    let mut tar = Craft::new().file("a", b"x").end();
    tar.extend_from_slice(&[0u8; 4096]);
    tar.extend_from_slice(b"smuggled");
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(matches!(err, Error::TrailingGarbage { .. }), "{err}");
    // A second archive appended after the marker is garbage too.
    let mut tar = Craft::new().file("a", b"x").end();
    tar.extend_from_slice(&Craft::new().file("b", b"y").end());
    assert!(matches!(
        apply(&s, &tar, &opts()),
        Err(Error::TrailingGarbage { .. })
    ));
}

#[test]
fn zero_padding_after_end_of_archive_is_fine() {
    let s = Scene::new();
    let mut tar = Craft::new().file("a", b"x").end();
    tar.resize(10240 * 2, 0);
    apply(&s, &tar, &opts()).unwrap();
}

fn device_tar() -> Vec<u8> {
    Craft::new()
        .device("null", tar::EntryType::Char, 1, 3)
        .end()
}

/// Run `f` on a thread without CAP_MKNOD (capabilities are per thread), so the
/// unprivileged device path is exercised even when the tests run as root.
fn without_mknod<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            if is_root() {
                use rustix::thread::{capabilities, set_capabilities, CapabilitySet};
                let mut caps = capabilities(None).unwrap();
                caps.effective.remove(CapabilitySet::MKNOD);
                set_capabilities(None, caps).unwrap();
            }
            f()
        })
        .join()
        .unwrap()
    })
}

#[test]
fn device_node_when_not_permitted_is_an_error() {
    let s = Scene::new();
    let mut o = opts();
    o.devices = DevicePolicy::Create;
    let err = without_mknod(|| apply(&s, &device_tar(), &o).unwrap_err());
    assert!(
        matches!(
            err,
            Error::Fs(kiln_fs::Error::DeviceNodeNotPermitted { .. })
        ),
        "{err}"
    );
    assert!(!s.root.join("null").exists());
}

#[test]
fn device_node_when_not_permitted_is_skipped_and_counted() {
    let s = Scene::new();
    let mut o = opts();
    o.devices = DevicePolicy::CreateOrSkip;
    let stats = without_mknod(|| apply(&s, &device_tar(), &o).unwrap());
    assert_eq!(stats.skipped_devices, 1);
    let mut o = opts();
    o.devices = DevicePolicy::Skip;
    let stats = apply(&s, &device_tar(), &o).unwrap();
    assert_eq!(stats.skipped_devices, 1);
    assert!(!s.root.join("null").exists());
}

#[test]
fn path_length_over_limit_is_rejected() {
    let s = Scene::new();
    let long = vec![b'a'; 5000];
    let tar = Craft::new().long_file(&long, b"x").end();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(l) if l.limit == "max-path-length"),
        "{err}"
    );
    assert!(err.to_string().contains("--max-path-length"));
    // The same through a PAX path record.
    let mut b = kiln_archive::TarBuilder::new(Vec::new());
    let name = "d/".repeat(2500) + "f";
    let mut h = kiln_archive::EntryHeader::new(&name, kiln_archive::EntryKind::Regular);
    h.size = 1;
    b.append(&h, &mut &b"x"[..]).unwrap();
    let tar = b.finish().unwrap();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(l) if l.limit == "max-path-length"),
        "{err}"
    );
}

#[test]
fn entry_count_over_limit_is_rejected() {
    let s = Scene::new();
    let mut c = Craft::new();
    for i in 0..20 {
        c.file(&format!("f{i}"), b"");
    }
    let mut o = opts();
    o.limits.max_entries = 10;
    let err = apply(&s, &c.end(), &o).unwrap_err();
    assert!(
        matches!(&err, Error::LimitExceeded(l) if l.limit == "max-layer-entries" && l.value == 11),
        "{err}"
    );
    assert!(err.to_string().contains("--max-layer-entries"));
}

#[test]
fn oversized_pax_header_is_rejected_before_buffering() {
    let s = Scene::new();
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(1 << 40); // claims a terabyte
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[b'9'; 512]);
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(matches!(err, Error::LimitExceeded(_)), "{err}");
}

#[test]
fn symlink_loop_is_an_error() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("a", "b")
        .symlink("b", "a")
        .file("a/file", b"x")
        .end();
    let err = apply(&s, &tar, &opts()).unwrap_err();
    assert!(
        matches!(err, Error::Fs(kiln_fs::Error::SymlinkLoop { .. })),
        "{err}"
    );
    let tar = Craft::new()
        .symlink("self", "self/x")
        .file("self/y", b"x")
        .end();
    assert!(apply(&s, &tar, &opts()).is_err());
    s.assert_victim_unchanged();
}

#[test]
fn file_replacing_symlink_to_outside_does_not_follow_it() {
    let s = Scene::new();
    let tar = Craft::new()
        .symlink("f", &format!("{}/file", s.victim_abs()))
        .file("f", b"pwned")
        .end();
    apply(&s, &tar, &opts()).unwrap();
    assert_eq!(std::fs::read(s.root.join("f")).unwrap(), b"pwned");
    assert!(!std::fs::symlink_metadata(s.root.join("f"))
        .unwrap()
        .file_type()
        .is_symlink());
    s.assert_victim_unchanged();
}

#[test]
fn overlay_xattrs_from_layer_are_dropped() {
    let s = Scene::new();
    let mut b = kiln_archive::TarBuilder::new(Vec::new());
    let mut h = kiln_archive::EntryHeader::new("d", kiln_archive::EntryKind::Directory);
    h.xattrs = vec![
        ("trusted.overlay.redirect".into(), b"/etc".to_vec()),
        ("user.overlay.opaque".into(), b"y".to_vec()),
    ];
    b.append(&h, &mut std::io::empty()).unwrap();
    let stats = apply(&s, &b.finish().unwrap(), &opts()).unwrap();
    assert_eq!(stats.filtered_xattrs, 2);
}

#[test]
fn truncated_archive_is_an_error() {
    let s = Scene::new();
    let tar = Craft::new().file("a", &[7u8; 2000]).end();
    let err = apply(&s, &tar[..1000], &opts()).unwrap_err();
    assert!(
        matches!(err, Error::Malformed(_) | Error::Io { .. }),
        "{err}"
    );
    let _ = DecodeLimits::default();
}
