//! The shared build cache: `--cache-to type=local` on "machine A" (one KILN_ROOT),
//! `--cache-from` on "machine B" (another, empty but for the base image). Judged from the
//! `--progress json` stream, the stores' blob directories and the cache directory read
//! with serde_json (not with kiln).

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Two stages: the builder's result reaches the final image only through a COPY, and
/// its last step is not used by the final stage at all.
const DOCKERFILE: &str = "FROM busybox AS build
COPY a.txt /a.txt
RUN cat /a.txt > /built && echo more >> /built
RUN echo intermediate > /junk
FROM busybox
COPY --from=build /built /built
RUN --mount=type=cache,target=/cache,id=pkgs sh -c 'echo pkgdata > /cache/p; cat /built > /final'
";

const EPOCH: &str = "1700000000";

/// A "machine": a store with the busybox base image, imported at a fixed
/// SOURCE_DATE_EPOCH so every machine has the same base image (as a pull of one digest
/// would give), and the build context.
fn machine() -> Option<(Env, PathBuf)> {
    let env = Env::new();
    import_reproducible_busybox(&env, EPOCH)?;
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", DOCKERFILE), ("a.txt", "from a\n")],
    );
    Some((env, ctx))
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["-t", "app"];
    args.extend_from_slice(extra);
    let mut cmd_args = vec!["build", "--progress", "json"];
    cmd_args.extend_from_slice(&args);
    cmd_args.push(ctx.to_str().unwrap());
    let o = env
        .cmd(&cmd_args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kiln {cmd_args:?} failed:\n{}",
        err_str(&o)
    );
    events(&err_str(&o))
}

fn build_fails(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress", "plain", "-t", "app"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let o = env
        .cmd(&args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(!o.status.success(), "kiln {args:?} unexpectedly succeeded");
    err_str(&o)
}

fn cache_events<'a>(ev: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["kind"] == kind).collect()
}

fn spec(kind: &str, dir: &Path, rest: &str) -> String {
    format!("type=local,{kind}={}{rest}", dir.display())
}

/// The cache's config, read through index.json → manifest → config with serde_json.
fn cache_config(dir: &Path) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(m)).unwrap()).unwrap();
    let c = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = serde_json::from_slice(&std::fs::read(blob(c)).unwrap()).unwrap();
    (manifest, config)
}

