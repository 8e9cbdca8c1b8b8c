//! End-to-end: the store commands (images, inspect, tag, rmi, prune, fsck), import, save/load
//! round trips and determinism, through the real `kiln` binary.

mod common;

use common::*;
use serde_json::Value;
use std::process::{Command, Stdio};

#[test]
fn busybox_image_is_listed_and_inspectable() {
    let env = Env::new();
    let Some(_tar) = busybox_image(&env) else {
        return;
    };
    let imgs = env.images();
    assert_eq!(imgs.len(), 1, "{imgs:#?}");
    let img = &imgs[0];
    assert_eq!(img["reference"], "docker.io/library/busybox:latest");
    assert_eq!(img["repository"], "docker.io/library/busybox");
    assert_eq!(img["tag"], "latest");
    assert!(img["size"].as_u64().unwrap() > 500_000, "{img}");
    let id = img["id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");

    // -q prints the short id, the table names the image.
    let q = env.ok(&["images", "-q"]);
    assert_eq!(q.trim(), &id[7..19]);
    let table = env.ok(&["images"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"] {
        assert!(header.contains(col), "{table}");
    }
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("busybox") && row.contains("latest") && row.contains(&id[7..19]),
        "{table}"
    );

    let ins = env.inspect("busybox");
    assert_eq!(ins["Id"], id);
    assert_eq!(ins["Config"]["config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(ins["Config"]["os"], "linux");
    assert_eq!(
        ins["RepoTags"],
        serde_json::json!(["docker.io/library/busybox:latest"])
    );
    assert_eq!(ins["ManifestDigest"], img["manifest_digest"]);
    // The config blob's digest is the image id, checked with sha256sum.
    assert_eq!(sha256_file(&env.blob_path(id)), id);
    let layers = ins["Manifest"]["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    let layer = layers[0]["digest"].as_str().unwrap();
    assert_eq!(sha256_file(&env.blob_path(layer)), layer);
    // The diff_id is the digest of the uncompressed layer, checked with gzip + sha256sum.
    let unz = env.path("layer.tar");
    let f = std::fs::File::create(&unz).unwrap();
    let st = Command::new("gzip")
        .arg("-dc")
        .arg(env.blob_path(layer))
        .stdout(f)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        ins["Config"]["rootfs"]["diff_ids"][0].as_str().unwrap(),
        sha256_file(&unz)
    );
    let names = tar_names(&unz);
    assert!(
        names
            .iter()
            .any(|n| n.trim_start_matches("./") == "bin/busybox"),
        "{names:?}"
    );
    env.assert_store_clean();
}

#[test]
fn tag_rmi_prune_lifecycle() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    env.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);
    let id = env.inspect("tiny")["Id"].as_str().unwrap().to_string();

    env.ok(&["tag", "tiny", "localhost:5000/tools/tiny:1.36"]);
    let refs = env.references();
    assert_eq!(
        refs.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "docker.io/library/tiny:latest",
            "localhost:5000/tools/tiny:1.36"
        ]
    );
    assert!(env.images().iter().all(|i| i["id"] == id.as_str()));
    let ins = env.inspect("localhost:5000/tools/tiny:1.36");
    assert_eq!(ins["Id"], id.as_str());
    assert_eq!(ins["RepoTags"].as_array().unwrap().len(), 2, "{ins:#}");
    // By id prefix and by manifest digest.
    assert_eq!(env.inspect(&id[7..19])["Id"], id.as_str());
    let md = ins["ManifestDigest"].as_str().unwrap().to_string();
    assert_eq!(env.inspect(&md)["Id"], id.as_str());

    // Nothing is unreferenced yet.
    let p: Value = serde_json::from_str(&env.ok(&["prune", "--format", "json"])).unwrap();
    assert_eq!(p["blobs_removed"], 0, "{p}");
    assert_eq!(p["bytes_freed"], 0, "{p}");

    let out = env.ok(&["rmi", "tiny"]);
    assert!(out.contains("Untagged: tiny"), "{out}");
    assert_eq!(env.references().len(), 1);
    env.ok(&["inspect", "localhost:5000/tools/tiny:1.36"]);

    // Removing a name that is not there fails, naming it, and removes nothing else.
    let (code, err) = env.fail(&["rmi", "nosuchimage", "localhost:5000/tools/tiny:1.36"]);
    assert_eq!(code, 1);
    assert!(err.contains("nosuchimage"), "{err}");
    assert!(
        env.references().is_empty(),
        "the valid name is still removed"
    );

    let blobs_before = env.blobs();
    assert_eq!(
        blobs_before.len(),
        3,
        "config, layer, manifest: {blobs_before:?}"
    );
    let expected_bytes: u64 = blobs_before
        .iter()
        .map(|d| std::fs::metadata(env.blob_path(d)).unwrap().len())
        .sum();
    let p: Value = serde_json::from_str(&env.ok(&["prune", "--format", "json"])).unwrap();
    assert_eq!(p["blobs_removed"], 3, "{p}");
    assert_eq!(p["bytes_freed"], expected_bytes, "{p}");
    assert!(env.blobs().is_empty());
    let table = env.ok(&["prune"]);
    assert!(
        table.contains("Total reclaimed space") && table.contains("(0 bytes)"),
        "{table}"
    );
    assert!(env.images().is_empty());
    env.assert_store_clean();
}

