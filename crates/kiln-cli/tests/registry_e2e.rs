//! kiln pull / push / build against the real test registries (Debian's docker-registry
//! started by scripts/registry.sh), judged by skopeo.

mod common;
mod registry_common;

use common::*;
use registry_common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

/// An env with busybox imported; `None` (skip) when the tools are missing.
fn setup() -> Option<Env> {
    registries()?;
    if !need("skopeo") {
        return None;
    }
    let env = Env::new();
    busybox_image(&env)?;
    Some(env)
}

#[test]
fn push_then_pull_round_trip_and_rerun_sends_nothing() {
    let Some(env) = setup() else { return };
    let dest = format!("{PLAIN}/{}:1", repo("busybox"));
    let o = env.run(&["push", "busybox", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    assert_eq!(digest, stored_digest(&env, "busybox"));
    let err = err_str(&o);
    assert!(err.contains("uploading"), "{err}");
    // skopeo sees the same manifest digest and layers.
    let v = skopeo_inspect(&dest, &[]);
    assert_eq!(v["Digest"], digest.as_str());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let layers = env.layer_digests("busybox");
    assert_eq!(v["Layers"][0], layers[0].as_str());

    // A second push finds every blob present and uploads nothing.
    let o = env.run(&["push", "busybox", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    let err = err_str(&o);
    assert!(!err.contains("uploading"), "{err}");
    assert_eq!(err.matches("already in the registry").count(), 2, "{err}");

    // Pull into an empty store: same digest, same layers, fsck clean.
    let other = Env::new();
    other.ok(&["pull", &dest]);
    assert_eq!(stored_digest(&other, &dest), digest);
    assert_eq!(other.layer_digests(&dest), layers);
    other.assert_store_clean();
    // Pulling again downloads nothing.
    let o = other.run(&["pull", &dest]);
    assert!(o.status.success());
    assert!(!err_str(&o).contains("downloading"), "{}", err_str(&o));
}

#[test]
fn digest_pinned_pull_and_push() {
    let Some(env) = setup() else { return };
    let name = format!("{PLAIN}/{}", repo("pinned"));
    let digest = env
        .ok(&["push", "busybox", &format!("{name}:v1")])
        .trim()
        .to_string();
    let other = Env::new();
    let pinned = format!("{name}@{digest}");
    other.ok(&["pull", &pinned]);
    let ins = other.inspect(&pinned);
    assert_eq!(ins["Id"], env.inspect("busybox")["Id"]);
    other.assert_store_clean();
    // A digest the registry does not have: a not-found error naming the reference.
    let bogus = format!("{name}@sha256:{}", "0".repeat(64));
    let (_, err) = other.fail(&["pull", &bogus]);
    assert!(
        err.contains("not found") && err.contains(&"0".repeat(64)),
        "{err}"
    );
    // Push to a digest-pinned destination: accepted when it matches, refused otherwise.
    env.ok(&["push", "busybox", &format!("{name}@{digest}")]);
    let (_, err) = env.fail(&["push", "busybox", &bogus]);
    assert!(err.contains("not the"), "{err}");
}

#[test]
fn chunked_upload_and_cross_repository_mount() {
    let Some(env) = setup() else { return };
    let a = format!("{PLAIN}/{}:1", repo("chunked"));
    // 64 KiB chunks: the ~1 MiB busybox layer goes up in many PATCH requests.
    let o = env.run(&["push", "--chunk-size", "65536", "busybox", &a]);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    assert!(!err_str(&o).contains("mounted"), "{}", err_str(&o));
    assert_eq!(skopeo_inspect(&a, &[])["Digest"], digest.as_str());
    // Pulling it back proves the chunks were assembled in order.
    let other = Env::new();
    other.ok(&["pull", &a]);
    other.assert_store_clean();

    // The store now knows the blobs are in `a`'s repository: a push to another repository
    // of the same registry mounts them instead of uploading.
    let b = format!("{PLAIN}/{}:1", repo("mounted"));
    let o = env.run(&["push", "busybox", &b]);
    assert!(o.status.success(), "{}", err_str(&o));
    let err = err_str(&o);
    assert_eq!(err.matches("mounted from").count(), 2, "{err}");
    assert!(!err.contains("uploading"), "{err}");
    assert_eq!(skopeo_inspect(&b, &[])["Digest"], digest.as_str());
}

#[test]
fn skopeo_interop_both_ways() {
    let Some(env) = setup() else { return };
    // kiln push → skopeo copy to another repository → same digest.
    let src = format!("{PLAIN}/{}:1", repo("from-kiln"));
    let digest = env.ok(&["push", "busybox", &src]).trim().to_string();
    let copy = format!("{PLAIN}/{}:1", repo("skopeo-copy"));
    sh_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{src}"),
        &format!("docker://{copy}"),
    ]));
    assert_eq!(skopeo_inspect(&copy, &[])["Digest"], digest.as_str());

    // skopeo push (as Docker schema2, converted by skopeo) → kiln pull → kiln build FROM it.
    let archive = env.path("bb.tar");
    env.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let theirs = format!("{PLAIN}/{}:v2s2", repo("from-skopeo"));
    sh_ok(Command::new("skopeo").args([
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("docker-archive:{}", archive.display()),
        &format!("docker://{theirs}"),
    ]));
    let raw = sh_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{theirs}"),
    ]));
    assert!(
        raw.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{raw}"
    );
    let their_digest = skopeo_inspect(&theirs, &[])["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let other = Env::new();
    other.ok(&["pull", &theirs]);
    assert_eq!(stored_digest(&other, &theirs), their_digest);
    let ctx = context(
        &other,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {theirs}\nRUN echo built-on-skopeo > /marker\n"),
        )],
    );
    build_tag(&other, &ctx, "on-skopeo", &["--pull", "never"]);
    let out = other.ok(&["run", "--rm", "on-skopeo", "cat", "/marker"]);
    assert_eq!(out.trim(), "built-on-skopeo");
    other.assert_store_clean();
}

