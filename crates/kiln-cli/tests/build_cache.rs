//! `kiln build` cache behaviour, judged from the `--progress json` event stream and the
//! exported rootfs; and reproducibility across two empty stores.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

const DOCKERFILE: &str = "FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /ra
COPY b.txt /b.txt
RUN cat /b.txt > /rb
";

/// Descriptions of the real steps (not the internal context loads).
fn steps(events: &[Value]) -> BTreeSet<String> {
    steps_with(events, "started")
        .into_iter()
        .filter(|d| !d.starts_with("[internal]"))
        .collect()
}

fn cached(events: &[Value]) -> BTreeSet<String> {
    steps_with(events, "cached")
        .into_iter()
        .filter(|d| !d.starts_with("[internal]"))
        .collect()
}

fn misses(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["kind"] == "status")
        .filter_map(|e| {
            let t = e["text"].as_str()?;
            t.starts_with("cache miss").then(|| {
                (
                    e["description"].as_str().unwrap().to_string(),
                    t.to_string(),
                )
            })
        })
        .collect()
}

fn setup(env: &Env) -> Option<std::path::PathBuf> {
    busybox_image(env)?;
    Some(context(
        env,
        "ctx",
        &[
            ("Dockerfile", DOCKERFILE),
            ("a.txt", "a1\n"),
            ("b.txt", "b1\n"),
        ],
    ))
}

#[test]
fn unchanged_rebuild_is_fully_cached_and_mtime_only_changes_keep_it() {
    let env = Env::new();
    let Some(ctx) = setup(&env) else { return };
    let first = build_json(&env, &ctx, &["-t", "c"]);
    assert!(
        cached(&first).iter().all(|d| d.contains("FROM")),
        "{:?}",
        cached(&first)
    );
    let id1 = env.inspect("c")["Id"].clone();

    let second = build_json(&env, &ctx, &["-t", "c"]);
    assert_eq!(steps(&second).len(), 5, "{:?}", steps(&second));
    assert_eq!(cached(&second), steps(&second), "every step cached");
    assert!(misses(&second).is_empty(), "{:?}", misses(&second));
    assert_eq!(env.inspect("c")["Id"], id1, "same image");

    // Only the mtime changes: the keys come from content.
    sh_ok(
        std::process::Command::new("touch")
            .args(["-d", "2001-01-01 00:00:00"])
            .arg(ctx.join("a.txt"))
            .arg(ctx.join("b.txt")),
    );
    let third = build_json(&env, &ctx, &["-t", "c"]);
    assert_eq!(
        cached(&third),
        steps(&third),
        "mtime-only change kept the cache"
    );
    assert_eq!(env.inspect("c")["Id"], id1);
    env.assert_store_clean();
}

#[test]
fn editing_one_file_reruns_only_its_copy_and_later_steps() {
    let env = Env::new();
    let Some(ctx) = setup(&env) else { return };
    build_json(&env, &ctx, &[]);
    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    let dest = env.path("out");
    let spec = format!("type=local,dest={}", dest.display());
    let ev = build_json(&env, &ctx, &["-o", &spec]);
    let c = cached(&ev);
    let all = steps(&ev);
    let has = |set: &BTreeSet<String>, needle: &str| set.iter().any(|d| d.contains(needle));
    assert!(has(&c, "COPY a.txt"), "{c:?}");
    assert!(has(&c, "RUN cat /a.txt"), "{c:?}");
    assert!(!has(&c, "COPY b.txt"), "{c:?}");
    assert!(!has(&c, "RUN cat /b.txt"), "{c:?}");
    assert!(has(&all, "RUN cat /b.txt"), "{all:?}");
    let m = misses(&ev);
    assert!(
        m.iter().any(|(d, t)| d.contains("COPY b.txt")
            && t.contains("changed file")
            && t.contains("b.txt")),
        "the miss names the changed file: {m:?}"
    );
    assert!(!m.iter().any(|(d, _)| d.contains("a.txt")), "{m:?}");
    assert_eq!(std::fs::read_to_string(dest.join("rb")).unwrap(), "b2\n");
    assert_eq!(std::fs::read_to_string(dest.join("ra")).unwrap(), "a1\n");
}