#[test]
fn errors_name_the_input() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    env.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);

    let (_, err) = env.fail(&["inspect", "nosuchimage"]);
    assert!(err.contains("nosuchimage"), "{err}");
    let (_, err) = env.fail(&["tag", "nosuchimage", "other"]);
    assert!(err.contains("nosuchimage"), "{err}");
    let (_, err) = env.fail(&["tag", "tiny", "Bad:Ref:X"]);
    assert!(err.contains("Bad:Ref:X"), "{err}");
    let (_, err) = env.fail(&["import", "/nonexistent/rootfs.tar", "-t", "x"]);
    assert!(err.contains("/nonexistent/rootfs.tar"), "{err}");
    let (_, err) = env.fail(&["import", tar.to_str().unwrap(), "-t", "UPPER"]);
    assert!(err.contains("UPPER"), "{err}");
    let (_, err) = env.fail(&[
        "import",
        tar.to_str().unwrap(),
        "-t",
        "x",
        "--change",
        "FROBNICATE yes",
    ]);
    assert!(err.contains("FROBNICATE"), "{err}");
    let (_, err) = env.fail(&["save", "-o", "out.tar", "nosuchimage"]);
    assert!(err.contains("nosuchimage"), "{err}");
    assert!(
        !env.path("out.tar").exists(),
        "a failed save leaves no file"
    );
    let (_, err) = env.fail(&["load", "-i", "/nonexistent/a.tar"]);
    assert!(err.contains("/nonexistent/a.tar"), "{err}");
    // Usage errors are clap's exit code 2.
    let (code, _) = env.fail(&["images", "--format", "yaml"]);
    assert_eq!(code, 2);
    // Nothing was half-created by the failures.
    assert_eq!(env.references().len(), 1);
    env.assert_store_clean();
}

#[test]
fn root_flag_overrides_kiln_root() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    let other = env.path("other-store");
    env.ok(&[
        "--root",
        other.to_str().unwrap(),
        "import",
        tar.to_str().unwrap(),
        "-t",
        "tiny",
    ]);
    assert!(other.join("oci-layout").exists());
    assert!(other.join("index.json").exists());
    assert!(env.images().is_empty(), "KILN_ROOT store untouched");
    let out = env.ok(&["--root", other.to_str().unwrap(), "images", "-q"]);
    assert_eq!(out.lines().count(), 1);
}