/// Replaces the cache's config (new blob, new manifest, new index.json) as a forger would.
fn rewrite_config(env: &Env, dir: &Path, config: &Value) {
    let (mut manifest, _) = cache_config(dir);
    let put = |bytes: &[u8]| -> (String, usize) {
        let tmp = env.path("forged.json");
        std::fs::write(&tmp, bytes).unwrap();
        let d = sha256_file(&tmp);
        std::fs::write(
            dir.join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap()),
            bytes,
        )
        .unwrap();
        (d, bytes.len())
    };
    let (cd, cs) = put(&serde_json::to_vec(config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = md.into();
    index["manifests"][0]["size"] = ms.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn flip_byte(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

/// A builds and exports (mode=max); B (same base image, nothing else) builds the same
/// context from that cache: every step a hit that names the cache, only the final image's
/// own layers are copied, and the image is identical.
#[test]
fn machine_b_hits_every_step_and_fetches_only_final_layers() {
    let Some((a, ctx_a)) = machine() else { return };
    let cache = a.path("cache");
    let ev = build(
        &a,
        &ctx_a,
        &["--cache-to", &spec("dest", &cache, ",mode=max")],
    );
    let export = cache_events(&ev, "cache_export");
    assert_eq!(export.len(), 1, "{ev:#?}");
    assert_eq!(export[0]["records"], 5, "{:#}", export[0]);
    let id_a = a.inspect("app")["Id"].clone();
    let digest_a = a.inspect("app")["Digest"].clone();

    let Some((b, ctx_b)) = machine() else { return };
    let base_blobs = b.blobs();
    let ev = build(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    let all = steps_after_from(&ev);
    assert_eq!(all.len(), 5, "{all:?}");
    let reason = format!("from cache {}", cache.display());
    assert_eq!(
        cached_from(&ev, &reason),
        all,
        "every step a hit from the cache"
    );
    assert_eq!(b.inspect("app")["Id"], id_a, "same image config");
    assert_eq!(b.inspect("app")["Digest"], digest_a, "same manifest");

    // Only the final image's own layers (not busybox's) were copied: the builder's layers
    // were never needed as files.
    let final_layers: BTreeSet<String> = b.layer_digests("app").into_iter().collect();
    let new_layers: BTreeSet<String> = final_layers.difference(&base_blobs).cloned().collect();
    assert_eq!(
        new_layers.len(),
        2,
        "COPY --from and RUN layers: {new_layers:?}"
    );
    let fetch = cache_events(&ev, "cache_import");
    assert_eq!(fetch.len(), 1, "{ev:#?}");
    assert_eq!(fetch[0]["blobs_fetched"], 2, "{:#}", fetch[0]);
    let (manifest, _) = cache_config(&cache);
    let cache_layers: BTreeSet<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(
        cache_layers.len() > new_layers.len(),
        "the cache holds intermediate layers too: {cache_layers:?}"
    );
    let stray: Vec<_> = b.blobs().difference(&b.reachable()).cloned().collect();
    assert!(
        stray.iter().all(|d| !cache_layers.contains(d)),
        "intermediate layers were fetched: {stray:?}"
    );
    assert!(
        !b.root.join("kiln/snapshots").read_dir().unwrap().any(|e| {
            let n = e.unwrap().file_name();
            let n = n.to_string_lossy();
            n.len() == 64 && !base_snapshot(&b, &n)
        }),
        "nothing but the base image was unpacked on B"
    );
    b.assert_store_clean();

    // Exporting back to the cache it came from (the usual CI pattern) copies nothing.
    let Some((c, ctx_c)) = machine() else { return };
    let ev = build(
        &c,
        &ctx_c,
        &[
            "--cache-from",
            &spec("src", &cache, ""),
            "--cache-to",
            &spec("dest", &cache, ",mode=max"),
        ],
    );
    let reason = format!("from cache {}", cache.display());
    assert_eq!(
        cached_from(&ev, &reason),
        steps_after_from(&ev),
        "every step of C a hit from the cache: {ev:#?}"
    );
    let export = cache_events(&ev, "cache_export");
    assert_eq!(export[0]["records"], 5, "{:#}", export[0]);
    assert_eq!(export[0]["blobs_sent"], 0, "{:#}\n{ev:#?}", export[0]);
    assert_eq!(cache_events(&ev, "cache_import")[0]["blobs_fetched"], 2);
}

/// Whether snapshot `hex` belongs to the busybox base image (its only layer).
fn base_snapshot(env: &Env, hex: &str) -> bool {
    let cfg = env.inspect("busybox")["Config"]["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    cfg.strip_prefix("sha256:") == Some(hex)
}

/// mode=min records only the final stage's chain; mode=max every step. On B, min leaves
/// the builder stage to run again (its output is reproducible, so the final steps still
/// hit and the image is the same).
#[test]
fn mode_min_exports_the_final_chain_and_max_everything() {
    let Some((a, ctx_a)) = machine() else { return };
    let min = a.path("cache-min");
    let max = a.path("cache-max");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &spec("dest", &min, ",mode=min"),
            "--cache-to",
            &spec("dest", &max, ",mode=max"),
        ],
    );
    let descriptions = |dir: &Path| record_descriptions(&cache_config(dir).1);
    let min_records = descriptions(&min);
    assert_eq!(min_records.len(), 2, "{min_records:?}");
    assert!(
        min_records.iter().all(|d| d.contains("stage-1")),
        "{min_records:?}"
    );
    let max_records = descriptions(&max);
    assert_eq!(max_records.len(), 5, "{max_records:?}");
    assert!(max_records.is_superset(&min_records));
    // Links: the final RUN's parent is the COPY --from record.
    let (_, cfg) = cache_config(&max);
    let run = cache_record(&cfg, "cat /built > /final");
    let parents = run["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 1, "{run:#}");
    let parent = &cfg["records"][parents[0].as_u64().unwrap() as usize];
    assert!(
        parent["description"]
            .as_str()
            .unwrap()
            .contains("COPY --from=build"),
        "{parent:#}"
    );

    let id_a = a.inspect("app")["Id"].clone();
    let Some((b, ctx_b)) = machine() else { return };
    let ev = build(&b, &ctx_b, &["--cache-from", &spec("src", &min, "")]);
    let reason = format!("from cache {}", min.display());
    let hits = cached_from(&ev, &reason);
    assert_eq!(
        hits.len(),
        2,
        "only the final stage came from the min cache: {hits:?}"
    );
    assert!(hits.iter().all(|d| d.contains("stage-1")), "{hits:?}");
    assert_eq!(b.inspect("app")["Id"], id_a);

    // Several --cache-from, looked up in order: a missing one is a warning, min answers
    // for the final stage, max for the builder.
    let Some((c, ctx_c)) = machine() else { return };
    let nowhere = c.path("nowhere");
    let ev = build(
        &c,
        &ctx_c,
        &[
            "--cache-from",
            &spec("src", &nowhere, ""),
            "--cache-from",
            &spec("src", &min, ""),
            "--cache-from",
            &spec("src", &max, ""),
        ],
    );
    let from_min = cached_from(&ev, &format!("from cache {}", min.display()));
    let from_max = cached_from(&ev, &format!("from cache {}", max.display()));
    assert_eq!(from_min, hits, "{from_min:?}");
    assert_eq!(from_max.len(), 3, "{from_max:?}");
    assert!(
        from_max.iter().all(|d| d.contains("[build")),
        "{from_max:?}"
    );
    assert_eq!(c.inspect("app")["Id"], id_a);
}

/// mounts=true carries a RUN cache mount to B, where a step that misses finds it; without
/// mounts=true (or with mounts=false on import) it does not travel.
#[test]
fn cache_mounts_travel_with_mounts_true() {
    let Some((a, ctx_a)) = machine() else { return };
    let with = a.path("cache-mounts");
    let without = a.path("cache-plain");
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &spec("dest", &with, ",mounts=true"),
            "--cache-to",
            &spec("dest", &without, ""),
        ],
    );
    let (_, cfg) = cache_config(&with);
    assert_eq!(cfg["mounts"].as_array().unwrap().len(), 1, "{cfg:#}");
    let (_, cfg) = cache_config(&without);
    assert!(
        cfg["mounts"].as_array().is_none_or(|m| m.is_empty()),
        "{cfg:#}"
    );

    // B runs a different step that reads the package cache.
    let reader = "FROM busybox
RUN --mount=type=cache,target=/cache,id=pkgs sh -c 'cat /cache/p > /seen || echo none > /seen'
";
    let seen = |cache: &Path, rest: &str| -> String {
        let b = Env::new();
        import_reproducible_busybox(&b, EPOCH).unwrap();
        let ctx = context(&b, "ctx", &[("Dockerfile", reader)]);
        let out = b.path("out");
        build(
            &b,
            &ctx,
            &[
                "--cache-from",
                &spec("src", cache, rest),
                "-o",
                &format!("type=local,dest={}", out.display()),
            ],
        );
        std::fs::read_to_string(out.join("seen")).unwrap()
    };
    assert_eq!(seen(&with, ""), "pkgdata\n");
    assert_eq!(seen(&without, ""), "none\n");
    assert_eq!(seen(&with, ",mounts=false"), "none\n");
}

/// A flipped byte in a layer the final image needs: a clear error naming the blob, and
/// nothing of it in B's store. A flipped byte in a layer nobody needs goes unnoticed (it
/// is never fetched).
#[test]
fn corrupt_layer_in_cache_is_refused_and_store_stays_clean() {
    let Some((a, ctx_a)) = machine() else { return };
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &["--cache-to", &spec("dest", &cache, ",mode=max")],
    );
    let (_, cfg) = cache_config(&cache);
    let final_layer = cache_record(&cfg, "cat /built > /final")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let junk_layer = cache_record(&cfg, "echo intermediate")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = |d: &str| {
        cache
            .join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap())
    };

    flip_byte(&path(&junk_layer));
    let Some((b, ctx_b)) = machine() else { return };
    build(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    assert!(!b.blobs().contains(&junk_layer));

    flip_byte(&path(&final_layer));
    let Some((c, ctx_c)) = machine() else { return };
    let err = build_fails(&c, &ctx_c, &["--cache-from", &spec("src", &cache, "")]);
    assert!(
        err.contains(&final_layer) && err.contains("corrupt"),
        "the error names the corrupt blob: {err}"
    );
    assert!(!c.blobs().contains(&final_layer));
    c.assert_store_clean();
}

/// A config whose record for the final RUN names another layer of the cache (the diff id
/// left as it was): the lie is found when the blob is fetched — a clear error, nothing
/// committed. A record naming a blob the manifest does not list is ignored: a miss, and
/// the step runs.
#[test]
fn lying_records_give_an_error_or_a_miss() {
    let Some((a, ctx_a)) = machine() else { return };
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &["--cache-to", &spec("dest", &cache, ",mode=max")],
    );
    let (_, original) = cache_config(&cache);
    let junk = cache_record(&original, "echo intermediate")["layers"][0]["digest"].clone();

    let mut forged = original.clone();
    for r in forged["records"].as_array_mut().unwrap() {
        if r["description"]
            .as_str()
            .unwrap()
            .contains("cat /built > /final")
        {
            r["layers"][0]["digest"] = junk.clone();
        }
    }
    rewrite_config(&a, &cache, &forged);
    let Some((b, ctx_b)) = machine() else { return };
    let err = build_fails(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    assert!(
        err.contains("the cache record says") && err.contains(junk.as_str().unwrap()),
        "{err}"
    );
    assert!(!b.blobs().contains(junk.as_str().unwrap()));
    b.assert_store_clean();

    let mut unlisted = original.clone();
    for r in unlisted["records"].as_array_mut().unwrap() {
        if r["description"]
            .as_str()
            .unwrap()
            .contains("cat /built > /final")
        {
            r["layers"][0]["digest"] =
                "sha256:0000000000000000000000000000000000000000000000000000000000000000".into();
        }
    }
    rewrite_config(&a, &cache, &unlisted);
    let Some((c, ctx_c)) = machine() else { return };
    let ev = build(&c, &ctx_c, &["--cache-from", &spec("src", &cache, "")]);
    let reason = format!("from cache {}", cache.display());
    let hits = cached_from(&ev, &reason);
    assert!(
        !hits.iter().any(|d| d.contains("cat /built > /final")),
        "{hits:?}"
    );
    assert_eq!(hits.len(), 4, "the other records still hit: {hits:?}");
    assert_eq!(
        c.inspect("app")["Id"],
        a.inspect("app")["Id"],
        "the step ran and made the same layer"
    );
    c.assert_store_clean();
}

/// After an import, `kiln prune` keeps the image whole (fsck clean, every reachable blob
/// present), and a rebuild from the cache still hits everything.
#[test]
fn prune_after_import_keeps_store_consistent() {
    let Some((a, ctx_a)) = machine() else { return };
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &["--cache-to", &spec("dest", &cache, ",mode=max")],
    );
    let Some((b, ctx_b)) = machine() else { return };
    build(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    let id = b.inspect("app")["Id"].clone();
    b.assert_store_clean();
    b.ok(&["rmi", "app"]);
    b.assert_store_clean();
    let ev = build(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    assert_eq!(
        cached_from(&ev, &format!("from cache {}", cache.display())).len(),
        5
    );
    assert_eq!(b.inspect("app")["Id"], id);
    b.assert_store_clean();
}

/// On B a new last step misses: the lazy hits below it become files (fetched, verified,
/// unpacked) — including a `COPY --link` layer, which a merge moved onto another stack —
/// while the builder stage's layers still are not fetched.
#[test]
fn a_miss_after_lazy_hits_materialises_only_its_inputs() {
    let dockerfile = "FROM busybox AS build
COPY a.txt /a.txt
RUN cat /a.txt > /built
FROM busybox
COPY --link --from=build /built /built
RUN cat /built > /final
";
    let Some((a, _)) = machine() else { return };
    let ctx_a = context(
        &a,
        "ctx2",
        &[("Dockerfile", dockerfile), ("a.txt", "from a\n")],
    );
    let cache = a.path("cache");
    build(
        &a,
        &ctx_a,
        &["--cache-to", &spec("dest", &cache, ",mode=max")],
    );

    let Some((b, _)) = machine() else { return };
    let more = format!("{dockerfile}RUN cat /final /built > /check\n");
    let ctx_b = context(&b, "ctx2", &[("Dockerfile", &more), ("a.txt", "from a\n")]);
    let out = b.path("out");
    let ev = build(
        &b,
        &ctx_b,
        &[
            "--cache-from",
            &spec("src", &cache, ""),
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    let hits = cached_from(&ev, &format!("from cache {}", cache.display()));
    assert_eq!(hits.len(), 4, "{hits:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("check")).unwrap(),
        "from a\nfrom a\n"
    );
    let fetch = cache_events(&ev, "cache_import");
    assert_eq!(
        fetch[0]["blobs_fetched"], 2,
        "the COPY --link and RUN layers, not the builder's: {:#}",
        fetch[0]
    );
    b.assert_store_clean();
}

/// Spec errors (a bad registry reference, a digest to export to) fail before building.
#[test]
fn bad_specs_fail_early() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", "FROM scratch\n")]);
    let c = ctx.to_str().unwrap();
    let (_, err) = env.fail(&["build", "--cache-to", "type=local", c]);
    assert!(
        err.contains("--cache-to") && err.contains("dest=DIR"),
        "{err}"
    );
    let (_, err) = env.fail(&["build", "--cache-from", "type=local,src=/x,mode=max", c]);
    assert!(err.contains("unknown field \"mode\""), "{err}");
    let (_, err) = env.fail(&["build", "--cache-to", "type=registry,ref=r.example/A::c", c]);
    assert!(
        err.contains("--cache-to type=registry,ref=r.example/A::c"),
        "{err}"
    );
    let pinned = format!("type=registry,ref=r.example/a@sha256:{}", "0".repeat(64));
    let (_, err) = env.fail(&["build", "--cache-to", &pinned, c]);
    assert!(err.contains("not a digest"), "{err}");
}

/// Digests every manifest of the directory's index.json references (manifests, configs,
/// layers), read with serde_json.
fn referenced(dir: &Path) -> BTreeSet<String> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for m in index["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(&d[7..])).unwrap())
                .unwrap();
        out.insert(d.to_string());
        out.insert(manifest["config"]["digest"].as_str().unwrap().to_string());
        for l in manifest["layers"].as_array().unwrap() {
            out.insert(l["digest"].as_str().unwrap().to_string());
        }
    }
    out
}

fn cache_blob_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

/// Exporting again and again to one directory does not grow it without bound: after each
/// export it holds exactly what index.json references (the new cache and the one it
/// replaced), the first export's own blobs are gone after the third, and the directory
/// still serves a fresh machine every step of the latest build.
#[test]
fn local_cache_directory_keeps_only_what_its_index_references() {
    let Some((a, ctx)) = machine() else { return };
    let cache = a.path("gc-cache");
    let to = spec("dest", &cache, ",mode=max,mounts=true");
    let mut generations = Vec::new();
    let mut removed = Vec::new();
    for content in ["one\n", "two\n", "three\n"] {
        std::fs::write(ctx.join("a.txt"), content).unwrap();
        let ev = build(&a, &ctx, &["--cache-to", &to]);
        let export = cache_events(&ev, "cache_export")[0].clone();
        removed.push(export["blobs_removed"].as_u64().unwrap());
        let live = referenced(&cache);
        assert_eq!(
            cache_blob_files(&cache),
            live,
            "only referenced blobs remain"
        );
        let (manifest, _) = cache_config(&cache);
        let mut own: BTreeSet<String> = manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        own.insert(manifest["config"]["digest"].as_str().unwrap().to_string());
        generations.push(own);
    }
    assert_eq!(
        removed[..2],
        [0, 0],
        "nothing to drop before a third export"
    );
    assert!(removed[2] > 0, "{removed:?}");
    let first_only: BTreeSet<&String> = generations[0]
        .iter()
        .filter(|d| !generations[1].contains(*d) && !generations[2].contains(*d))
        .collect();
    assert!(!first_only.is_empty());
    let files = cache_blob_files(&cache);
    assert!(
        first_only.iter().all(|d| !files.contains(*d)),
        "{first_only:?}"
    );
    assert!(
        generations[1].iter().all(|d| files.contains(d)),
        "previous kept"
    );

    let Some((b, ctx_b)) = machine() else { return };
    std::fs::write(ctx_b.join("a.txt"), "three\n").unwrap();
    let ev = build(&b, &ctx_b, &["--cache-from", &spec("src", &cache, "")]);
    let all = steps_after_from(&ev);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        cached_from(&ev, &format!("from cache {}", cache.display())),
        all
    );
    assert_eq!(b.inspect("app")["Digest"], a.inspect("app")["Digest"]);
}
