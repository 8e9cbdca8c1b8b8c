//! Hostile registry answers from a scripted HTTP server: each must end in a clear error (or,
//! for a redirect, a pull that leaks no credentials) with nothing unverified committed to
//! the store.

mod common;
mod registry_common;

use base64::Engine as _;
use common::*;
use kiln_oci::Digest;
use registry_common::*;
use std::sync::Arc;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A small valid image: (config, layer, manifest) bytes.
struct Fake {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
}

impl Fake {
    fn new() -> Fake {
        Fake::with_layer((0..100_000u32).map(|i| (i * 7 % 251) as u8).collect())
    }
    /// `layer` as an uncompressed tar layer (its diff_id is its digest).
    fn with_layer(layer: Vec<u8>) -> Fake {
        let diff = Digest::of_bytes(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#
        )
        .into_bytes();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            Digest::of_bytes(&config),
            config.len(),
            diff,
            layer.len()
        )
        .into_bytes();
        Fake {
            config,
            layer,
            manifest,
        }
    }
    fn layer_digest(&self) -> String {
        Digest::of_bytes(&self.layer).to_string()
    }
    fn config_digest(&self) -> String {
        Digest::of_bytes(&self.config).to_string()
    }
}

/// Serves `fake` as `evil/img:1`, with `tweak` deciding special answers first.
fn serve(
    fake: Fake,
    tweak: impl Fn(&Seen, &Fake) -> Option<Reply> + Send + Sync + 'static,
) -> Scripted {
    let fake = Arc::new(fake);
    Scripted::start(move |req| {
        if let Some(r) = tweak(req, &fake) {
            return r;
        }
        let path = req.path.as_str();
        if path == "/v2/" {
            return Reply::new(200);
        }
        if path == "/v2/evil/img/manifests/1" {
            return Reply::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(fake.manifest.clone());
        }
        if path == format!("/v2/evil/img/blobs/{}", fake.config_digest()) {
            return Reply::new(200).body(fake.config.clone());
        }
        if path == format!("/v2/evil/img/blobs/{}", fake.layer_digest()) {
            return Reply::new(200).body(fake.layer.clone());
        }
        Reply::new(404)
    })
}

/// Nothing named, nothing unverified: no image, the layer blob absent, store clean.
fn assert_nothing_committed(env: &Env, fake_layer: &str) {
    assert!(env.references().is_empty(), "{:?}", env.references());
    assert!(
        !env.blob_path(fake_layer).exists(),
        "the rejected layer reached blobs/"
    );
    env.assert_store_clean();
}

#[test]
fn blob_whose_bytes_do_not_match_its_digest_is_refused() {
    let fake = Fake::new();
    let layer_digest = fake.layer_digest();
    let ld = layer_digest.clone();
    let server = serve(fake, move |req, f| {
        (req.path.ends_with(&ld)).then(|| {
            let mut bad = f.layer.clone();
            bad[5000] ^= 0xff; // same size, different content
            Reply::new(200).body(bad)
        })
    });
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(
        err.contains(&layer_digest) && err.contains("digest"),
        "{err}"
    );
    assert!(err.contains(&server.host()), "{err}");
    assert_nothing_committed(&env, &layer_digest);
}

#[test]
fn oversized_manifest_is_refused_with_the_limit_named() {
    let fake = Fake::new();
    let layer_digest = fake.layer_digest();
    let server = serve(fake, |req, _| {
        (req.path == "/v2/evil/img/manifests/1").then(|| {
            let pad = "a".repeat(5 << 20);
            Reply::new(200).header("Content-Type", OCI_MANIFEST).body(format!(
                r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","annotations":{{"pad":"{pad}"}},"config":{{}},"layers":[]}}"#
            ))
        })
    });
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(err.contains("4194304"), "{err}");
    assert!(err.contains("--max-manifest-size"), "{err}");
    assert_nothing_committed(&env, &layer_digest);
}

