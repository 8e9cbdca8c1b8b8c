//! `kiln build`: multi-stage and `--target`, every `--output` type, `-q`, `--compression`,
//! judged by skopeo, tar and `kiln run`.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;

#[test]
fn target_builds_only_needed_stages_and_copy_from_stage_and_image() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS broken
RUN exit 1
FROM busybox AS base
RUN echo base > /base && mkdir -p /tree/sub && echo t > /tree/sub/t
FROM base AS derived
RUN echo derived > /derived
FROM busybox AS app
COPY --from=derived /base /derived /got/
COPY --from=1 /tree /tree-by-index
COPY --from=busybox /bin/busybox /bb-from-image
CMD [\"cat\", \"/got/base\", \"/got/derived\"]
FROM broken AS last
",
        )],
    );
    // The default target (the last stage) needs the failing stage.
    let (code, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("exit 1") || err.contains("exit code"), "{err}");

    let ev = build_json(&env, &ctx, &["--target", "app", "-t", "app"]);
    let started = steps_with(&ev, "started");
    assert!(
        !started.iter().any(|d| d.contains("exit 1")),
        "an unneeded stage ran: {started:?}"
    );
    assert_eq!(env.ok(&["run", "--rm", "app"]), "base\nderived\n");
    let out = env.ok(&["run", "--rm", "app", "cat", "/tree-by-index/sub/t"]);
    assert_eq!(out, "t\n");
    let bb = env.ok(&[
        "run",
        "--rm",
        "app",
        "sh",
        "-c",
        "cmp /bin/busybox /bb-from-image && echo same",
    ]);
    assert_eq!(bb, "same\n");
    env.assert_store_clean();
}

fn simple(env: &Env) -> Option<std::path::PathBuf> {
    busybox_image(env)?;
    Some(context(
        env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo ran > /ran\nCMD [\"cat\", \"/hello.txt\", \"/ran\"]\n",
            ),
            ("hello.txt", "hello\n"),
        ],
    ))
}

#[test]
fn every_output_type() {
    let env = Env::new();
    let Some(ctx) = simple(&env) else { return };
    if !need("skopeo") {
        return;
    }
    let docker = env.path("img-docker.tar");
    let oci = env.path("img-oci.tar");
    let layout = env.path("layout");
    let local = env.path("rootfs");
    let rootfs_tar = env.path("rootfs.tar");
    let specs = [
        format!("type=docker,dest={}", docker.display()),
        format!("type=oci,dest={}", oci.display()),
        format!("type=oci,dest={},tar=false", layout.display()),
        format!("type=local,dest={}", local.display()),
        format!("type=tar,dest={}", rootfs_tar.display()),
    ];
    let mut args = vec!["build", "-q", "-t", "out:1", "-t", "out:2"];
    for s in &specs {
        args.push("-o");
        args.push(s);
    }
    args.push(ctx.to_str().unwrap());
    let id = env.ok(&args);
    let id = id.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71 && !id.contains('\n'),
        "-q prints only the id: {id:?}"
    );
    // -t tags in the store.
    let refs = env.references();
    assert!(refs.contains("docker.io/library/out:1"), "{refs:?}");
    assert!(refs.contains("docker.io/library/out:2"), "{refs:?}");
    assert_eq!(env.inspect("out:1")["Id"], id);

    let skopeo = |transport: String| -> Value {
        serde_json::from_str(&sh_ok(Command::new("skopeo").arg("inspect").arg(transport))).unwrap()
    };
    let skopeo_cfg = |transport: String| -> Value {
        let raw = sh_ok(
            Command::new("skopeo")
                .args(["inspect", "--config", "--raw"])
                .arg(transport),
        );
        serde_json::from_str(&raw).unwrap()
    };
    let want_cmd = serde_json::json!(["cat", "/hello.txt", "/ran"]);
    for t in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}", oci.display()),
        format!("oci:{}", layout.display()),
    ] {
        let i = skopeo(t.clone());
        assert_eq!(i["Layers"].as_array().unwrap().len(), 3, "{t}: {i}");
        let c = skopeo_cfg(t.clone());
        assert_eq!(c["config"]["Cmd"], want_cmd, "{t}");
        assert_eq!(c["rootfs"]["diff_ids"].as_array().unwrap().len(), 3, "{t}");
    }
    // The docker archive records the tag.
    let manifest: Value = serde_json::from_str(&sh_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&docker)
            .arg("manifest.json"),
    ))
    .unwrap();
    let tags = manifest[0]["RepoTags"].to_string();
    assert!(tags.contains("out:1"), "{manifest}");

    // Rootfs outputs.
    assert_eq!(
        std::fs::read_to_string(local.join("hello.txt")).unwrap(),
        "hello\n"
    );
    assert_eq!(std::fs::read_to_string(local.join("ran")).unwrap(), "ran\n");
    assert!(local.join("bin/busybox").is_file());
    let entries = tar_entries(&rootfs_tar);
    assert_eq!(entry_data(&entries, "hello.txt"), "hello\n");
    assert_eq!(entry_data(&entries, "ran"), "ran\n");
    assert!(entries.contains_key("bin/busybox"));

    // Running the built image.
    assert_eq!(env.ok(&["run", "--rm", "out:1"]), "hello\nran\n");
    env.assert_store_clean();
}

#[test]
fn untagged_build_with_outputs() {
    let env = Env::new();
    let Some(ctx) = simple(&env) else { return };
    let oci = env.path("img-oci.tar");
    let spec = format!("type=oci,dest={}", oci.display());
    let id = env.ok(&["build", "-q", "-o", &spec, ctx.to_str().unwrap()]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert!(oci.is_file());
    if need("skopeo") {
        sh_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}", oci.display())),
        );
    }
}

#[test]
fn zstd_compression() {
    let env = Env::new();
    let Some(ctx) = simple(&env) else { return };
    if !need("skopeo") {
        return;
    }
    let oci = env.path("zstd.tar");
    let spec = format!("type=oci,dest={}", oci.display());
    build_json(
        &env,
        &ctx,
        &["--compression", "zstd", "-t", "z", "-o", &spec],
    );
    let m = env.inspect("z")["Manifest"].clone();
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    // The base layer came from import (gzip); the two new layers are zstd.
    assert_eq!(types.len(), 3, "{m}");
    for t in &types[1..] {
        assert_eq!(
            *t, "application/vnd.oci.image.layer.v1.tar+zstd",
            "{types:?}"
        );
    }
    let raw: Value = serde_json::from_str(&sh_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci-archive:{}", oci.display())),
    ))
    .unwrap();
    assert_eq!(
        raw["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // The zstd layers are real zstd (magic bytes) and the image runs.
    let blob = env.blob_path(m["layers"][2]["digest"].as_str().unwrap());
    let bytes = std::fs::read(blob).unwrap();
    assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    assert_eq!(env.ok(&["run", "--rm", "z"]), "hello\nran\n");
}
