//! Golden tests: `tests/fixtures/<case>/{Dockerfile, args.txt?, expected.txt}`.
//! `expected.txt` = graph dump + target root + layers + final config JSON (or the error).
//! Regenerate with `UPDATE_SNAPSHOTS=1 cargo test -p kiln-frontend --test golden`.
//!
//! args.txt lines: `build-arg K=V`, `target NAME`, `allow-insecure`, `context NAME`,
//! `context-image NAME=REF`, `no-cache-filter NAME`, `no-cache`.

use kiln_frontend::{lower, FrontendOptions, NamedContext};
use kiln_oci::config::RunConfig;
use kiln_oci::{ImageConfig, Reference};
use std::fmt::Write as _;
use std::path::Path;

fn resolver(r: &Reference) -> Result<ImageConfig, String> {
    let mut c = ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    };
    let rc = c.run_config_mut();
    rc.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    ]);
    match r.repository() {
        "library/busybox" | "library/debian" | "library/alpine" => {
            rc.cmd = Some(vec!["sh".into()]);
        }
        "library/app-base" => {
            *rc = RunConfig {
                env: Some(vec!["PATH=/bin".into(), "APP_HOME=/srv".into()]),
                cmd: Some(vec!["serve".into()]),
                working_dir: Some("/srv".into()),
                user: Some("app".into()),
                shell: Some(vec!["/bin/bash".into(), "-c".into()]),
                ..Default::default()
            };
        }
        "library/onbuild-base" => {
            rc.on_build = Some(vec![
                "COPY . /app/src".into(),
                "RUN make -C /app/src".into(),
            ]);
        }
        _ => return Err(format!("image {r} not found in the store")),
    }
    Ok(c)
}

fn run_case(dir: &Path) -> String {
    let src = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let args = std::fs::read_to_string(dir.join("args.txt")).unwrap_or_default();
    let parsed = kiln_dockerfile::parse(&src);
    let mut opts = FrontendOptions::new(&src, &resolver);
    for line in args.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "build-arg" => {
                let (a, b) = v.split_once('=').unwrap();
                opts.build_args.insert(a.into(), b.into());
            }
            "target" => opts.target = Some(v.into()),
            "allow-insecure" => opts.allow_insecure = true,
            "no-cache" => opts.no_cache = true,
            "no-cache-filter" => opts.no_cache_filter.push(v.into()),
            "context" => {
                opts.build_contexts.insert(v.into(), NamedContext::Local);
            }
            "context-image" => {
                let (a, b) = v.split_once('=').unwrap();
                opts.build_contexts
                    .insert(a.into(), NamedContext::Image(Reference::parse(b).unwrap()));
            }
            other => panic!("unknown args.txt directive {other}"),
        }
    }
    let mut out = String::new();
    match lower(&parsed, &opts) {
        Ok(plan) => {
            out.push_str(&plan.graph.dump());
            let _ = writeln!(out, "target root={}", plan.target.root);
            let _ = writeln!(out, "base {:?}", plan.target.base);
            for l in &plan.target.layers {
                let _ = writeln!(
                    out,
                    "layer {} parent={} history={}",
                    l.vertex,
                    l.parent.map_or("-".to_string(), |p| p.to_string()),
                    l.history_index
                );
            }
            for s in &plan.stages {
                let _ = writeln!(
                    out,
                    "stage {} {:?} base={} built={}",
                    s.index, s.name, s.base, s.built
                );
            }
            if let Some(w) = &plan.unused_build_args_warning {
                let _ = writeln!(out, "warning {w}");
            }
            for w in &plan.warnings {
                let _ = writeln!(out, "{}", w.dump_line(&src));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&plan.target.config.to_bytes()).unwrap();
            let _ = writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap());
        }
        Err(e) => {
            let _ = writeln!(out, "error {:?}: {}", e.kind, e.message);
            if let Some(h) = &e.hint {
                let _ = writeln!(out, "hint: {h}");
            }
            for d in e.to_diagnostics() {
                let _ = writeln!(out, "{}", d.dump_line(&src));
            }
        }
    }
    out
}

#[test]
fn golden() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let update = std::env::var_os("UPDATE_SNAPSHOTS").is_some();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").exists())
        .collect();
    dirs.sort();
    let mut failed = Vec::new();
    for dir in &dirs {
        let got = run_case(dir);
        let exp_path = dir.join("expected.txt");
        if update {
            std::fs::write(&exp_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&exp_path).unwrap_or_default();
        if want != got {
            eprintln!("=== {} differs; got:\n{got}", dir.display());
            failed.push(dir.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    assert!(failed.is_empty(), "golden mismatches: {failed:?}");
    assert!(
        dirs.len() >= 40,
        "expected at least 40 fixtures, found {}",
        dirs.len()
    );
}