#[test]
fn media_type_contradicting_content_type_is_refused() {
    let fake = Fake::new();
    let layer_digest = fake.layer_digest();
    let server = serve(fake, |req, f| {
        (req.path == "/v2/evil/img/manifests/1").then(|| {
            Reply::new(200)
                .header(
                    "Content-Type",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                )
                .body(f.manifest.clone())
        })
    });
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(err.contains("contradicts"), "{err}");
    assert_nothing_committed(&env, &layer_digest);
}

#[test]
fn manifest_not_matching_the_pinned_digest_is_refused() {
    let fake = Fake::new();
    let layer_digest = fake.layer_digest();
    let pinned = Digest::of_bytes(b"something else");
    let p = pinned.to_string();
    let server = serve(fake, move |req, f| {
        req.path.ends_with(&format!("/manifests/{p}")).then(|| {
            Reply::new(200)
                .header("Content-Type", OCI_MANIFEST)
                .body(f.manifest.clone())
        })
    });
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img@{pinned}", server.host())]);
    assert!(err.contains(&pinned.to_string()), "{err}");
    assert_nothing_committed(&env, &layer_digest);
}

fn auth_file(env: &Env, host: &str) -> std::path::PathBuf {
    let p = env.path("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode("user:s3cret-password");
    std::fs::write(
        &p,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    p
}

#[test]
fn blob_redirect_to_another_host_carries_no_credentials() {
    let fake = Fake::new();
    let layer = fake.layer.clone();
    let layer_digest = fake.layer_digest();
    // The "CDN": another host (localhost vs 127.0.0.1) serving the blob.
    let cdn = Scripted::start(move |_| Reply::new(200).body(layer.clone()));
    let cdn_port = cdn.port;
    let ld = layer_digest.clone();
    let server = serve(fake, move |req, _| {
        if req.header("authorization").is_none() {
            return Some(Reply::new(401).header("WWW-Authenticate", r#"Basic realm="evil""#));
        }
        req.path.ends_with(&ld).then(|| {
            Reply::new(307).header(
                "Location",
                &format!("http://localhost:{cdn_port}/blobs/layer?sig=1"),
            )
        })
    });
    let env = Env::new();
    let auth = auth_file(&env, &server.host());
    let o = env
        .cmd(&["pull", &format!("{}/evil/img:1", server.host())])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(!err_str(&o).contains("s3cret"), "{}", err_str(&o));
    let at_cdn = cdn.requests();
    assert!(!at_cdn.is_empty(), "the redirect was not followed");
    for r in &at_cdn {
        assert!(
            r.header("authorization").is_none(),
            "credentials reached the other host: {r:?}"
        );
    }
    // The registry itself did get them (the flow worked).
    assert!(server.requests().iter().any(|r| r
        .header("authorization")
        .is_some_and(|a| a.starts_with("Basic "))));
    assert!(env.blob_path(&layer_digest).exists());
    env.assert_store_clean();
}

#[test]
fn token_realm_on_another_host_is_refused() {
    let fake = Fake::new();
    let layer_digest = fake.layer_digest();
    let thief = Scripted::start(|_| Reply::new(200).body(r#"{"token":"stolen"}"#));
    let thief_port = thief.port;
    let server = serve(fake, move |req, _| {
        (req.header("authorization").is_none() && req.path != "/v2/").then(|| {
            Reply::new(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://localhost:{thief_port}/token",service="evil",scope="repository:evil/img:pull""#
                ),
            )
        })
    });
    let env = Env::new();
    let auth = auth_file(&env, &server.host());
    let o = env
        .cmd(&["pull", &format!("{}/evil/img:1", server.host())])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = err_str(&o);
    assert!(
        err.contains("realm") && err.contains(&format!("localhost:{thief_port}")),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(
        thief.requests().is_empty(),
        "the foreign realm was contacted"
    );
    assert_nothing_committed(&env, &layer_digest);
}

#[test]
fn bearer_token_flow_on_the_registry_host() {
    // The token server is on the registry's host (another port): allowed; the token it
    // gives is what the registry then sees.
    let fake = Fake::new();
    let tokens = Scripted::start(|req| {
        let ok = req
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "));
        let scoped = req.path.contains("scope=repository%3Aevil%2Fimg%3Apull");
        if ok && scoped {
            Reply::new(200).body(r#"{"token":"good-token"}"#)
        } else {
            Reply::new(401)
        }
    });
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let server = serve(fake, move |req, _| {
        (req.header("authorization") != Some("Bearer good-token") && req.path != "/v2/").then(
            || {
                Reply::new(401).header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="{realm}",service="evil",scope="repository:evil/img:pull""#
                    ),
                )
            },
        )
    });
    let env = Env::new();
    let auth = auth_file(&env, &server.host());
    let o = env
        .cmd(&["pull", &format!("{}/evil/img:1", server.host())])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    // One token for the one scope: cached, not fetched per blob.
    assert_eq!(tokens.requests().len(), 1, "{:?}", tokens.requests());
    env.assert_store_clean();
}

/// The first non-loopback IPv4 address of this machine, if any.
fn outside_ip() -> Option<String> {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|a| a.contains('.') && !a.starts_with("127."))
        .map(str::to_string)
}

#[test]
fn plain_http_only_with_insecure_registry_for_other_hosts() {
    let Some(ip) = outside_ip() else {
        eprintln!("SKIPPED: no non-loopback address");
        return;
    };
    let server = Scripted::start_on("0.0.0.0:0", |_| Reply::new(404));
    let host = format!("{ip}:{}", server.port);
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{host}/x/y:1")]);
    assert!(
        server.requests().is_empty(),
        "plain HTTP was sent to {host} without --insecure-registry: {:?}",
        server.requests()
    );
    assert!(err.contains(&host), "{err}");
    let (_, err) = env.fail(&[
        "--insecure-registry",
        &host,
        "pull",
        &format!("{host}/x/y:1"),
    ]);
    assert!(err.contains("not found"), "{err}");
    assert!(!server.requests().is_empty());
}

#[test]
fn identity_token_is_exchanged_at_the_realm_by_post() {
    let fake = Fake::new();
    let tokens = Scripted::start(|req| {
        let body = String::from_utf8_lossy(&req.body).to_string();
        let ok = req.method == "POST"
            && body.contains("grant_type=refresh_token")
            && body.contains("refresh_token=refresh-xyz")
            && body.contains("scope=repository%3Aevil%2Fimg%3Apull");
        if ok {
            Reply::new(200).body(r#"{"access_token":"from-refresh"}"#)
        } else {
            Reply::new(401)
        }
    });
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let server = serve(fake, move |req, _| {
        (req.header("authorization") != Some("Bearer from-refresh") && req.path != "/v2/").then(
            || {
                Reply::new(401).header(
                    "WWW-Authenticate",
                    &format!(
                        r#"Bearer realm="{realm}",service="evil",scope="repository:evil/img:pull""#
                    ),
                )
            },
        )
    });
    let env = Env::new();
    let auth = env.path("auth.json");
    std::fs::write(
        &auth,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"","identitytoken":"refresh-xyz"}}}}}}"#,
            server.host()
        ),
    )
    .unwrap();
    let o = env
        .cmd(&["pull", &format!("{}/evil/img:1", server.host())])
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(!err_str(&o).contains("refresh-xyz"));
    assert_eq!(tokens.requests().len(), 1);
}

