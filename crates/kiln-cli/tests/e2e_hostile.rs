//! End-to-end hostile input: crafted rootfs tarballs for `kiln import` and crafted image
//! archives for `kiln load`, each test named after its attack. Every test keeps a victim
//! directory outside any target and checks it is unchanged; every failure must be a clear
//! error that leaves no tag and no unreachable blob or temp file in the store.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Outcome of a hostile import or load.
enum Outcome {
    Ok(String),
    Err(String),
}

/// Entries of a (possibly compressed) tar, read with python's tarfile: (name, type, linkname).
fn tar_entries(p: &Path) -> Vec<(String, String, String)> {
    let out = py(
        "import sys, tarfile, json\n\
         with tarfile.open(sys.argv[1]) as t:\n    \
         print(json.dumps([[m.name, m.type.decode(), m.linkname] for m in t.getmembers()]))",
        &[p.to_str().unwrap()],
    );
    serde_json::from_str(&out).unwrap()
}

fn is_clean_name(n: &str) -> bool {
    !n.starts_with('/') && !n.split('/').any(|c| c == "..")
}

/// Imports the tar at `tar` as `hostile`. On success the layer kiln wrote must have clean
/// names and hardlink targets (listed by GNU tar and python, not by kiln); on failure the
/// error must name the input and no tag may exist. Either way: victim unchanged, store clean.
fn import_hostile(env: &Env, victim: &Victim, tar: &Path, extra: &[&str]) -> Outcome {
    let mut args = vec!["import", tar.to_str().unwrap(), "-t", "hostile"];
    args.extend_from_slice(extra);
    let o = env.run(&args);
    victim.assert_unchanged();
    let outcome = if o.status.success() {
        let layer = env.layer_digests("hostile")[0].clone();
        let blob = env.blob_path(&layer);
        // GNU tar can read it.
        let listing = tar_list(&blob);
        for line in &listing {
            assert!(
                !line.contains(" /") || line.contains(" -> /"),
                "absolute name in layer: {line}\n{listing:#?}"
            );
        }
        for (name, typ, link) in tar_entries(&blob) {
            assert!(is_clean_name(&name), "unclean name {name:?} in layer");
            if typ == "1" {
                assert!(
                    is_clean_name(&link),
                    "hardlink {name:?} to unclean {link:?}"
                );
            }
        }
        Outcome::Ok(listing.join("\n"))
    } else {
        let err = err_str(&o);
        assert!(
            err.contains(tar.file_name().unwrap().to_str().unwrap()),
            "error does not name the input: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(env.references().is_empty(), "failed import left a tag");
        Outcome::Err(err)
    };
    env.assert_store_clean();
    victim.assert_unchanged();
    outcome
}

fn hostile_rootfs(env: &Env, victim: &Victim, body: &str) -> PathBuf {
    let tar = env.path("hostile-rootfs.tar");
    py_tar(&tar, &[victim.path()], body);
    tar
}

#[test]
fn import_dotdot_names() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "dir_('ok')\nreg('ok/file', b'fine')\n\
         reg('../victim/pwned', b'escaped')\n\
         reg('../../../../../../../../' + args[0] + '/pwned2', b'escaped')\n\
         reg('a/../../victim/secret', b'overwritten')\n\
         dir_('../victim/newdir')\n",
    );
    if let Outcome::Ok(listing) = import_hostile(&env, &v, &tar, &[]) {
        assert!(listing.contains("ok/file"), "{listing}");
    }
}

#[test]
fn import_absolute_names() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "reg(args[0] + '/pwned', b'escaped')\n\
         reg(args[0] + '/secret', b'overwritten')\n\
         reg('/etc/absolute', b'abs')\n\
         dir_('/')\n",
    );
    if let Outcome::Ok(listing) = import_hostile(&env, &v, &tar, &[]) {
        assert!(listing.contains("etc/absolute"), "{listing}");
    }
}

#[test]
fn import_symlink_then_write_through() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "sym('abs', args[0])\nreg('abs/pwned', b'escaped')\nreg('abs/secret', b'overwritten')\n\
         sym('rel', '../../../../../../../../..' + args[0])\nreg('rel/pwned2', b'escaped')\n\
         sym('dot', '.')\nreg('dot/dot/dot/file', b'x')\n",
    );
    import_hostile(&env, &v, &tar, &[]);
}