#[test]
fn build_pulls_base_on_demand_and_pushes() {
    let Some(env) = setup() else { return };
    let base = format!("{PLAIN}/{}:base", repo("base"));
    env.ok(&["push", "busybox", &base]);

    let builder = Env::new();
    let ctx = context(
        &builder,
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM {base}\nCOPY --from={base} /bin/busybox /copied-busybox\nRUN echo hi > /hi\n"
            ),
        )],
    );
    // --pull never: the base is not in the empty store, and nothing may be fetched.
    let (_, err) = builder.fail(&["build", "--pull", "never", "-t", "x", ctx.to_str().unwrap()]);
    assert!(err.contains("not in the local store"), "{err}");
    assert!(builder.references().is_empty() || !builder.references().contains(&base));

    // Default (--pull missing): FROM and COPY --from pull the base, then --push sends the
    // result to the -t name, and --output type=registry to a second name.
    let out = format!("{PLAIN}/{}:built", repo("built"));
    let out2 = format!("{PLAIN}/{}:also", repo("built2"));
    let spec = format!("type=registry,name={out2}");
    let o = builder.run(&[
        "build",
        "--progress",
        "plain",
        "-t",
        &out,
        "--push",
        "-o",
        &spec,
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(builder.references().contains(&base), "base pulled");
    let digest = stored_digest(&builder, &out);
    assert_eq!(skopeo_inspect(&out, &[])["Digest"], digest.as_str());
    assert_eq!(skopeo_inspect(&out2, &[])["Digest"], digest.as_str());
    // The pushed image has the base's layer below the build's own.
    let layers = skopeo_inspect(&out, &[])["Layers"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(layers[0], env.layer_digests("busybox")[0].as_str());
    assert_eq!(layers.len(), 3);

    // --pull always fetches again (the manifest is resolved anew) and the build still works.
    let o = builder.run(&[
        "build",
        "--pull",
        "always",
        "-t",
        "y",
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(
        err_str(&o).contains("already in the store"),
        "{}",
        err_str(&o)
    );
    builder.assert_store_clean();
}

#[test]
fn tls_registry_with_basic_auth_login_logout() {
    let Some(dir) = registries() else { return };
    let Some(env) = setup() else { return };
    let cfg = env.path("config");
    let auth = env.path("auth.json");
    let with = |c: &mut Command| {
        c.env("XDG_CONFIG_HOME", &cfg)
            .env("REGISTRY_AUTH_FILE", &auth);
    };
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = env.cmd(args);
        with(&mut c);
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut sin = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                sin.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    };
    let dest = format!("{TLS}/{}:1", repo("secure"));

    // No CA yet: a TLS error that says where the CA goes.
    let o = run(&["push", "busybox", &dest], None);
    assert!(!o.status.success());
    let err = err_str(&o);
    assert!(err.contains("certs.d") && err.contains(TLS), "{err}");

    // CA in kiln's certs.d: TLS works, but the registry wants credentials.
    let certs = cfg.join("kiln/certs.d").join(TLS);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let o = run(&["push", "busybox", &dest], None);
    assert!(!o.status.success());
    let err = err_str(&o);
    assert!(err.contains("kiln login"), "{err}");

    // A wrong password is refused and nothing is stored.
    let o = run(
        &["login", TLS, "-u", USER, "--password-stdin"],
        Some("wrong\n"),
    );
    assert!(!o.status.success());
    assert!(
        !err_str(&o).contains("wrong"),
        "password echoed: {}",
        err_str(&o)
    );
    assert!(!auth.exists());

    let o = run(
        &["login", TLS, "-u", USER, "--password-stdin"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(o.status.success(), "{}", err_str(&o));
    let meta = std::fs::metadata(&auth).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&auth).unwrap();
    assert!(text.contains(TLS) && !text.contains(PASSWORD), "{text}");

    let o = run(&["push", "busybox", &dest], None);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    let v = skopeo_inspect(
        &dest,
        &[
            "--cert-dir",
            certs.to_str().unwrap(),
            "--authfile",
            auth.to_str().unwrap(),
        ],
    );
    assert_eq!(v["Digest"], digest.as_str());
    assert!(!err_str(&o).contains(PASSWORD));

    let puller = Env::new();
    let mut c = puller.cmd(&["pull", &dest]);
    with(&mut c);
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    puller.assert_store_clean();

    let o = run(&["logout", TLS], None);
    assert!(o.status.success());
    assert!(!std::fs::read_to_string(&auth).unwrap().contains(TLS));
    let stranger = Env::new();
    let mut c = stranger.cmd(&["pull", &dest]);
    with(&mut c);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(err_str(&o).contains("kiln login"), "{}", err_str(&o));
}

#[test]
fn credential_helper_from_cred_helpers_is_used() {
    let Some(dir) = registries() else { return };
    let Some(env) = setup() else { return };
    let cfg = env.path("config");
    let certs = cfg.join("kiln/certs.d").join(TLS);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    // A docker credential helper that knows only the TLS test registry.
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\nif [ \"$1\" = get ] && [ \"$host\" = {TLS} ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$host\"\n  exit 0\nfi\necho 'credentials not found in native keychain'\nexit 1\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let auth = env.path("helper-auth.json");
    std::fs::write(
        &auth,
        format!(r#"{{"credHelpers":{{"{TLS}":"kilntest"}}}}"#),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dest = format!("{TLS}/{}:1", repo("helper"));
    let o = env
        .cmd(&["push", "busybox", &dest])
        .env("XDG_CONFIG_HOME", &cfg)
        .env("REGISTRY_AUTH_FILE", &auth)
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    // Without the helper on PATH the same auth file gives a clear error naming it.
    let o = env
        .cmd(&["push", "busybox", &dest])
        .env("XDG_CONFIG_HOME", &cfg)
        .env("REGISTRY_AUTH_FILE", &auth)
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        err_str(&o).contains("docker-credential-kilntest"),
        "{}",
        err_str(&o)
    );
}

#[test]
fn index_digest_pin_selects_host_platform_and_resolves_in_build() {
    let Some(env) = setup() else { return };
    let m = stored_digest(&env, "busybox");
    let m_size = std::fs::metadata(env.blob_path(&m)).unwrap().len();
    let host_arch = env.inspect("busybox")["Config"]["architecture"]
        .as_str()
        .unwrap()
        .to_string();
    let other_arch = if host_arch == "s390x" {
        "ppc64le"
    } else {
        "s390x"
    };
    // An OCI layout with a two-platform index over busybox's manifest, pushed by skopeo.
    let layout = env.path("layout");
    std::fs::create_dir_all(&layout).unwrap();
    sh_ok(
        Command::new("cp")
            .arg("-r")
            .arg(env.root.join("blobs"))
            .arg(layout.join("blobs")),
    );
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{m_size},"platform":{{"os":"linux","architecture":"{other_arch}"}}}},{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{m}","size":{m_size},"platform":{{"os":"linux","architecture":"{host_arch}"}}}}]}}"#
    );
    let idx = kiln_oci::Digest::of_bytes(index.as_bytes());
    std::fs::write(layout.join("blobs/sha256").join(idx.hex()), &index).unwrap();
    std::fs::write(
        layout.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{idx}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"multi"}}}}]}}"#,
            index.len()
        ),
    )
    .unwrap();
    let name = format!("{PLAIN}/{}", repo("multi"));
    sh_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &format!("oci:{}:multi", layout.display()),
        &format!("docker://{name}:multi"),
    ]));
    let raw = sh_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{name}:multi"),
    ]));
    assert_eq!(kiln_oci::Digest::of_bytes(raw.as_bytes()), idx, "{raw}");

    // FROM pinned to the index digest: pulled on demand (host platform picked), then found
    // by that digest although only the platform manifest is stored.
    let builder = Env::new();
    let ctx = context(
        &builder,
        "ctx",
        &[(
            "Dockerfile",
            &format!("FROM {name}@{idx}\nRUN echo ok > /ok\n"),
        )],
    );
    build_tag(&builder, &ctx, "pinned-build", &[]);
    let ins = builder.inspect(&format!("{name}@{idx}"));
    assert_eq!(ins["Id"], env.inspect("busybox")["Id"]);
    // A second build does not pull again.
    let o = builder.run(&[
        "build",
        "--pull",
        "never",
        "-t",
        "again",
        ctx.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", err_str(&o));
    // Asking for a platform the index lacks names what it has.
    let (_, err) = builder.fail(&[
        "pull",
        "--platform",
        "linux/riscv64",
        &format!("{name}@{idx}"),
    ]);
    assert!(
        err.contains("linux/riscv64") && err.contains(other_arch),
        "{err}"
    );
    builder.assert_store_clean();
}

#[test]
fn token_auth_registry_push_and_pull() {
    let Some(dir) = registries() else { return };
    let Some(env) = setup() else { return };
    let Some(_tokens) = token_server(&dir) else {
        eprintln!("SKIPPED: 127.0.0.1:5103 (the test token server's port) is taken");
        return;
    };
    let dest = format!("{TOKEN_REGISTRY}/{}:1", repo("token"));
    // Without credentials the token server refuses: a clear authentication error.
    let (_, err) = env.fail(&["push", "busybox", &dest]);
    assert!(
        err.contains(TOKEN_REGISTRY) && err.contains("refused"),
        "{err}"
    );
    let auth = env.path("auth.json");
    let o = env
        .cmd(&["login", TOKEN_REGISTRY, "-u", USER, "--password-stdin"])
        .env("REGISTRY_AUTH_FILE", &auth)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(PASSWORD.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    let o = env
        .cmd(&["push", "busybox", &dest])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    let puller = Env::new();
    let o = puller
        .cmd(&["pull", &dest])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    assert_eq!(stored_digest(&puller, &dest), digest);
    puller.assert_store_clean();
    // A cross-repository mount needs pull on the source repository too: the registry's
    // challenge names both scopes and the token asked for must cover them.
    let second = format!("{TOKEN_REGISTRY}/{}:1", repo("token-mount"));
    let o = env
        .cmd(&["push", "busybox", &second])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    assert_eq!(
        err_str(&o).matches("mounted from").count(),
        2,
        "{}",
        err_str(&o)
    );
}

#[test]
fn missing_default_creds_store_falls_back_to_auths() {
    let Some(dir) = registries() else { return };
    let Some(env) = setup() else { return };
    let cfg = env.path("config");
    let certs = cfg.join("kiln/certs.d").join(TLS);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    // docker sets credsStore for every host; when its helper is not installed the
    // credentials in `auths` still work.
    let auth = env.path("store-auth.json");
    let basic =
        sh_ok(Command::new("sh").args(["-c", &format!("printf %s '{USER}:{PASSWORD}' | base64")]));
    std::fs::write(
        &auth,
        format!(
            r#"{{"credsStore":"kiln-test-not-installed","auths":{{"{TLS}":{{"auth":"{}"}}}}}}"#,
            basic.trim()
        ),
    )
    .unwrap();
    let dest = format!("{TLS}/{}:1", repo("nostore"));
    let o = env
        .cmd(&["push", "busybox", &dest])
        .env("XDG_CONFIG_HOME", &cfg)
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
}

/// A docker credential helper for tests: keeps `{ServerURL: {Username, Secret}}` in
/// `file`, answers `get`/`erase` of an unknown server as the real helpers do.
fn file_credential_helper(bin: &std::path::Path, name: &str, file: &std::path::Path) {
    std::fs::create_dir_all(bin).unwrap();
    let helper = bin.join(format!("docker-credential-{name}"));
    std::fs::write(
        &helper,
        format!(
            r#"#!/usr/bin/env python3
import json, os, sys
path = {file:?}
db = json.load(open(path)) if os.path.exists(path) else {{}}
action, data = sys.argv[1], sys.stdin.read()
def save():
    with open(path + ".tmp", "w") as f:
        json.dump(db, f)
    os.rename(path + ".tmp", path)
if action == "store":
    c = json.loads(data)
    db[c["ServerURL"]] = {{"Username": c["Username"], "Secret": c["Secret"]}}
    save()
elif action in ("get", "erase"):
    url = data.strip()
    if url not in db:
        print("credentials not found in native keychain")
        sys.exit(1)
    if action == "get":
        print(json.dumps(dict(ServerURL=url, **db[url])))
    else:
        del db[url]
        save()
else:
    sys.exit(2)
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `kiln login`/`kiln logout` write where docker would when the auth file names a
/// credential helper: `credsStore` takes the login (the secret reaches the helper, never
/// config.json, and a plaintext entry left by an earlier login is dropped), pushes and
/// pulls authenticate through it, logout erases it there. `credHelpers[host]` wins over
/// `credsStore`, and a failing helper's error names it and the registry but never the
/// secret, even when the helper echoes what it was given.
#[test]
fn login_and_logout_write_through_the_configured_credential_helper() {
    use base64::Engine as _;
    let Some(dir) = registries() else { return };
    let Some(env) = setup() else { return };
    if !need("python3") {
        return;
    }
    let cfg = env.path("config");
    let certs = cfg.join("kiln/certs.d").join(TLS);
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("ca.crt"), certs.join("ca.crt")).unwrap();
    let bin = env.path("bin");
    let db = env.path("helper-db.json");
    file_credential_helper(&bin, "kilnfile", &db);
    let broken = bin.join("docker-credential-kilnbroken");
    std::fs::write(&broken, "#!/bin/sh\ncat >&2\ncat\nexit 1\n").unwrap();
    std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let auth = env.path("auth.json");
    let stale = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        &auth,
        format!(r#"{{"credsStore":"kilnfile","auths":{{"{TLS}":{{"auth":"{stale}"}}}}}}"#),
    )
    .unwrap();
    let run_in = |env: &Env, args: &[&str], stdin: Option<&str>| {
        let mut c = env.cmd(args);
        c.env("XDG_CONFIG_HOME", &cfg)
            .env("REGISTRY_AUTH_FILE", &auth)
            .env("PATH", &path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        {
            use std::io::Write;
            let mut sin = child.stdin.take().unwrap();
            if let Some(s) = stdin {
                sin.write_all(s.as_bytes()).unwrap();
            }
        }
        child.wait_with_output().unwrap()
    };
    let run = |args: &[&str], stdin: Option<&str>| run_in(&env, args, stdin);
    let login = &["login", TLS, "-u", USER, "--password-stdin"];

    let o = run(login, Some(&format!("{PASSWORD}\n")));
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(
        err_str(&o).contains("docker-credential-kilnfile"),
        "{}",
        err_str(&o)
    );
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&db).unwrap()).unwrap();
    assert_eq!(stored[TLS]["Username"], USER, "{stored:#}");
    assert_eq!(stored[TLS]["Secret"], PASSWORD, "{stored:#}");
    let text = std::fs::read_to_string(&auth).unwrap();
    assert!(
        !text.contains(PASSWORD) && !text.contains(&stale),
        "no secret in the auth file: {text}"
    );
    let file: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["auths"][TLS], serde_json::json!({}), "{file:#}");
    assert_eq!(file["credsStore"], "kilnfile");

    // Credentials now exist only in the helper: push, then pull into a fresh store.
    let dest = format!("{TLS}/{}:1", repo("helper-login"));
    let o = run(&["push", "busybox", &dest], None);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    let puller = Env::new();
    let o = run_in(&puller, &["pull", &dest], None);
    assert!(o.status.success(), "{}", err_str(&o));
    assert_eq!(stored_digest(&puller, &dest), digest);
    puller.assert_store_clean();

    let o = run(&["logout", TLS], None);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(out_str(&o).contains("Removing login credentials"));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&db).unwrap()).unwrap();
    assert!(
        stored.get(TLS).is_none(),
        "erased from the helper: {stored:#}"
    );
    assert!(!std::fs::read_to_string(&auth).unwrap().contains(TLS));
    let stranger = Env::new();
    let o = run_in(&stranger, &["pull", &dest], None);
    assert!(!o.status.success());
    assert!(err_str(&o).contains("kiln login"), "{}", err_str(&o));
    let o = run(&["logout", TLS], None);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(err_str(&o).contains("Not logged in"), "{}", err_str(&o));

    // credHelpers[host] beats credsStore; its failure is reported without the secret.
    std::fs::write(
        &auth,
        format!(r#"{{"credsStore":"kilnfile","credHelpers":{{"{TLS}":"kilnbroken"}}}}"#),
    )
    .unwrap();
    let o = run(login, Some(&format!("{PASSWORD}\n")));
    assert!(!o.status.success());
    let err = err_str(&o);
    assert!(
        err.contains("docker-credential-kilnbroken") && err.contains(TLS),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "secret in the error: {err}");
    assert!(!out_str(&o).contains(PASSWORD));
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&db).unwrap()).unwrap();
    assert!(stored.get(TLS).is_none(), "{stored:#}");
    assert!(!std::fs::read_to_string(&auth).unwrap().contains(PASSWORD));
}