#[test]
fn blob_cut_mid_stream_is_resumed_with_a_range_request() {
    let fake = Fake::new();
    let ld = fake.layer_digest();
    let layer_digest = ld.clone();
    let server = serve(fake, move |req, f| {
        if !req.path.ends_with(&ld) {
            return None;
        }
        Some(match req.header("range") {
            // First try: the connection dies after 30000 of 100000 bytes.
            None => Reply::new(200).body(f.layer.clone()).cut_after(30_000),
            Some(r) => {
                let from: usize = r
                    .strip_prefix("bytes=")
                    .and_then(|x| x.strip_suffix('-'))
                    .and_then(|x| x.parse().ok())
                    .expect("Range: bytes=N-");
                Reply::new(206)
                    .header(
                        "Content-Range",
                        &format!("bytes {from}-{}/{}", f.layer.len() - 1, f.layer.len()),
                    )
                    .body(f.layer[from..].to_vec())
            }
        })
    });
    let env = Env::new();
    let o = env.run(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(o.status.success(), "{}", err_str(&o));
    let ranges: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.header("range").map(str::to_string))
        .collect();
    assert_eq!(ranges, vec!["bytes=30000-".to_string()], "{}", err_str(&o));
    assert!(env.blob_path(&layer_digest).exists());
    env.assert_store_clean();
}