#[test]
fn import_hardlink_to_outside() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "reg('inside', b'in')\nhard('ok', 'inside')\n\
         hard('abs', args[0] + '/secret')\n\
         hard('rel', '../../../../../../../..' + args[0] + '/secret')\n\
         hard('dotdot', '../victim/secret')\n",
    );
    import_hostile(&env, &v, &tar, &[]);
}

#[test]
fn import_whiteout_through_symlinked_parent() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "sym('d', args[0])\nreg('d/.wh.secret', b'')\nreg('d/sub/.wh.file', b'')\n\
         sym('r', '../../../../../../..' + args[0])\nreg('r/.wh.link', b'')\n",
    );
    import_hostile(&env, &v, &tar, &[]);
}

#[test]
fn import_opaque_whiteout_edge_cases() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "reg('.wh..wh..opq', b'')\ndir_('x')\nreg('x/.wh..wh..opq', b'')\n\
         reg('x/.wh..wh..opq', b'')\n\
         reg('../.wh..wh..opq', b'')\nreg('../victim/.wh..wh..opq', b'')\n\
         sym('s', args[0])\nreg('s/.wh..wh..opq', b'')\n\
         dir_('.wh..wh..opq')\nreg('y/.wh.', b'')\nreg('y/.wh..wh.', b'')\n",
    );
    import_hostile(&env, &v, &tar, &[]);
}

/// A gzip-compressed tar holding `mib` MiB of zeros in one file (~1000:1).
fn gzip_bomb(env: &Env, mib: u32) -> PathBuf {
    let out = env.path("bomb.tar.gz");
    py(
        "import sys, tarfile, io, gzip\n\
         n = int(sys.argv[2]) << 20\n\
         class Zeros(io.RawIOBase):\n    \
             def __init__(self): self.left = n\n    \
             def readable(self): return True\n    \
             def readinto(self, b):\n        \
                 k = min(len(b), self.left); b[:k] = bytes(k); self.left -= k; return k\n\
         with gzip.GzipFile(sys.argv[1], 'wb', compresslevel=9, mtime=0) as g:\n    \
             with tarfile.open(fileobj=g, mode='w', format=tarfile.PAX_FORMAT) as t:\n        \
                 ti = tarfile.TarInfo('zeros'); ti.size = n\n        \
                 t.addfile(ti, io.BufferedReader(Zeros()))\n",
        &[out.to_str().unwrap(), &mib.to_string()],
    );
    let len = std::fs::metadata(&out).unwrap().len();
    assert!(len < (mib as u64) << 12, "bomb is small: {len}");
    out
}

#[test]
fn import_gzip_bomb_above_max_layer_size() {
    let env = Env::new();
    let v = Victim::new(&env);
    let bomb = gzip_bomb(&env, 24);
    match import_hostile(&env, &v, &bomb, &["--max-layer-size", "1000000"]) {
        Outcome::Err(err) => {
            assert!(err.contains("max-layer-size"), "{err}");
            assert!(
                err.contains("--max-layer-size"),
                "error names the flag: {err}"
            );
        }
        Outcome::Ok(_) => panic!("a 24 MiB layer passed --max-layer-size 1000000"),
    }
    // With the default limits the ~1030:1 bomb is refused by the ratio limit...
    match import_hostile(&env, &v, &bomb, &[]) {
        Outcome::Err(err) => assert!(err.contains("--max-decompression-ratio"), "{err}"),
        Outcome::Ok(_) => panic!("a ~1030:1 gzip passed the default ratio limit"),
    }
    // ...and raising the limits lets the same (trusted) archive in.
    env.ok(&[
        "import",
        bomb.to_str().unwrap(),
        "-t",
        "zeros",
        "--max-decompression-ratio",
        "5000",
    ]);
}