/// The snapshot directories of a store (named by chain id hex).
fn snapshot_ids(env: &Env) -> std::collections::BTreeSet<String> {
    let dir = env.root.join("kiln/snapshots");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Default::default();
    };
    rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

/// The chain ids of `r`'s layers, computed here from the config's diff_ids (image-spec:
/// chainid(Ln) = sha256(chainid(Ln-1) + " " + diffid(Ln))).
fn chain_id_hexes(env: &Env, r: &str) -> Vec<String> {
    let config = env.inspect(r)["Config"].clone();
    let mut out: Vec<String> = Vec::new();
    let mut prev: Option<String> = None;
    for d in config["rootfs"]["diff_ids"].as_array().unwrap() {
        let d = d.as_str().unwrap().to_string();
        let id = match &prev {
            None => d,
            Some(p) => kiln_oci::Digest::of_bytes(format!("{p} {d}").as_bytes()).to_string(),
        };
        out.push(id.strip_prefix("sha256:").unwrap().to_string());
        prev = Some(id);
    }
    out
}

fn unpack_statuses(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["kind"] == "status")
        .filter_map(|e| e["text"].as_str())
        .filter(|t| t.contains("unpacking"))
        .map(str::to_string)
        .collect()
}

#[test]
fn pull_unpacks_layers_while_downloading_so_the_next_build_unpacks_nothing() {
    let Some(env) = setup() else { return };
    // A three-layer image: busybox, a RUN, a COPY of a file big enough to take a moment.
    let big: String = (0..200_000).map(|i| format!("{i}\n")).collect();
    let ctx = context(
        &env,
        "multi",
        &[
            (
                "Dockerfile",
                "FROM busybox\nRUN echo one > /one\nCOPY big.txt /big.txt\n",
            ),
            ("big.txt", &big),
        ],
    );
    env.ok(&["build", "-t", "multi", ctx.to_str().unwrap()]);
    let dest = format!("{PLAIN}/{}:3", repo("multi"));
    env.ok(&["push", "multi", &dest]);

    // kiln pull into an empty store: every layer's snapshot exists when it returns.
    let puller = Env::new();
    let o = puller.run(&["pull", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert_eq!(
        err_str(&o).matches(": unpacked").count(),
        3,
        "{}",
        err_str(&o)
    );
    let chain = chain_id_hexes(&puller, &dest);
    assert_eq!(chain.len(), 3);
    let snaps = snapshot_ids(&puller);
    for c in &chain {
        assert!(snaps.contains(c), "no snapshot for chain id {c}: {snaps:?}");
        let meta = puller
            .root
            .join(format!("kiln/snapshots/{c}/snapshot.json"));
        assert!(meta.is_file(), "{}", meta.display());
    }
    puller.assert_store_clean();

    // The build on it reports no unpack work and adds no snapshot.
    let from = context(
        &puller,
        "from",
        &[("Dockerfile", &format!("FROM {dest}\n"))],
    );
    let events = build_json(&puller, &from, &["-t", "on-top"]);
    assert!(unpack_statuses(&events).is_empty(), "{events:#?}");
    assert!(
        steps_with(&events, "cached")
            .iter()
            .any(|s| s.contains("FROM")),
        "FROM not reported as having nothing to do: {events:#?}"
    );
    assert_eq!(snapshot_ids(&puller), snaps);

    // A second pull does nothing, not even an unpack.
    let o = puller.run(&["pull", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(!err_str(&o).contains("unpacked"), "{}", err_str(&o));

    // A build that pulls its missing base unpacks it during that pull, not as a step.
    let builder = Env::new();
    let from = context(
        &builder,
        "from",
        &[("Dockerfile", &format!("FROM {dest}\n"))],
    );
    let events = build_json(&builder, &from, &["-t", "on-top"]);
    assert!(unpack_statuses(&events).is_empty(), "{events:#?}");
    let snaps = snapshot_ids(&builder);
    assert!(chain.iter().all(|c| snaps.contains(c)), "{snaps:?}");

    // The control: --no-unpack leaves the unpacking to the build (which reports it).
    let lazy = Env::new();
    let o = lazy.run(&["pull", "--no-unpack", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(!err_str(&o).contains("unpacked"), "{}", err_str(&o));
    assert!(snapshot_ids(&lazy).is_empty());
    let from = context(&lazy, "from", &[("Dockerfile", &format!("FROM {dest}\n"))]);
    let events = build_json(&lazy, &from, &["-t", "on-top"]);
    assert_eq!(unpack_statuses(&events).len(), 3, "{events:#?}");
}