#[test]
fn resumed_blob_with_wrong_tail_is_still_refused() {
    let fake = Fake::new();
    let ld = fake.layer_digest();
    let layer_digest = ld.clone();
    let server = serve(fake, move |req, f| {
        if !req.path.ends_with(&ld) {
            return None;
        }
        Some(match req.header("range") {
            None => Reply::new(200).body(f.layer.clone()).cut_after(30_000),
            // The "rest" it sends is from the wrong offset: the digest check must catch it.
            Some(_) => Reply::new(206).body(f.layer[..70_000].to_vec()),
        })
    });
    let env = Env::new();
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(
        err.contains(&layer_digest) && err.contains("digest"),
        "{err}"
    );
    assert_nothing_committed(&env, &layer_digest);
}

/// The snapshot directories (chain id hex) and unpacks in progress of a store.
fn snapshot_entries(env: &Env) -> (Vec<String>, Vec<String>) {
    let list = |rel: &str, only_hex: bool| -> Vec<String> {
        std::fs::read_dir(env.root.join(rel))
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                    .filter(|n| !only_hex || n.len() == 64)
                    .collect()
            })
            .unwrap_or_default()
    };
    (
        list("kiln/snapshots", true),
        list("kiln/snapshots/tmp", false),
    )
}

#[test]
fn tampered_layer_leaves_no_snapshot() {
    let env = Env::new();
    let marker = "kiln-tamper-target";
    let tar = std::fs::read(tiny_tar(&env, "layer.tar", marker)).unwrap();
    let at = tar
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .expect("file content in the tar");

    // Control: served intact, the layer is unpacked by the pull itself.
    let intact = serve(Fake::with_layer(tar.clone()), |_, _| None);
    let ok = Env::new();
    ok.ok(&["pull", &format!("{}/evil/img:1", intact.host())]);
    assert_eq!(
        snapshot_entries(&ok).0.len(),
        1,
        "control pull did not unpack"
    );

    // One byte of file content changed: still a well-formed tar (tar does not checksum
    // content), so only the digest check stands between it and a snapshot.
    let fake = Fake::with_layer(tar);
    let layer_digest = fake.layer_digest();
    let ld = layer_digest.clone();
    let server = serve(fake, move |req, f| {
        req.path.ends_with(&ld).then(|| {
            let mut bad = f.layer.clone();
            bad[at] = b'K';
            Reply::new(200).body(bad)
        })
    });
    let (_, err) = env.fail(&["pull", &format!("{}/evil/img:1", server.host())]);
    assert!(
        err.contains(&layer_digest) && err.contains("digest"),
        "{err}"
    );
    assert!(!err.contains("unpacked"), "{err}");
    let (snapshots, in_progress) = snapshot_entries(&env);
    assert!(snapshots.is_empty(), "snapshot left behind: {snapshots:?}");
    assert!(
        in_progress.is_empty(),
        "unpack temp left behind: {in_progress:?}"
    );
    assert_nothing_committed(&env, &layer_digest);
}
