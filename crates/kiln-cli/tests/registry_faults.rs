//! Faults between kiln and a real registry: a proxy that answers 503 / 429 and cuts
//! connections mid-answer, and a push killed with SIGKILL and rerun.

mod common;
mod registry_common;

use common::*;
use registry_common::*;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// busybox plus a layer of `mb` MiB of incompressible bytes, as `big`.
fn big_image(env: &Env, mb: usize) {
    let ctx = context(
        env,
        "bigctx",
        &[("Dockerfile", "FROM busybox\nCOPY blob /blob\n")],
    );
    let mut data = vec![0u8; mb << 20];
    // xorshift: incompressible and deterministic without a dependency.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(ctx.join("blob"), data).unwrap();
    build_tag(env, &ctx, "big", &[]);
}

#[test]
fn push_and_pull_through_a_faulty_proxy_complete() {
    if registries().is_none() || !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    big_image(&env, 2);
    let proxy = FaultProxy::start("127.0.0.1:5100");
    let name = repo("faulty");
    let via_proxy = format!("{}/{name}:1", proxy.host());
    // Small chunks: many requests, so the proxy's faults land mid-upload too.
    let o = env.run(&["push", "--chunk-size", "262144", "big", &via_proxy]);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    assert!(
        err_str(&o).contains("retry"),
        "no fault was hit: {}",
        err_str(&o)
    );
    // Judged directly at the registry, not through the proxy.
    let direct = format!("{PLAIN}/{name}:1");
    assert_eq!(skopeo_inspect(&direct, &[])["Digest"], digest.as_str());

    let other = Env::new();
    let before = proxy.faults.load(Ordering::Relaxed);
    let o = other.run(&["pull", &via_proxy]);
    assert!(o.status.success(), "{}", err_str(&o));
    assert!(
        proxy.faults.load(Ordering::Relaxed) > before,
        "no fault during the pull"
    );
    assert_eq!(other.layer_digests(&via_proxy), env.layer_digests("big"));
    other.assert_store_clean();
}

#[test]
fn sigkilled_push_rerun_completes() {
    if registries().is_none() || !need("skopeo") {
        return;
    }
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    big_image(&env, 24);
    let dest = format!("{PLAIN}/{}:1", repo("killed"));
    // Slow the first push down with tiny chunks, and kill it once it has started uploading.
    let mut child = env
        .cmd(&["push", "--chunk-size", "65536", "big", &dest])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(700));
    let finished_early = child.try_wait().unwrap().is_some();
    let _ = Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if finished_early {
        eprintln!("note: the first push finished within {:?}", start.elapsed());
    }
    let o = env.run(&["push", "big", &dest]);
    assert!(o.status.success(), "{}", err_str(&o));
    let digest = out_str(&o).trim().to_string();
    let v = skopeo_inspect(&dest, &[]);
    assert_eq!(v["Digest"], digest.as_str());
    let layers: Vec<String> = v["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, env.layer_digests("big"));
    // Every blob is really there and consistent: skopeo copies the whole image out.
    let out = env.path("copied");
    sh_ok(Command::new("skopeo").args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:x", out.display()),
    ]));
    // The rerun did not resend what the killed push had finished (the busybox layer and
    // the config went first or in parallel; at least one blob was already there).
    if !finished_early {
        assert!(
            err_str(&o).contains("already in the registry"),
            "{}",
            err_str(&o)
        );
    }
}
