//! The shared build cache through a real registry (Debian's docker-registry on
//! 127.0.0.1:5100, started by scripts/registry.sh): `--cache-to type=registry` on "machine
//! A" (one KILN_ROOT), `--cache-from type=registry` on "machine B" (another, empty but for
//! the base image). Judged from the registry's own access log (which blobs were fetched or
//! uploaded), the registry's HTTP API read with curl + serde_json, the `--progress json`
//! stream and the stores' blob directories.

mod common;
mod registry_common;

use common::*;
use registry_common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const REGISTRY: &str = "127.0.0.1:5100";
const EPOCH: &str = "1700000000";

/// Multi-stage: a COPY and RUNs in a builder stage whose last step the final image does
/// not use, a COPY --from and a RUN with a cache mount in the final stage. `NONCE` makes
/// every test's layers its own (the tamper test corrupts blobs in the registry's storage,
/// which is shared by content across repositories).
const DOCKERFILE: &str = "FROM busybox AS build
COPY a.txt /a.txt
RUN cat /a.txt > /built && echo more >> /built
RUN echo intermediate > /junk
FROM busybox
COPY --from=build /built /built
RUN --mount=type=cache,target=/cache,id=pkgs sh -c 'echo pkgdata > /cache/p; cat /built > /final'
";

fn nonce() -> String {
    // Unique per test and run: the repository name generator is.
    repo("nonce")
}

/// A fresh store with only the base image, and the build context (`a.txt` = `content`).
fn machine(content: &str) -> Option<(Env, PathBuf)> {
    registries()?;
    let env = Env::new();
    import_reproducible_busybox(&env, EPOCH)?;
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", DOCKERFILE), ("a.txt", content)],
    );
    Some((env, ctx))
}

fn build_out(env: &Env, ctx: &Path, extra: &[&str]) -> std::process::Output {
    build_out_with(env, ctx, extra, &[])
}

fn build_out_with(
    env: &Env,
    ctx: &Path,
    extra: &[&str],
    vars: &[(&str, &Path)],
) -> std::process::Output {
    let mut args = vec!["build", "--progress", "json", "-t", "app"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let mut c = env.cmd(&args);
    c.env("SOURCE_DATE_EPOCH", EPOCH);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let o = build_out(env, ctx, extra);
    assert!(
        o.status.success(),
        "kiln build {extra:?} failed:\n{}",
        err_str(&o)
    );
    (events(&err_str(&o)), err_str(&o))
}

fn build_fails(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let o = build_out(env, ctx, extra);
    assert!(
        !o.status.success(),
        "kiln build {extra:?} unexpectedly succeeded"
    );
    err_str(&o)
}

fn one<'a>(ev: &'a [Value], kind: &str) -> &'a Value {
    let v: Vec<&Value> = ev.iter().filter(|e| e["kind"] == kind).collect();
    assert_eq!(v.len(), 1, "one {kind} event: {ev:#?}");
    v[0]
}

/// `127.0.0.1:5100/<unique>/cache/app` and the `ref=` of its `buildcache` tag.
fn cache_ref() -> (String, String) {
    let repo = repo("cache/app");
    let r = format!("{REGISTRY}/{repo}:buildcache");
    (repo, r)
}

fn curl(args: &[&str]) -> Vec<u8> {
    let o = Command::new("curl")
        .args(["-sSf", "--max-time", "30"])
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "curl {args:?}: {}", err_str(&o));
    o.stdout
}

/// The cache manifest and config as the registry serves them.
fn registry_cache(repo: &str, tag: &str) -> (Value, Value) {
    let m = curl(&[
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{REGISTRY}/v2/{repo}/manifests/{tag}"),
    ]);
    let manifest: Value = serde_json::from_slice(&m).unwrap();
    let c = manifest["config"]["digest"].as_str().unwrap();
    let config: Value = serde_json::from_slice(&curl(&[
        "-L",
        &format!("http://{REGISTRY}/v2/{repo}/blobs/{c}"),
    ]))
    .unwrap();
    (manifest, config)
}

