//! End-to-end interop: kiln's archives and store judged by skopeo, umoci and podman, and
//! archives written by those tools loaded by kiln with the same layer digests.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

fn skopeo_json(args: &[&str]) -> Value {
    let out = sh_ok(Command::new("skopeo").args(args));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("skopeo {args:?}: {e}: {out}"))
}

/// Extracts a rootfs tarball with GNU tar (the independent reference for its contents).
fn extract(tar: &std::path::Path, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    sh_ok(
        Command::new("tar")
            .args(["--numeric-owner", "-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(dir),
    );
}

#[test]
fn skopeo_inspects_kiln_docker_archive() {
    if !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ins = env.inspect("busybox");
    let archive = env.path("busybox-docker.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let src = format!("docker-archive:{}:busybox:latest", archive.display());
    let v = skopeo_json(&["inspect", &src]);
    assert_eq!(v["Os"], "linux");
    // Docker archives carry uncompressed layers: skopeo's layer digests are the diff_ids.
    assert_eq!(v["Layers"], ins["Config"]["rootfs"]["diff_ids"], "{v:#}");
    let cfg = skopeo_json(&["inspect", "--config", &src]);
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(cfg["rootfs"], ins["Config"]["rootfs"]);
    // skopeo's view of the config is the config kiln stored, byte for byte.
    let raw_cfg = sh_ok(Command::new("skopeo").args(["inspect", "--raw", "--config", &src]));
    let id = ins["Id"].as_str().unwrap();
    assert_eq!(
        raw_cfg.as_bytes(),
        std::fs::read(env.blob_path(id)).unwrap().as_slice()
    );
}

#[test]
fn skopeo_inspects_kiln_oci_archive_and_store() {
    if !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ins = env.inspect("busybox");
    let archive = env.path("busybox-oci.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci",
        "busybox",
    ]);
    let layers: Vec<Value> = ins["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();
    for src in [
        format!("oci-archive:{}", archive.display()),
        // The store itself is an OCI layout.
        format!(
            "oci:{}:docker.io/library/busybox:latest",
            env.root.display()
        ),
    ] {
        let v = skopeo_json(&["inspect", &src]);
        assert_eq!(v["Digest"], ins["ManifestDigest"], "{src}: {v:#}");
        assert_eq!(v["Layers"], Value::Array(layers.clone()), "{src}");
        let raw = sh_ok(Command::new("skopeo").args(["inspect", "--raw", &src]));
        assert_eq!(
            sha256_file_bytes(&env, raw.as_bytes()),
            ins["ManifestDigest"].as_str().unwrap(),
            "{src}: raw manifest hashes to the manifest digest"
        );
        let cfg = skopeo_json(&["inspect", "--config", &src]);
        assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));
    }
}

fn sha256_file_bytes(env: &Env, bytes: &[u8]) -> String {
    let p = env.path("bytes-to-hash");
    std::fs::write(&p, bytes).unwrap();
    sha256_file(&p)
}

#[test]
fn umoci_unpack_of_skopeo_copy_yields_the_rootfs() {
    if !need("skopeo") || !need("umoci") {
        return;
    }
    let env = Env::new();
    let Some(tar) = busybox_image(&env) else {
        return;
    };
    let archive = env.path("busybox-oci.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci",
        "busybox",
    ]);
    let layout = env.path("layout");
    sh_ok(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci-archive:{}", archive.display()),
        &format!("oci:{}:bb", layout.display()),
    ]));
    let bundle = env.path("bundle");
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    // /proc/self belongs to the effective uid.
    if std::fs::metadata("/proc/self").unwrap().uid() != 0 {
        umoci.arg("--rootless");
    }
    sh_ok(
        umoci
            .arg("--image")
            .arg(format!("{}:bb", layout.display()))
            .arg(&bundle),
    );
    let reference = env.path("reference");
    extract(&tar, &reference);
    let expected = snapshot(&reference);
    assert!(expected.contains_key("bin/busybox") && expected.len() > 100);
    assert_same_tree(
        &expected,
        &snapshot(&bundle.join("rootfs")),
        "umoci unpack of kiln's image vs the busybox rootfs tarball",
    );
}

#[test]
fn skopeo_docker_archive_loads_with_same_layer_digests() {
    if !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let diff_ids = env.inspect("busybox")["Config"]["rootfs"]["diff_ids"].clone();
    let archive = env.path("busybox-oci.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci",
        "busybox",
    ]);
    // skopeo writes the docker-archive (it decompresses the layer itself).
    let docker = env.path("skopeo-docker.tar");
    sh_ok(Command::new("skopeo").args([
        "copy",
        "-q",
        &format!("oci-archive:{}", archive.display()),
        &format!(
            "docker-archive:{}:localhost/skopeo/bb:copied",
            docker.display()
        ),
    ]));
    let raw = skopeo_json(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", docker.display()),
    ]);
    let skopeo_layers: Vec<Value> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();

    let dst = Env::new();
    let out = dst.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert!(out.contains("localhost/skopeo/bb:copied"), "{out}");
    let kiln_layers: Vec<Value> = dst
        .layer_digests("localhost/skopeo/bb:copied")
        .into_iter()
        .map(Value::String)
        .collect();
    assert_eq!(kiln_layers, skopeo_layers);
    assert_eq!(Value::Array(kiln_layers.clone()), diff_ids);
    // And each layer file inside the archive hashes (sha256sum) to that digest.
    let x = dst.path("x");
    extract(&docker, &x);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(x.join("manifest.json")).unwrap()).unwrap();
    let files: Vec<Value> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| Value::String(sha256_file(&x.join(l.as_str().unwrap()))))
        .collect();
    assert_eq!(files, kiln_layers);
    dst.assert_store_clean();
}

#[test]
fn podman_save_loads_with_same_layer_digests() {
    if !need("podman") || !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let diff_ids = env.inspect("busybox")["Config"]["rootfs"]["diff_ids"].clone();
    let archive = env.path("busybox-oci.tar");
    env.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "--format",
        "oci",
        "busybox",
    ]);
    // A private podman storage: vfs driver, temp root and runroot, no cgroups or events.
    let podman = |args: &[&str]| {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(env.path("podman-root"))
            .arg("--runroot")
            .arg(env.path("podman-run"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .args(args)
            .env("XDG_RUNTIME_DIR", env.path("podman-xdg"));
        sh_ok(&mut c)
    };
    std::fs::create_dir_all(env.path("podman-xdg")).unwrap();
    let out = podman(&["load", "-i", archive.to_str().unwrap()]);
    assert!(out.contains("busybox"), "{out}");
    let saved = env.path("podman-docker.tar");
    podman(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        saved.to_str().unwrap(),
        "docker.io/library/busybox:latest",
    ]);
    let raw = skopeo_json(&[
        "inspect",
        "--raw",
        &format!("docker-archive:{}", saved.display()),
    ]);
    let podman_layers: Vec<Value> = raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].clone())
        .collect();

    let dst = Env::new();
    let out = dst.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(out.contains("busybox:latest"), "{out}");
    let kiln_layers: Vec<Value> = dst
        .layer_digests("busybox")
        .into_iter()
        .map(Value::String)
        .collect();
    assert_eq!(kiln_layers, podman_layers);
    assert_eq!(Value::Array(kiln_layers), diff_ids);
    assert_eq!(dst.inspect("busybox")["Id"], env.inspect("busybox")["Id"]);
    dst.assert_store_clean();
}