#[test]
fn import_gzip_bomb_above_max_decompression_ratio() {
    let env = Env::new();
    let v = Victim::new(&env);
    let bomb = gzip_bomb(&env, 24);
    match import_hostile(&env, &v, &bomb, &["--max-decompression-ratio", "20"]) {
        Outcome::Err(err) => {
            assert!(err.contains("--max-decompression-ratio"), "{err}");
        }
        Outcome::Ok(_) => panic!("a ~1000:1 gzip passed --max-decompression-ratio 20"),
    }
}

#[test]
fn import_too_many_entries_and_long_paths() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(
        &env,
        &v,
        "for i in range(50): reg('f%d' % i, b'')\nreg('d/' + 'x' * 300, b'')\n",
    );
    match import_hostile(&env, &v, &tar, &["--max-layer-entries", "10"]) {
        Outcome::Err(err) => assert!(err.contains("--max-layer-entries"), "{err}"),
        Outcome::Ok(_) => panic!("51 entries passed --max-layer-entries 10"),
    }
    match import_hostile(&env, &v, &tar, &["--max-path-length", "100"]) {
        Outcome::Err(err) => assert!(err.contains("--max-path-length"), "{err}"),
        Outcome::Ok(_) => panic!("a 302-byte name passed --max-path-length 100"),
    }
}

#[test]
fn import_garbage_after_end_of_archive() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(&env, &v, "reg('etc/hello', b'hi')\n");
    let mut bytes = std::fs::read(&tar).unwrap();
    bytes.extend(b"GARBAGE!".repeat(1000));
    std::fs::write(&tar, &bytes).unwrap();
    if let Outcome::Ok(listing) = import_hostile(&env, &v, &tar, &[]) {
        assert!(listing.contains("etc/hello"), "{listing}");
        assert!(!listing.contains("GARBAGE"), "{listing}");
    }
}

#[test]
fn import_truncated_archive() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = hostile_rootfs(&env, &v, "reg('big', b'y' * 100000)\n");
    let bytes = std::fs::read(&tar).unwrap();
    std::fs::write(&tar, &bytes[..50_000]).unwrap();
    match import_hostile(&env, &v, &tar, &[]) {
        Outcome::Err(_) => {}
        Outcome::Ok(l) => panic!("a truncated archive imported: {l}"),
    }
}

// ---- kiln load --------------------------------------------------------------------------

/// A valid archive of a tiny image named `tiny`, saved by kiln from another store.
fn base_archive(env: &Env, format: &str) -> PathBuf {
    let src = Env::new();
    let tar = tiny_tar(&src, "tiny.tar", "hello");
    src.ok(&["import", tar.to_str().unwrap(), "-t", "tiny"]);
    let out = env.path(&format!("base-{format}.tar"));
    src.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "--format",
        format,
        "tiny",
    ]);
    out
}

/// Loads a hostile archive built by `body` (python; `args[0]` = base archive, `args[1]` =
/// victim dir). On success only `tiny` may be tagged; on failure nothing is, and the error
/// names the archive. Either way: victim unchanged, store clean.
fn load_hostile(env: &Env, victim: &Victim, format: &str, body: &str, extra: &[&str]) -> Outcome {
    let base = base_archive(env, format);
    let archive = env.path(&format!("hostile-{format}.tar"));
    py_tar(&archive, &[base.to_str().unwrap(), victim.path()], body);
    load_file(env, victim, &archive, extra)
}

fn load_file(env: &Env, victim: &Victim, archive: &Path, extra: &[&str]) -> Outcome {
    // Run from a work dir next to the victim, so `../victim` names point at it.
    let work = env.path("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut args = vec!["load", "-i", archive.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = env.cmd(&args).current_dir(&work).output().unwrap();
    victim.assert_unchanged();
    assert!(
        std::fs::read_dir(&work).unwrap().next().is_none(),
        "load wrote into its working directory"
    );
    let outcome = if o.status.success() {
        let refs = env.references();
        assert!(
            refs.iter().all(|r| r == "docker.io/library/tiny:latest"),
            "{refs:?}"
        );
        if !refs.is_empty() {
            env.ok(&["save", "-o", "resaved.tar", "tiny"]);
        }
        Outcome::Ok(out_str(&o))
    } else {
        let err = err_str(&o);
        assert!(
            err.contains(archive.file_name().unwrap().to_str().unwrap()),
            "error does not name the archive: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(env.references().is_empty(), "failed load left a tag");
        Outcome::Err(err)
    };
    env.assert_store_clean();
    victim.assert_unchanged();
    outcome
}

const FORMATS: [&str; 2] = ["docker", "oci"];

#[test]
fn load_dotdot_names() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "reg('../victim/pwned', b'escaped')\nreg('../victim/secret', b'overwritten')\n\
             reg('../../../../../../../..' + args[1] + '/pwned2', b'escaped')\n\
             dir_('../victim/newdir')\ncopy_from(args[0])\n",
            &[],
        );
    }
}