#[test]
fn no_cache_and_no_cache_filter() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS one
RUN echo one > /one
FROM busybox AS two
RUN echo two > /two
FROM busybox
COPY --from=one /one /one
COPY --from=two /two /two
",
        )],
    );
    build_json(&env, &ctx, &[]);
    let ev = build_json(&env, &ctx, &["--no-cache"]);
    let c = cached(&ev);
    assert!(
        c.iter().all(|d| d.contains("FROM")),
        "--no-cache still used the cache for {c:?}"
    );
    assert!(steps(&ev).iter().any(|d| d.contains("echo one")));

    let ev = build_json(&env, &ctx, &["--no-cache-filter", "one"]);
    let c = cached(&ev);
    let all = steps(&ev);
    assert!(all.iter().any(|d| d.contains("echo one")), "{all:?}");
    assert!(!c.iter().any(|d| d.contains("echo one")), "{c:?}");
    assert!(c.iter().any(|d| d.contains("echo two")), "{c:?}");
}

#[test]
fn independent_stages_run_in_parallel() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox AS left
RUN sleep 1 && echo left > /left
FROM busybox AS right
RUN sleep 1 && echo right > /right
FROM busybox
COPY --from=left /left /left
COPY --from=right /right /right
",
        )],
    );
    let ev = build_json(&env, &ctx, &["--jobs", "2"]);
    let at = |needle: &str, kind: &str| -> f64 {
        ev.iter()
            .find(|e| {
                e["kind"] == kind
                    && e["description"]
                        .as_str()
                        .is_some_and(|d| d.contains(needle))
            })
            .unwrap_or_else(|| panic!("no {kind} event for {needle}: {ev:#?}"))["offset"]
            .as_f64()
            .unwrap()
    };
    let (ls, ld) = (at("echo left", "started"), at("echo left", "done"));
    let (rs, rd) = (at("echo right", "started"), at("echo right", "done"));
    assert!(
        ls < rd && rs < ld,
        "stages did not overlap: left {ls}..{ld}, right {rs}..{rd}"
    );
}

/// One build of the reproducibility fixture in a fresh store where the base image comes from
/// the archive `base`: (image id, metadata JSON).
fn repro_build(base: &std::path::Path) -> (String, Value) {
    let env = Env::new();
    env.ok(&["load", "-i", base.to_str().unwrap()]);
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY . /src\nRUN echo built > /built && mkdir /d && touch /d/f\nENV X=1\n",
            ),
            ("main.c", "int main(){}\n"),
            ("sub/x", "x\n"),
        ],
    );
    let iid = env.path("iid");
    let meta = env.path("meta.json");
    let o = env
        .cmd(&[
            "build",
            "-q",
            "-t",
            "repro",
            "--iidfile",
            iid.to_str().unwrap(),
            "--metadata-file",
            meta.to_str().unwrap(),
            ctx.to_str().unwrap(),
        ])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err_str(&o));
    let id = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(out_str(&o).trim(), id.trim(), "-q prints the id");
    let meta: Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(
        meta["containerimage.config.digest"].as_str(),
        Some(id.trim())
    );
    let img = env.inspect("repro");
    assert_eq!(img["Config"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        meta["containerimage.digest"], img["ManifestDigest"],
        "{meta} vs {img}"
    );
    (id, meta)
}

#[test]
fn same_inputs_in_two_empty_stores_give_the_same_digest() {
    // The same base image in both stores: imported once, loaded twice.
    let base_env = Env::new();
    if busybox_image(&base_env).is_none() {
        return;
    }
    let base = base_env.path("base.tar");
    base_env.ok(&["save", "-o", base.to_str().unwrap(), "busybox"]);
    let (id1, meta1) = repro_build(&base);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (id2, meta2) = repro_build(&base);
    assert_eq!(id1, id2, "image ids differ");
    assert_eq!(
        meta1["containerimage.digest"], meta2["containerimage.digest"],
        "manifest digests differ"
    );
}