#[test]
fn fsck_reports_and_removes_corrupt_blob() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    env.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);
    env.assert_fsck_clean();
    let table = env.ok(&["fsck"]);
    assert!(table.contains("clean"), "{table}");

    let layer = env.layer_digests("tiny")[0].clone();
    let path = env.blob_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let o = env.run(&["fsck", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clean"], false);
    assert_eq!(v["corrupt"][0]["digest"], layer.as_str(), "{v:#}");
    assert_eq!(v["corrupt"][0]["removed"], false);
    assert_eq!(
        v["corrupt"][0]["actual"].as_str().unwrap(),
        sha256_file(&path)
    );
    let o = env.run(&["fsck"]);
    assert_eq!(o.status.code(), Some(1));
    let t = out_str(&o);
    assert!(t.contains("corrupt") && t.contains(&layer), "{t}");
    assert!(t.contains("--remove-corrupt"), "{t}");

    let o = env.run(&["fsck", "--remove-corrupt", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "a repaired problem still exits 1");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["corrupt"][0]["removed"], true, "{v:#}");
    assert!(!path.exists());

    // Now the layer is referenced but missing.
    let o = env.run(&["fsck", "--format", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["missing"][0]["digest"], layer.as_str(), "{v:#}");
    // Saving the broken image fails, naming the missing blob, and writes no archive.
    let (_, err) = env.fail(&["save", "-o", "out.tar", "tiny"]);
    assert!(err.contains(&layer[7..]), "{err}");
    assert!(!env.path("out.tar").exists());
}

#[test]
fn prune_removes_stale_temp_files() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    env.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);
    let stray = env.root.join("kiln/tmp/stray-partial-blob");
    std::fs::write(&stray, b"half a blob").unwrap();
    // A fresh temp file may belong to a live writer; prune takes those older than an hour.
    let young = env.root.join("kiln/tmp/young-partial-blob");
    std::fs::write(&young, b"in flight").unwrap();
    sh_ok(
        Command::new("touch")
            .args(["-d", "2 hours ago"])
            .arg(&stray),
    );
    let o = env.run(&["fsck", "--format", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["stray_temp_files"].as_array().unwrap().len() == 2,
        "fsck reports the stray temp file: {v:#}"
    );
    let p: Value = serde_json::from_str(&env.ok(&["prune", "--format", "json"])).unwrap();
    assert_eq!(p["temp_files_removed"], 1, "{p}");
    assert!(!stray.exists());
    assert!(young.exists(), "a young temp file is left for its writer");
    std::fs::remove_file(&young).unwrap();
    env.assert_store_clean();
}

#[test]
fn import_from_stdin_and_zstd_give_same_diff_id() {
    let env = Env::new();
    let tar = tiny_tar(&env, "tiny.tar", "hello");
    env.ok(&["import", tar.to_str().unwrap(), "-t", "gz"]);
    let mut child = env
        .cmd(&[
            "import",
            "-",
            "-t",
            "zst",
            "--compression",
            "zstd",
            "--change",
            "ENV A=b",
            "--change",
            "WORKDIR /srv",
            "-m",
            "from stdin",
        ])
        .stdin(std::fs::File::open(&tar).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let st = child.wait().unwrap();
    assert!(st.success());
    let gz = env.inspect("gz");
    let zst = env.inspect("zst");
    assert_eq!(
        gz["Config"]["rootfs"]["diff_ids"],
        zst["Config"]["rootfs"]["diff_ids"]
    );
    assert!(gz["Manifest"]["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("+gzip"));
    assert!(zst["Manifest"]["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("+zstd"));
    assert_ne!(
        gz["Manifest"]["layers"][0]["digest"],
        zst["Manifest"]["layers"][0]["digest"]
    );
    assert_eq!(zst["Config"]["config"]["Env"][0], "A=b", "{zst:#}");
    assert_eq!(zst["Config"]["config"]["WorkingDir"], "/srv");
    let hist = &zst["Config"]["history"][0];
    assert_eq!(hist["comment"], "from stdin", "{hist}");
    assert!(hist["created_by"].as_str().unwrap().contains("stdin"));
    // The zstd layer blob decompresses (with the zstd tool if present) to the diff_id.
    if Command::new("sh")
        .args(["-c", "command -v zstd"])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
    {
        let layer = zst["Manifest"]["layers"][0]["digest"].as_str().unwrap();
        let out = env.path("zst-layer.tar");
        sh_ok(
            Command::new("zstd")
                .arg("-dq")
                .arg(env.blob_path(layer))
                .arg("-o")
                .arg(&out),
        );
        assert_eq!(
            sha256_file(&out),
            zst["Config"]["rootfs"]["diff_ids"][0].as_str().unwrap()
        );
    }
    env.assert_store_clean();
}

#[test]
fn save_load_round_trip_keeps_several_tags() {
    for format in ["docker", "oci"] {
        let src = Env::new();
        let a = tiny_tar(&src, "a.tar", "aaa");
        let b = tiny_tar(&src, "b.tar", "bbb");
        src.ok(&["import", a.to_str().unwrap(), "-t", "one"]);
        src.ok(&["import", b.to_str().unwrap(), "-t", "two:v2"]);
        src.ok(&["tag", "one", "localhost:5000/x/one:1"]);
        let archive = src.path("images.tar");
        src.ok(&[
            "save",
            "-o",
            archive.to_str().unwrap(),
            "--format",
            format,
            "one",
            "two:v2",
            "localhost:5000/x/one:1",
        ]);
        let dst = Env::new();
        let out = dst.ok(&["load", "-i", archive.to_str().unwrap()]);
        for n in ["one:latest", "two:v2", "localhost:5000/x/one:1"] {
            assert!(
                out.contains(&format!("Loaded image: {n}")),
                "{format}: {out}"
            );
        }
        assert_eq!(src.references(), dst.references(), "{format}");
        for r in ["one", "two:v2", "localhost:5000/x/one:1"] {
            assert_eq!(
                src.inspect(r)["Id"],
                dst.inspect(r)["Id"],
                "{format}: {r} keeps its id"
            );
            assert_eq!(
                src.inspect(r)["Config"]["rootfs"],
                dst.inspect(r)["Config"]["rootfs"]
            );
        }
        dst.assert_store_clean();
        // Loading the same archive again changes nothing.
        let blobs = dst.blobs();
        dst.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert_eq!(blobs, dst.blobs());
        // And from stdin.
        let third = Env::new();
        let o = third
            .cmd(&["load"])
            .stdin(std::fs::File::open(&archive).unwrap())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_str(&o));
        assert_eq!(third.references(), src.references());
    }
}

#[test]
fn import_is_deterministic_with_source_date_epoch() {
    let a = Env::new();
    let Some(tar) = busybox_tar(&a) else {
        return;
    };
    let b = Env::new();
    let mut ids = Vec::new();
    for env in [&a, &b] {
        let o = env
            .cmd(&[
                "import",
                tar.to_str().unwrap(),
                "-t",
                "busybox",
                "--change",
                r#"CMD ["sh"]"#,
            ])
            .env("SOURCE_DATE_EPOCH", "0")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_str(&o));
        let img = env.images()[0].clone();
        ids.push((
            out_str(&o).trim().to_string(),
            img["id"].clone(),
            img["manifest_digest"].clone(),
        ));
        assert_eq!(
            env.inspect("busybox")["Config"]["created"],
            "1970-01-01T00:00:00Z"
        );
    }
    assert_eq!(
        ids[0], ids[1],
        "same tarball, same SOURCE_DATE_EPOCH, same image"
    );
    assert_eq!(ids[0].0, ids[0].1.as_str().unwrap());

    for format in ["docker", "oci"] {
        let mut files = Vec::new();
        for (i, env) in [&a, &a, &b].iter().enumerate() {
            let p = a.path(&format!("{format}-{i}.tar"));
            env.ok(&[
                "save",
                "-o",
                p.to_str().unwrap(),
                "--format",
                format,
                "busybox",
            ]);
            files.push(std::fs::read(&p).unwrap());
        }
        assert!(files[0] == files[1], "{format}: saving twice differs");
        assert!(
            files[0] == files[2],
            "{format}: saving from two stores differs"
        );
    }
    // save to stdout gives the same bytes as save to a file.
    let o = a.cmd(&["save", "-o", "-", "busybox"]).output().unwrap();
    assert!(o.status.success());
    assert!(o.stdout == std::fs::read(a.path("docker-0.tar")).unwrap());
}

#[test]
fn load_docker_archive_with_legacy_layer_names() {
    // docker save before 25.0 names layers `<id>/layer.tar` (no digest in the name); a small
    // layer under such a name must load like any other.
    let src = Env::new();
    let tar = tiny_tar(&src, "tiny.tar", "hello");
    src.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);
    let base = src.path("base.tar");
    src.ok(&["save", "-o", base.to_str().unwrap(), "tiny"]);
    let legacy = src.path("legacy.tar");
    py_tar(
        &legacy,
        &[base.to_str().unwrap()],
        "src = tarfile.open(args[0])\n\
         man = json.loads(src.extractfile('manifest.json').read())\n\
         old = man[0]['Layers'][0]\n\
         new = 'a' * 64 + '/layer.tar'\n\
         man[0]['Layers'][0] = new\n\
         dir_('a' * 64)\n\
         copy_from(args[0], rename=lambda n: new if n == old else n, \
                   alter=lambda n, d: json.dumps(man).encode() if n == 'manifest.json' else d)\n",
    );
    let dst = Env::new();
    dst.ok(&["load", "-i", legacy.to_str().unwrap()]);
    assert_eq!(dst.inspect("tiny")["Id"], src.inspect("tiny")["Id"]);
    assert_eq!(
        dst.layer_digests("tiny"),
        vec![src.inspect("tiny")["Config"]["rootfs"]["diff_ids"][0]
            .as_str()
            .unwrap()
            .to_string()]
    );
    dst.assert_store_clean();
}
