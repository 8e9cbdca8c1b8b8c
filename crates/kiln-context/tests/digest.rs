//! Content digests, the persistent stat cache and manifest diffs.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use kiln_context::{diff, Change, Context, DigestOpts, SourceManifest, StatCache};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Files younger than the racy window are (correctly) not cached; let them age.
fn settle() {
    std::thread::sleep(Duration::from_millis(120));
}

fn fixture() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    common::build(
        d.path(),
        &[
            (".dockerignore", "f:*.log\n"),
            ("src/main.c", "f:int main;"),
            ("src/util.c", "f:util"),
            ("README", "f:hi"),
            ("build.log", "f:noise"),
            ("link", "l:/etc/passwd"),
        ],
    );
    settle();
    d
}

fn open(ctx: &Path, kiln: &Path) -> Context {
    Context::open(ctx, "Dockerfile")
        .unwrap()
        .with_stat_cache(kiln)
}

#[test]
fn second_run_hashes_nothing() {
    let ctx = fixture();
    let kiln = tempfile::tempdir().unwrap();
    let c = open(ctx.path(), kiln.path());
    let a = c
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(c.stat_stats().misses, 4, "{:?}", c.stat_stats());
    c.save_stat_cache().unwrap();
    let c2 = open(ctx.path(), kiln.path());
    let b = c2
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    let st = c2.stat_stats();
    assert_eq!((st.hits, st.misses), (4, 0), "{st:?}");
    assert_eq!(a, b);
    assert!(a.files.iter().any(|(p, _)| p == "src/main.c"));
    assert!(a.files.iter().any(|(p, _)| p == "link"));
    assert!(!a.files.iter().any(|(p, _)| p == "build.log"));
}