#[test]
fn load_dotdot_names_for_image_files() {
    // The image's own files named through `..`: either resolved inside the archive or refused.
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "copy_from(args[0], rename=lambda n: '../' + n)\n",
            &[],
        );
    }
}

#[test]
fn load_absolute_names() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "reg(args[1] + '/pwned', b'escaped')\nreg(args[1] + '/secret', b'overwritten')\n\
             copy_from(args[0], rename=lambda n: args[1] + '/' + n)\n",
            &[],
        );
    }
}

#[test]
fn load_symlink_then_write_through() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "sym('evil', args[1])\nreg('evil/pwned', b'escaped')\nreg('evil/secret', b'x')\n\
             sym('blobs', args[1])\nsym('rel', '../victim')\nreg('rel/pwned2', b'escaped')\n\
             copy_from(args[0])\n",
            &[],
        );
    }
}

#[test]
fn load_symlinked_metadata_pointing_outside() {
    // index.json / manifest.json replaced by a symlink to a file outside the archive.
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        let meta = if f == "oci" {
            "index.json"
        } else {
            "manifest.json"
        };
        let body = format!(
            "copy_from(args[0], skip=lambda n: n == '{meta}')\nsym('{meta}', args[1] + '/secret')\n"
        );
        match load_hostile(&env, &v, f, &body, &[]) {
            Outcome::Err(e) => assert!(!e.contains("do not touch"), "{e}"),
            Outcome::Ok(o) => panic!("{f}: loaded through a symlink to outside: {o}"),
        }
    }
}

#[test]
fn load_hardlink_to_outside() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        // The layer file is replaced by a hardlink to the victim's secret.
        let body = "import re\n\
             layer = [m.name for m in tarfile.open(args[0]).getmembers() \
                      if m.size > 150 and (m.name.endswith('.tar') or '/sha256/' in m.name)]\n\
             big = max(layer, key=lambda n: tarfile.open(args[0]).getmember(n).size)\n\
             copy_from(args[0], skip=lambda n: n == big)\n\
             hard(big, args[1] + '/secret')\nhard('x', '../victim/secret')\n";
        match load_hostile(&env, &v, f, body, &[]) {
            Outcome::Err(_) => {}
            Outcome::Ok(o) => panic!("{f}: loaded with the layer hardlinked outside: {o}"),
        }
    }
}

#[test]
fn load_whiteout_through_symlinked_parent() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "sym('d', args[1])\nreg('d/.wh.secret', b'')\nreg('d/.wh.sub', b'')\n\
             copy_from(args[0])\n",
            &[],
        );
    }
}

#[test]
fn load_opaque_whiteout_edge_cases() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        load_hostile(
            &env,
            &v,
            f,
            "reg('.wh..wh..opq', b'')\nreg('../.wh..wh..opq', b'')\n\
             sym('s', args[1])\nreg('s/.wh..wh..opq', b'')\n\
             copy_from(args[0])\nreg('blobs/sha256/.wh..wh..opq', b'')\n\
             reg('.wh.index.json', b'')\nreg('.wh.manifest.json', b'')\n",
            &[],
        );
    }
}

