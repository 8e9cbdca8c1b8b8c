//! `kiln build`: `RUN --mount` of type cache, tmpfs and secret, judged from the exported
//! image and rootfs.

mod common;

use common::*;
use std::process::Command;

#[test]
fn cache_mount_persists_between_builds() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let dockerfile = "FROM busybox
COPY input.txt /input.txt
RUN --mount=type=cache,target=/cache \
    cat /cache/seen > /previous 2>/dev/null || echo none > /previous; \
    cat /input.txt >> /cache/seen; ls /cache > /listing
";
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", dockerfile), ("input.txt", "first\n")],
    );
    let fs = build_rootfs_tar(&env, &ctx, "one.tar", &[]);
    assert_eq!(entry_data(&fs, "previous"), "none\n");
    assert!(
        !fs.keys().any(|k| k.starts_with("cache/")),
        "cache content in the layer"
    );

    std::fs::write(ctx.join("input.txt"), "second\n").unwrap();
    let fs = build_rootfs_tar(&env, &ctx, "two.tar", &[]);
    assert_eq!(
        entry_data(&fs, "previous"),
        "first\n",
        "the cache mount kept the file"
    );
    assert!(
        !fs.keys().any(|k| k.starts_with("cache/")),
        "cache content in the layer"
    );
}

#[test]
fn tmpfs_mount_is_empty_writable_and_not_in_the_layer() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN mkdir -p /scratch && echo image > /scratch/from-image
RUN --mount=type=tmpfs,target=/scratch \
    ls -A /scratch > /seen && echo tmp > /scratch/tmpfile && cat /scratch/tmpfile > /wrote
",
        )],
    );
    let fs = build_rootfs_tar(&env, &ctx, "out.tar", &[]);
    assert_eq!(entry_data(&fs, "seen"), "", "tmpfs starts empty");
    assert_eq!(entry_data(&fs, "wrote"), "tmp\n");
    assert!(
        !fs.contains_key("scratch/tmpfile"),
        "tmpfs content leaked into the layer"
    );
    assert_eq!(entry_data(&fs, "scratch/from-image"), "image\n");
}

#[test]
fn secret_mount_is_readable_and_in_no_layer_or_config() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let value = "s3cr3t-VALUE-5e1f0c";
    let secret = env.path("secret.txt");
    std::fs::write(&secret, value).unwrap();
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN --mount=type=secret,id=s \
    sha256sum < /run/secrets/s > /file-sum
RUN --mount=type=secret,id=s,target=/etc/mysecret \
    wc -c < /etc/mysecret > /length
RUN --mount=type=secret,id=s,env=TOKEN \
    printf %s \"$TOKEN\" | sha256sum > /env-sum
",
        )],
    );
    let archive = env.path("img.tar");
    let out = format!("type=oci,dest={}", archive.display());
    let rootfs = env.path("rootfs.tar");
    let out2 = format!("type=tar,dest={}", rootfs.display());
    let spec = format!("id=s,src={}", secret.display());
    build_json(
        &env,
        &ctx,
        &["-t", "sec", "--secret", &spec, "-o", &out, "-o", &out2],
    );
    let fs = tar_entries(&rootfs);
    // The Dockerfile never spells the value: RUN proves it read it through its hash.
    let sum = sha256_file(&secret);
    let sum = sum.strip_prefix("sha256:").unwrap();
    assert_eq!(
        entry_data(&fs, "file-sum").split_whitespace().next(),
        Some(sum)
    );
    assert_eq!(
        entry_data(&fs, "env-sum").split_whitespace().next(),
        Some(sum)
    );
    assert_eq!(entry_data(&fs, "length").trim(), value.len().to_string());
    assert!(
        !fs.contains_key("run/secrets/s"),
        "secret file left in the layer"
    );
    let mysecret = fs.get("etc/mysecret");
    assert!(
        mysecret.is_none_or(|e| e["data"].as_str().unwrap_or("").is_empty()),
        "{mysecret:?}"
    );

    // Grep every blob of the archive, decompressed, for the value.
    let dir = env.path("unpacked");
    std::fs::create_dir_all(&dir).unwrap();
    sh_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&dir),
    );
    let found = py(
        r#"
import sys, os, gzip
needle = sys.argv[2].encode()
hits = []
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        data = open(p, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            data = gzip.decompress(data)
        if needle in data:
            hits.append(p)
print('\n'.join(hits))
"#,
        &[dir.to_str().unwrap(), value],
    );
    assert!(found.trim().is_empty(), "secret value found in {found}");
    // Nor in the store (config, history, layers), nor in the build's cache records.
    let found = py(
        r#"
import sys, os, gzip
needle = sys.argv[2].encode()
hits = []
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        data = open(p, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            try:
                data = gzip.decompress(data)
            except Exception:
                pass
        if needle in data:
            hits.append(p)
print('\n'.join(hits))
"#,
        &[env.root.to_str().unwrap(), value],
    );
    assert!(
        found.trim().is_empty(),
        "secret value found in the store: {found}"
    );
    let cfg = env.inspect("sec").to_string();
    assert!(!cfg.contains(value));
}