#[test]
fn touch_keeps_digest() {
    let ctx = fixture();
    let kiln = tempfile::tempdir().unwrap();
    let c = open(ctx.path(), kiln.path());
    let a = c
        .digest_sources(&s(&["src"]), &[], &DigestOpts::default())
        .unwrap();
    c.save_stat_cache().unwrap();
    let f = fs::File::options()
        .write(true)
        .open(ctx.path().join("src/main.c"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
        .unwrap();
    drop(f);
    settle();
    let c2 = open(ctx.path(), kiln.path());
    let b = c2
        .digest_sources(&s(&["src"]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(a.digest, b.digest);
    // The touched file was re-hashed (its stat changed), the other one was not.
    assert_eq!((c2.stat_stats().hits, c2.stat_stats().misses), (1, 1));
}

#[test]
fn content_change_is_named() {
    let ctx = fixture();
    let kiln = tempfile::tempdir().unwrap();
    let c = open(ctx.path(), kiln.path());
    let a = c
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    c.save_stat_cache().unwrap();
    // Same size, different content: only ctime/mtime tell, and content decides.
    fs::write(ctx.path().join("src/main.c"), "int mane;").unwrap();
    fs::write(ctx.path().join("NEW"), "n").unwrap();
    fs::remove_file(ctx.path().join("README")).unwrap();
    let c2 = open(ctx.path(), kiln.path());
    let b = c2
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    assert_ne!(a.digest, b.digest);
    let old = SourceManifest::from_json(&a.manifest().to_json()).unwrap();
    let changes = diff(&old, &b.manifest());
    assert_eq!(
        changes,
        vec![
            Change::Added("NEW".into()),
            Change::Removed("README".into()),
            Change::Modified("src/main.c".into()),
        ]
    );
    assert_eq!(changes[2].to_string(), "src/main.c changed");
    assert_eq!(changes[0].to_string(), "new file NEW");
    assert_eq!(changes[1].to_string(), "removed README");
}

#[test]
fn ignored_file_changes_do_not_matter() {
    let ctx = fixture();
    let kiln = tempfile::tempdir().unwrap();
    let c = open(ctx.path(), kiln.path());
    let a = c
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    fs::write(ctx.path().join("build.log"), "other noise entirely").unwrap();
    fs::write(ctx.path().join("new.log"), "x").unwrap();
    let b = c
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(a.digest, b.digest);
}

#[test]
fn excludes_and_wildcards() {
    let ctx = fixture();
    let c = Context::open(ctx.path(), "Dockerfile").unwrap();
    let all = c
        .digest_sources(&s(&["src"]), &[], &DigestOpts::default())
        .unwrap();
    let ex = c
        .digest_sources(&s(&["src"]), &s(&["util.c"]), &DigestOpts::default())
        .unwrap();
    assert_ne!(all.digest, ex.digest);
    assert!(!ex.files.iter().any(|(p, _)| p.ends_with("util.c")));
    let w = c
        .digest_sources(&s(&["src/*.c"]), &[], &DigestOpts::default())
        .unwrap();
    let names: Vec<&str> = w.files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["src/main.c", "src/util.c"]);
    // Only what the COPY reads: README changes do not touch the src digest.
    fs::write(ctx.path().join("README"), "changed").unwrap();
    let again = c
        .digest_sources(&s(&["src"]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(all.digest, again.digest);
    let err = c
        .digest_sources(&s(&["missing"]), &[], &DigestOpts::default())
        .unwrap_err();
    assert!(err.to_string().contains("not found in build context"));
}

#[test]
fn mode_and_symlink_target_are_in_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let ctx = fixture();
    let c = Context::open(ctx.path(), "Dockerfile").unwrap();
    let opts = DigestOpts {
        follow_symlinks: false,
        ..DigestOpts::default()
    };
    let a = c.digest_sources(&s(&["."]), &[], &opts).unwrap();
    fs::set_permissions(ctx.path().join("README"), fs::Permissions::from_mode(0o755)).unwrap();
    // A context is one build's view: a new build opens it again.
    let c = Context::open(ctx.path(), "Dockerfile").unwrap();
    let b = c.digest_sources(&s(&["."]), &[], &opts).unwrap();
    assert_ne!(a.digest, b.digest);
    fs::remove_file(ctx.path().join("link")).unwrap();
    std::os::unix::fs::symlink("/etc/group", ctx.path().join("link")).unwrap();
    let c = Context::open(ctx.path(), "Dockerfile").unwrap();
    let l = c.digest_sources(&s(&["link"]), &[], &opts).unwrap();
    let d = diff(&b.manifest(), &l.manifest());
    assert!(d.contains(&Change::Modified("link".into())), "{d:?}");
}

#[test]
fn corrupt_cache_is_ignored() {
    let ctx = fixture();
    let kiln = tempfile::tempdir().unwrap();
    let canon = ctx.path().canonicalize().unwrap();
    let file = StatCache::file_for(kiln.path(), &canon);
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, b"{ not json").unwrap();
    let c = open(ctx.path(), kiln.path());
    assert!(c.stat_stats().discarded_corrupt);
    let a = c
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(c.stat_stats().misses, 4);
    c.save_stat_cache().unwrap();
    let c2 = open(ctx.path(), kiln.path());
    assert!(!c2.stat_stats().discarded_corrupt);
    let b = c2
        .digest_sources(&s(&["."]), &[], &DigestOpts::default())
        .unwrap();
    assert_eq!(a, b);
    assert_eq!(c2.stat_stats().misses, 0);
}

#[test]
fn walk_lists_included_without_following() {
    let ctx = fixture();
    common::build(
        ctx.path(),
        &[("logs/keep.txt", "f:k"), ("logs/x.log", "f:x")],
    );
    let c = Context::open(ctx.path(), "Dockerfile").unwrap();
    let names: Vec<String> = c.walk().unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(
        names,
        // `*.log` is anchored at the root (Docker semantics), so logs/x.log stays.
        [
            ".dockerignore",
            "README",
            "link",
            "logs",
            "logs/keep.txt",
            "logs/x.log",
            "src",
            "src/main.c",
            "src/util.c"
        ]
    );
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let d = tempfile::tempdir().unwrap();
    common::build(
        d.path(),
        &[
            (".dockerignore", "f:a"),
            ("build/Dockerfile.dockerignore", "f:b"),
            ("a", "f:A"),
            ("b", "f:B"),
        ],
    );
    let c = Context::open(d.path(), "build/Dockerfile").unwrap();
    assert_eq!(c.ignore_file(), Some("build/Dockerfile.dockerignore"));
    assert!(c.ignore().is_excluded("b") && !c.ignore().is_excluded("a"));
    let c = Context::open(d.path(), "Dockerfile").unwrap();
    assert_eq!(c.ignore_file(), Some(".dockerignore"));
}

/// Within one build a request is hashed once: a second step with the same sources (or a
/// step after the prefetch) gets the first result, even if a file changed in between.
#[test]
fn one_build_hashes_each_request_once() {
    let ctx = fixture();
    let c = std::sync::Arc::new(Context::open(ctx.path(), "Dockerfile").unwrap());
    let opts = DigestOpts::default();
    c.prefetch(vec![kiln_context::DigestRequest {
        patterns: s(&["src"]),
        excludes: vec![],
        opts: opts.clone(),
    }]);
    let first = c.digest_sources(&s(&["src"]), &[], &opts).unwrap();
    let hashed = c.stat_stats().misses;
    assert_eq!(hashed, 2, "{:?}", c.stat_stats());
    fs::write(ctx.path().join("src/util.c"), "changed").unwrap();
    let again = c.digest_sources(&s(&["src"]), &[], &opts).unwrap();
    assert_eq!(first, again);
    assert_eq!(c.stat_stats().misses, hashed);
    let fresh = Context::open(ctx.path(), "Dockerfile").unwrap();
    let next_build = fresh.digest_sources(&s(&["src"]), &[], &opts).unwrap();
    assert_ne!(first.digest, next_build.digest);
}

/// The prefetch never reports errors itself: the step that needs the digest meets them.
#[test]
fn prefetch_of_a_missing_source_leaves_the_error_to_the_step() {
    let ctx = fixture();
    let c = std::sync::Arc::new(Context::open(ctx.path(), "Dockerfile").unwrap());
    c.prefetch(vec![kiln_context::DigestRequest {
        patterns: s(&["missing"]),
        excludes: vec![],
        opts: DigestOpts::default(),
    }]);
    std::thread::sleep(Duration::from_millis(50));
    let err = c
        .digest_sources(&s(&["missing"]), &[], &DigestOpts::default())
        .unwrap_err();
    assert!(
        err.to_string().contains("not found in build context"),
        "{err}"
    );
}

/// Large files are hashed as a tree of chunks on several threads: a change of one byte
/// in any chunk still changes the digest, and the digest does not depend on timing.
#[test]
fn large_file_digest_sees_a_one_byte_change() {
    let ctx = tempfile::tempdir().unwrap();
    let mut data: Vec<u8> = (0..(40u32 << 20)).map(|i| (i % 251) as u8).collect();
    fs::write(ctx.path().join("big.bin"), &data).unwrap();
    let digest = || {
        Context::open(ctx.path(), "Dockerfile")
            .unwrap()
            .digest_sources(&s(&["big.bin"]), &[], &DigestOpts::default())
            .unwrap()
            .digest
    };
    let a = digest();
    assert_eq!(a, digest());
    data[(20 << 20) + 7] ^= 1;
    fs::write(ctx.path().join("big.bin"), &data).unwrap();
    let b = digest();
    assert_ne!(a, b);
    data.truncate(data.len() - 1);
    fs::write(ctx.path().join("big.bin"), &data).unwrap();
    assert_ne!(b, digest());
}

/// Many files are hashed on several threads; the digest is the same as file by file.
#[test]
fn many_files_digest_is_deterministic() {
    let ctx = tempfile::tempdir().unwrap();
    for i in 0..300 {
        let dir = ctx.path().join(format!("d{}", i % 7));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
    let digest = || {
        Context::open(ctx.path(), "Dockerfile")
            .unwrap()
            .digest_sources(&s(&["."]), &[], &DigestOpts::default())
            .unwrap()
    };
    let a = digest();
    assert_eq!(a.files.len(), 308, "300 files, 7 directories and the root");
    assert_eq!(a, digest());
    fs::write(ctx.path().join("d3/f150"), "other").unwrap();
    let b = digest();
    let d = diff(&a.manifest(), &b.manifest());
    assert_eq!(d, [Change::Modified("d3/f150".into())]);
}