#[test]
fn load_gzip_bomb_above_limit() {
    let env = Env::new();
    let v = Victim::new(&env);
    let bomb = gzip_bomb(&env, 24);
    match load_file(&env, &v, &bomb, &["--max-layer-size", "1000000"]) {
        Outcome::Err(err) => assert!(err.contains("--max-layer-size"), "{err}"),
        Outcome::Ok(o) => panic!("bomb loaded: {o}"),
    }
    match load_file(&env, &v, &bomb, &["--max-decompression-ratio", "20"]) {
        Outcome::Err(err) => assert!(err.contains("--max-decompression-ratio"), "{err}"),
        Outcome::Ok(o) => panic!("bomb loaded: {o}"),
    }
}

#[test]
fn load_garbage_after_end_of_archive() {
    for f in FORMATS {
        let env = Env::new();
        let v = Victim::new(&env);
        let base = base_archive(&env, f);
        let archive = env.path("garbage.tar");
        let mut bytes = std::fs::read(&base).unwrap();
        bytes.extend(b"GARBAGE!".repeat(1000));
        std::fs::write(&archive, &bytes).unwrap();
        load_file(&env, &v, &archive, &[]);
    }
}

#[test]
fn load_oci_blob_digest_mismatch() {
    let env = Env::new();
    let v = Victim::new(&env);
    // Flip one byte of the largest blob (the layer), keeping its size and name.
    let body = "big = max((m for m in tarfile.open(args[0]).getmembers() if m.isfile()), \
                key=lambda m: m.size).name\n\
         def alter(n, d):\n    \
             if n != big: return d\n    \
             d = bytearray(d); d[len(d)//2] ^= 0xff; return bytes(d)\n\
         copy_from(args[0], alter=alter)\n";
    match load_hostile(&env, &v, "oci", body, &[]) {
        Outcome::Err(err) => {
            assert!(err.contains("hashes to") || err.contains("digest"), "{err}");
        }
        Outcome::Ok(o) => panic!("altered blob loaded: {o}"),
    }
}

#[test]
fn load_docker_layer_not_matching_diff_id() {
    let env = Env::new();
    let v = Victim::new(&env);
    // The layer is moved to a neutral name (so only the config's diff_id can catch it) and
    // one byte of it is changed; manifest.json is rewritten to point at it.
    let body = "src = tarfile.open(args[0])\n\
         man = json.loads(src.extractfile('manifest.json').read())\n\
         old = man[0]['Layers'][0]\n\
         man[0]['Layers'][0] = 'layer/layer.tar'\n\
         def alter(n, d):\n    \
             if n == 'manifest.json': return json.dumps(man).encode()\n    \
             if n == 'layer/layer.tar':\n        \
                 d = bytearray(d); d[600] ^= 0x01; return bytes(d)\n    \
             return d\n\
         copy_from(args[0], rename=lambda n: 'layer/layer.tar' if n == old else n, alter=alter)\n";
    match load_hostile(&env, &v, "docker", body, &[]) {
        Outcome::Err(err) => assert!(err.contains("diff_id"), "{err}"),
        Outcome::Ok(o) => panic!("layer with wrong diff_id loaded: {o}"),
    }
}

#[test]
fn load_docker_layer_named_after_wrong_digest() {
    let env = Env::new();
    let v = Victim::new(&env);
    let body = "src = tarfile.open(args[0])\n\
         old = json.loads(src.extractfile('manifest.json').read())[0]['Layers'][0]\n\
         def alter(n, d):\n    \
             if n != old: return d\n    \
             d = bytearray(d); d[600] ^= 0x01; return bytes(d)\n\
         copy_from(args[0], alter=alter)\n";
    match load_hostile(&env, &v, "docker", body, &[]) {
        Outcome::Err(err) => assert!(
            err.contains("hashes to") || err.contains("diff_id"),
            "{err}"
        ),
        Outcome::Ok(o) => panic!("altered layer loaded: {o}"),
    }
}

#[test]
fn load_not_an_image_archive() {
    let env = Env::new();
    let v = Victim::new(&env);
    let tar = tiny_tar(&env, "rootfs.tar", "x");
    match load_file(&env, &v, &tar, &[]) {
        Outcome::Err(err) => assert!(
            err.contains("index.json") || err.contains("manifest.json"),
            "{err}"
        ),
        Outcome::Ok(o) => panic!("a rootfs loaded as an image: {o}"),
    }
    let _ = Value::Null;
}