/// Requests the registry logged for `repo` since `from` (a byte offset of its access
/// log): (method, path, status).
fn access_log(from: u64, repo: &str) -> Vec<(String, String, u16)> {
    let log = registries().unwrap().join("5100/log");
    let text = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&text[from as usize..]).to_string();
    let needle = format!("/v2/{repo}/");
    text.lines()
        .filter_map(|l| {
            // 127.0.0.1 - - [date] "GET /v2/... HTTP/1.1" 200 123 "" "ua"
            let q = l.split('"').nth(1)?;
            let mut parts = q.split(' ');
            let method = parts.next()?.to_string();
            let path = parts.next()?.to_string();
            let status = l
                .split('"')
                .nth(2)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            path.starts_with(&needle).then_some((method, path, status))
        })
        .collect()
}

fn log_len() -> u64 {
    std::fs::metadata(registries().unwrap().join("5100/log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Digests of blobs fetched with a successful GET.
fn blobs_fetched(log: &[(String, String, u16)]) -> BTreeSet<String> {
    log.iter()
        .filter(|(m, p, s)| m == "GET" && p.contains("/blobs/sha256:") && (200..300).contains(s))
        .map(|(_, p, _)| p.rsplit('/').next().unwrap().to_string())
        .collect()
}

/// Requests that upload blob bytes (POST opens a session; PATCH/PUT carry data).
fn uploads(log: &[(String, String, u16)]) -> usize {
    log.iter()
        .filter(|(m, p, _)| (m == "PATCH" || m == "PUT") && p.contains("/blobs/uploads/"))
        .count()
}

/// The acceptance test of the issue: A exports (mode=max, mounts=true) to the registry,
/// B imports: every step a hit, only the final image's own layers (and the cache config)
/// are downloaded — counted in the registry's access log —, the image digest is the same;
/// a re-export uploads nothing; the cache mount's content reaches a third machine.
#[test]
fn machine_b_hits_every_step_from_the_registry_and_fetches_only_final_layers() {
    let content = format!("from a {}\n", nonce());
    let Some((a, ctx_a)) = machine(&content) else {
        return;
    };
    let (repo, cache) = cache_ref();
    let to = format!("type=registry,ref={cache},mode=max,mounts=true");
    let start = log_len();
    let (ev, _) = build(&a, &ctx_a, &["--cache-to", &to]);
    let export = one(&ev, "cache_export");
    assert_eq!(export["records"], 5, "{export:#}");
    assert_eq!(export["mounts"], 1, "{export:#}");
    let sent = export["blobs_sent"].as_u64().unwrap();
    assert!(
        sent >= 5,
        "layers, the mount tar and the config: {export:#}"
    );
    assert!(uploads(&access_log(start, &repo)) >= sent as usize);
    let digest_a = a.inspect("app")["Digest"].clone();
    let (manifest, config) = registry_cache(&repo, "buildcache");
    assert_eq!(
        manifest["artifactType"], "application/vnd.kiln.cache.v1",
        "{manifest:#}"
    );
    assert_eq!(config["mounts"].as_array().unwrap().len(), 1);

    // Exporting the same build again: HEAD before every upload, nothing sent.
    let start = log_len();
    let (ev, _) = build(&a, &ctx_a, &["--cache-to", &to]);
    let export = one(&ev, "cache_export");
    assert_eq!(export["blobs_sent"], 0, "{export:#}");
    assert_eq!(export["blobs_present"].as_u64().unwrap(), sent);
    let log = access_log(start, &repo);
    assert_eq!(uploads(&log), 0, "no blob uploaded on re-export: {log:?}");
    assert!(log.iter().any(|(m, _, _)| m == "HEAD"), "{log:?}");

    // Machine B: same base image, nothing else.
    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let base_blobs = b.blobs();
    let start = log_len();
    let (ev, _) = build(
        &b,
        &ctx_b,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    let all = steps_after_from(&ev);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        cached_from(&ev, &format!("from cache {cache}")),
        all,
        "every step a hit from the registry cache"
    );
    assert_eq!(b.inspect("app")["Digest"], digest_a, "same image digest");
    let final_layers: BTreeSet<String> = b.layer_digests("app").into_iter().collect();
    let new_layers: BTreeSet<String> = final_layers.difference(&base_blobs).cloned().collect();
    assert_eq!(
        new_layers.len(),
        2,
        "COPY --from and RUN layers: {new_layers:?}"
    );
    assert_eq!(one(&ev, "cache_import")["blobs_fetched"], 2);
    // What the registry saw: the manifest, the config, the two final layers. Not the
    // builder stage's layers, not the cache-mount tar (no step missed and needed it).
    let log = access_log(start, &repo);
    let mut expected = new_layers.clone();
    expected.insert(manifest["config"]["digest"].as_str().unwrap().to_string());
    assert_eq!(blobs_fetched(&log), expected, "{log:?}");
    assert_eq!(
        log.iter()
            .filter(|(m, p, _)| m == "GET" && p.contains("/manifests/"))
            .count(),
        1,
        "{log:?}"
    );
    assert!(manifest["layers"].as_array().unwrap().len() > expected.len());
    b.assert_store_clean();

    // Machine C runs a different step that reads the package cache: the mount content
    // arrives from the registry (mounts=true on export).
    let reader = "FROM busybox
RUN --mount=type=cache,target=/cache,id=pkgs sh -c 'cat /cache/p > /seen || echo none > /seen'
";
    let c = Env::new();
    import_reproducible_busybox(&c, EPOCH).unwrap();
    let ctx_c = context(&c, "ctx", &[("Dockerfile", reader)]);
    let out = c.path("out");
    build(
        &c,
        &ctx_c,
        &[
            "--cache-from",
            &format!("type=registry,ref={cache}"),
            "-o",
            &format!("type=local,dest={}", out.display()),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "pkgdata\n"
    );
}

/// mode=min records the final stage's chain, mode=max every step; B from the min cache
/// hits the final stage only (the builder runs again and gives the same image).
#[test]
fn mode_min_and_max_over_the_registry() {
    let content = format!("from a {}\n", nonce());
    let Some((a, ctx_a)) = machine(&content) else {
        return;
    };
    let (min_repo, min) = cache_ref();
    let (max_repo, max) = cache_ref();
    build(
        &a,
        &ctx_a,
        &[
            "--cache-to",
            &format!("type=registry,ref={min},mode=min"),
            "--cache-to",
            &format!("type=registry,ref={max},mode=max"),
        ],
    );
    let descriptions = |repo: &str| record_descriptions(&registry_cache(repo, "buildcache").1);
    let min_records = descriptions(&min_repo);
    assert_eq!(min_records.len(), 2, "{min_records:?}");
    assert!(
        min_records.iter().all(|d| d.contains("stage-1")),
        "{min_records:?}"
    );
    let max_records = descriptions(&max_repo);
    assert_eq!(max_records.len(), 5, "{max_records:?}");
    assert!(max_records.is_superset(&min_records));
    let (_, min_cfg) = registry_cache(&min_repo, "buildcache");
    assert_eq!(min_cfg["mode"], "min");

    let digest_a = a.inspect("app")["Digest"].clone();
    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let (ev, _) = build(
        &b,
        &ctx_b,
        &["--cache-from", &format!("type=registry,ref={min}")],
    );
    let hits = cached_from(&ev, &format!("from cache {min}"));
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert!(hits.iter().all(|d| d.contains("stage-1")), "{hits:?}");
    assert_eq!(b.inspect("app")["Digest"], digest_a);
}

/// A cache reference with nothing behind it: a warning, and the build runs every step.
#[test]
fn missing_cache_ref_is_a_warning() {
    let content = format!("from a {}\n", nonce());
    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let (_, cache) = cache_ref();
    let (ev, err) = build(
        &b,
        &ctx_b,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert!(
        err.contains(&format!("cache {cache}: no cache there yet")),
        "{err}"
    );
    assert!(cached_from(&ev, &format!("from cache {cache}")).is_empty());
    assert_eq!(steps_after_from(&ev).len(), 5);
    // A registry that does not answer at all: a warning too, not a failed build.
    let (_, err) = build(
        &b,
        &ctx_b,
        &[
            "--cache-from",
            "type=registry,ref=127.0.0.1:1/nothing/here:cache",
        ],
    );
    assert!(
        err.contains("warning: not using cache 127.0.0.1:1/nothing/here:cache"),
        "{err}"
    );
}

/// Pushes `bytes` as a blob of `repo` with raw HTTP (POST a session, PUT the bytes);
/// returns its digest.
fn push_raw_blob(env: &Env, repo: &str, bytes: &[u8]) -> String {
    let f = env.path("raw-blob");
    std::fs::write(&f, bytes).unwrap();
    let d = sha256_file(&f);
    let head = curl(&[
        "-X",
        "POST",
        "-D",
        "-",
        "-o",
        "/dev/null",
        &format!("http://{REGISTRY}/v2/{repo}/blobs/uploads/"),
    ]);
    let head = String::from_utf8(head).unwrap();
    let loc = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("location")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location: {head}"));
    let loc = if loc.starts_with('/') {
        format!("http://{REGISTRY}{loc}")
    } else {
        loc
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", f.display()),
        &format!("{loc}{sep}digest={d}"),
    ]);
    d
}

/// Tampering with the cache in the registry. (1) A forged manifest + config whose record
/// for the final RUN names another layer of the cache: the lie is found when the blob is
/// fetched (diff id), a clear error, nothing committed. (2) A flipped byte in the stored
/// final layer (the registry's own storage; the registry serves it unverified): a clear
/// "corrupt" error naming the blob. Both stores stay fsck-clean.
#[test]
fn tampered_cache_in_the_registry_is_refused() {
    let content = format!("from a {}\n", nonce());
    let Some((a, ctx_a)) = machine(&content) else {
        return;
    };
    let (repo, cache) = cache_ref();
    build(
        &a,
        &ctx_a,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
    );
    let (manifest, original) = registry_cache(&repo, "buildcache");
    let final_layer = cache_record(&original, "cat /built > /final")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let junk = cache_record(&original, "echo intermediate")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // (1) The lying manifest, under another tag of the same repository.
    let mut forged = original.clone();
    for r in forged["records"].as_array_mut().unwrap() {
        if r["description"]
            .as_str()
            .unwrap()
            .contains("cat /built > /final")
        {
            r["layers"][0]["digest"] = junk.clone().into();
        }
    }
    let forged_bytes = serde_json::to_vec(&forged).unwrap();
    let cd = push_raw_blob(&a, &repo, &forged_bytes);
    let mut lying = manifest.clone();
    lying["config"]["digest"] = cd.into();
    lying["config"]["size"] = forged_bytes.len().into();
    let mf = a.path("lying-manifest.json");
    std::fs::write(&mf, serde_json::to_vec(&lying).unwrap()).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &format!("@{}", mf.display()),
        &format!("http://{REGISTRY}/v2/{repo}/manifests/lying"),
    ]);
    let lying_ref = format!("{REGISTRY}/{repo}:lying");
    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let err = build_fails(
        &b,
        &ctx_b,
        &["--cache-from", &format!("type=registry,ref={lying_ref}")],
    );
    assert!(
        err.contains("the cache record says") && err.contains(&junk),
        "{err}"
    );
    assert!(!b.blobs().contains(&junk));
    b.assert_store_clean();

    // (2) A flipped byte in the registry's copy of the final layer.
    let hex = final_layer.strip_prefix("sha256:").unwrap();
    let data = registries()
        .unwrap()
        .join("5100/data/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(&data, bytes).unwrap();
    let Some((c, ctx_c)) = machine(&content) else {
        return;
    };
    let err = build_fails(
        &c,
        &ctx_c,
        &["--cache-from", &format!("type=registry,ref={cache}")],
    );
    assert!(
        err.contains(&final_layer) && err.contains("corrupt"),
        "the error names the corrupt blob: {err}"
    );
    assert!(!c.blobs().contains(&final_layer));
    c.assert_store_clean();
}

/// The TLS + htpasswd registry (:5101): the cache transport uses the CA from kiln's
/// certs.d and the credentials of the auth file, exactly as pull/push do. Without
/// credentials an import is a warning naming `kiln login`, and an export fails.
#[test]
fn cache_through_the_tls_registry_with_basic_auth() {
    use base64::Engine as _;
    let Some(dir) = registries() else { return };
    let content = format!("from a {}\n", nonce());
    let Some((a, ctx_a)) = machine(&content) else {
        return;
    };
    let cfg = a.path("config");
    let certs = cfg.join("kiln/certs.d").join(TLS);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let auth = a.path("auth.json");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        &auth,
        format!(r#"{{"auths":{{"{TLS}":{{"auth":"{token}"}}}}}}"#),
    )
    .unwrap();
    let cache = format!("{TLS}/{}:buildcache", repo("secure-cache"));
    let vars: [(&str, &Path); 2] = [("XDG_CONFIG_HOME", &cfg), ("REGISTRY_AUTH_FILE", &auth)];
    let o = build_out_with(
        &a,
        &ctx_a,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        &vars,
    );
    assert!(o.status.success(), "{}", err_str(&o));
    assert_eq!(one(&events(&err_str(&o)), "cache_export")["records"], 5);

    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let from = format!("type=registry,ref={cache}");
    let o = build_out_with(&b, &ctx_b, &["--cache-from", &from], &vars);
    assert!(o.status.success(), "{}", err_str(&o));
    let ev = events(&err_str(&o));
    assert_eq!(cached_from(&ev, &format!("from cache {cache}")).len(), 5);
    assert_eq!(b.inspect("app")["Digest"], a.inspect("app")["Digest"]);

    // The CA but no credentials.
    let Some((c, ctx_c)) = machine(&content) else {
        return;
    };
    let none = c.path("no-auth.json");
    let anon: [(&str, &Path); 2] = [("XDG_CONFIG_HOME", &cfg), ("REGISTRY_AUTH_FILE", &none)];
    let o = build_out_with(&c, &ctx_c, &["--cache-from", &from], &anon);
    assert!(o.status.success(), "{}", err_str(&o));
    let err = err_str(&o);
    assert!(
        err.contains(&format!("warning: not using cache {cache}")) && err.contains("kiln login"),
        "{err}"
    );
    assert!(!err.contains(PASSWORD));
    assert!(cached_from(&events(&err), &format!("from cache {cache}")).is_empty());
    let o = build_out_with(
        &c,
        &ctx_c,
        &["--cache-to", &format!("type=registry,ref={cache}")],
        &anon,
    );
    assert!(!o.status.success());
    assert!(err_str(&o).contains("kiln login"), "{}", err_str(&o));
}

/// Several layers exported at once (blobs go up in parallel): the manifest `skopeo
/// inspect --raw` reads is byte for byte the one the same build wrote to a local cache
/// directory and to a second tag (so parallel sending did not change its order); every
/// blob it names is served with its digest; per blob the registry saw a HEAD before the one
/// upload, and the manifest PUT came after every blob upload had finished.
#[test]
fn parallel_export_of_many_layers_is_complete_and_deterministic() {
    let Some(_) = registries() else { return };
    if !need("skopeo") {
        return;
    }
    let env = Env::new();
    import_reproducible_busybox(&env, EPOCH).unwrap();
    let n = nonce();
    let mut dockerfile = String::from("FROM busybox\n");
    for i in 0..8 {
        dockerfile.push_str(&format!(
            "RUN echo '{n} {i}' > /f{i} && head -c {} /dev/urandom >> /f{i}\n",
            50_000 * (i + 1)
        ));
    }
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile)]);
    let (repo, cache) = cache_ref();
    let second = cache.replace(":buildcache", ":second");
    let local = env.path("local-cache");
    let start = log_len();
    let (ev, _) = build(
        &env,
        &ctx,
        &[
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "--cache-to",
            &format!("type=local,dest={},mode=max", local.display()),
            "--cache-to",
            &format!("type=registry,ref={second},mode=max"),
        ],
    );
    let exports: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "cache_export").collect();
    assert_eq!(exports.len(), 3, "{exports:#?}");
    assert_eq!(exports[0]["blobs_sent"], 9, "8 layers and the config");
    assert_eq!(exports[2]["blobs_sent"], 0, "same repository: all present");
    let raw = sh_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{cache}"),
    ]));
    let manifest: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["artifactType"], "application/vnd.kiln.cache.v1");
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 8, "{manifest:#}");
    // Layers in step order, as the config's records list them.
    let (_, config) = registry_cache(&repo, "buildcache");
    let by_records: Vec<String> = config["records"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["layers"].as_array().unwrap().clone())
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, by_records);
    let second_raw = sh_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{second}"),
    ]));
    assert_eq!(raw, second_raw, "the same manifest under both tags");
    let index: Value =
        serde_json::from_slice(&std::fs::read(local.join("index.json")).unwrap()).unwrap();
    let local_manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let local_bytes = std::fs::read(
        local
            .join("blobs/sha256")
            .join(local_manifest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(local_bytes).unwrap(),
        raw,
        "local and registry exports write the same manifest"
    );

    let mut all = layers.clone();
    all.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    for d in &all {
        let f = env.path("fetched");
        std::fs::write(
            &f,
            curl(&["-L", &format!("http://{REGISTRY}/v2/{repo}/blobs/{d}")]),
        )
        .unwrap();
        assert_eq!(&sha256_file(&f), d, "the registry serves {d} intact");
        assert_eq!(&sha256_file(&local.join("blobs/sha256").join(&d[7..])), d);
    }

    let log = access_log(start, &repo);
    let manifest_put = log
        .iter()
        .position(|(m, p, _)| m == "PUT" && p.ends_with("/manifests/buildcache"))
        .unwrap_or_else(|| panic!("no manifest PUT: {log:?}"));
    for d in &all {
        let encoded = d.replace(':', "%3A");
        let head = log
            .iter()
            .position(|(m, p, _)| m == "HEAD" && p.ends_with(&format!("/blobs/{d}")))
            .unwrap_or_else(|| panic!("no HEAD of {d}: {log:?}"));
        let puts: Vec<usize> = log
            .iter()
            .enumerate()
            .filter(|(_, (m, p, s))| {
                m == "PUT" && p.contains("/blobs/uploads/") && p.contains(&encoded) && *s == 201
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(puts.len(), 1, "one upload of {d}: {log:?}");
        assert!(head < puts[0] && puts[0] < manifest_put, "{d}: {log:?}");
    }
}

/// The token-auth registry (:5102, bearer tokens from the harness's token server on
/// :5103): credentials from `kiln login`, an export with mode=max from A, an import on a
/// fresh store B hits every step and gives the same image; without credentials the
/// import is only a warning.
#[test]
fn cache_through_the_token_auth_registry() {
    let Some(dir) = registries() else { return };
    let Some(_tokens) = token_server(&dir) else {
        eprintln!("SKIPPED: 127.0.0.1:5103 (the test token server's port) is taken");
        return;
    };
    let content = format!("from a {}\n", nonce());
    let Some((a, ctx_a)) = machine(&content) else {
        return;
    };
    let auth = a.path("auth.json");
    let o = a
        .cmd(&["login", TOKEN_REGISTRY, "-u", USER, "--password-stdin"])
        .env("REGISTRY_AUTH_FILE", &auth)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(PASSWORD.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    let cache = format!("{TOKEN_REGISTRY}/{}:buildcache", repo("token-cache"));
    let vars: [(&str, &Path); 1] = [("REGISTRY_AUTH_FILE", &auth)];
    let o = build_out_with(
        &a,
        &ctx_a,
        &["--cache-to", &format!("type=registry,ref={cache},mode=max")],
        &vars,
    );
    assert!(o.status.success(), "{}", err_str(&o));
    let export = one(&events(&err_str(&o)), "cache_export").clone();
    assert_eq!(export["records"], 5, "{export:#}");
    assert!(export["blobs_sent"].as_u64().unwrap() >= 5, "{export:#}");
    assert!(!err_str(&o).contains(PASSWORD));

    let Some((b, ctx_b)) = machine(&content) else {
        return;
    };
    let from = format!("type=registry,ref={cache}");
    let o = build_out_with(&b, &ctx_b, &["--cache-from", &from], &vars);
    assert!(o.status.success(), "{}", err_str(&o));
    let ev = events(&err_str(&o));
    let all = steps_after_from(&ev);
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(
        cached_from(&ev, &format!("from cache {cache}")),
        all,
        "every step a hit from the token-auth registry"
    );
    assert_eq!(one(&ev, "cache_import")["blobs_fetched"], 2);
    assert_eq!(b.inspect("app")["Digest"], a.inspect("app")["Digest"]);
    b.assert_store_clean();

    // No credentials: the token server refuses, the import is a warning, every step runs.
    let Some((c, ctx_c)) = machine(&content) else {
        return;
    };
    let none = c.path("no-auth.json");
    let o = build_out_with(
        &c,
        &ctx_c,
        &["--cache-from", &from],
        &[("REGISTRY_AUTH_FILE", &none)],
    );
    assert!(o.status.success(), "{}", err_str(&o));
    let err = err_str(&o);
    assert!(
        err.contains(&format!("warning: not using cache {cache}")),
        "{err}"
    );
    assert!(cached_from(&events(&err), &format!("from cache {cache}")).is_empty());
}
