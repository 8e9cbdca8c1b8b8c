//! End-to-end `kiln check`: exit codes, JSON findings, --explain, skip directives, hints and
//! rendered snippets.

mod common;

use common::*;
use serde_json::Value;

const WARNS: &str = "FROM busybox as Build\nMAINTAINER me\nCMD echo hi\n";

fn write(env: &Env, name: &str, text: &str) -> String {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn json_findings(env: &Env, file: &str) -> Vec<Value> {
    let o = env.run(&["check", "-f", file, "--format", "json"]);
    serde_json::from_slice::<Value>(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out_str(&o)))
        .as_array()
        .unwrap()
        .clone()
}

fn rules(findings: &[Value]) -> Vec<String> {
    findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn warnings_exit_zero_unless_strict() {
    let env = Env::new();
    let f = write(&env, "Dockerfile", WARNS);
    let o = env.run(&["check", "-f", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", out_str(&o));
    let out = out_str(&o);
    assert!(out.contains("warning[StageNameCasing]"), "{out}");
    assert!(out.contains("0 errors, 4 warnings"), "{out}");
    let o = env.run(&["check", "-f", &f, "--strict"]);
    assert_eq!(o.status.code(), Some(1));
    // CONTEXT/Dockerfile is the default file.
    let o = env
        .cmd(&["check", env.dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(out_str(&o).contains("StageNameCasing"));
    // A clean file says so, even with --strict.
    let clean = write(&env, "Clean", "FROM busybox AS build\nCMD [\"sh\"]\n");
    let o = env.run(&["check", "-f", &clean, "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", out_str(&o));
    assert!(out_str(&o).contains("no problems found"));
}

#[test]
fn parse_error_exits_two_with_suggestion_and_snippet() {
    let env = Env::new();
    let f = write(
        &env,
        "Dockerfile",
        "FROM busybox\nRUNN echo hi\nCMD [\"sh\"]\n",
    );
    let o = env.run(&["check", "-f", &f]);
    assert_eq!(o.status.code(), Some(2));
    let out = out_str(&o);
    assert!(out.contains("RUNN"), "{out}");
    assert!(
        out.contains("did you mean RUN"),
        "nearest instruction suggested: {out}"
    );
    // The snippet: location, line number gutter and the source line.
    assert!(out.contains(&format!("{f}:2:1")), "{out}");
    assert!(out.contains("2 | RUNN echo hi"), "{out}");
    let o = env.run(&["check", "-f", &f, "--format", "json"]);
    assert_eq!(o.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["severity"] == "error")
        .unwrap()
        .clone();
    assert_eq!(e["line"], 2);
    assert_eq!(e["column"], 1);
    assert_eq!(e["file"], f.as_str());
    assert!(e["hint"].as_str().unwrap().contains("RUN"), "{e}");
}

#[test]
fn json_findings_have_location_and_rule() {
    let env = Env::new();
    let f = write(&env, "Dockerfile", WARNS);
    let v = json_findings(&env, &f);
    assert_eq!(
        rules(&v),
        [
            "FromAsCasing",
            "StageNameCasing",
            "MaintainerDeprecated",
            "JSONArgsRecommended"
        ]
    );
    let stage = v.iter().find(|d| d["rule"] == "StageNameCasing").unwrap();
    assert_eq!(stage["file"], f.as_str());
    assert_eq!(stage["line"], 1);
    assert_eq!(stage["column"], 17, "column of `Build`: {stage}");
    assert_eq!(stage["severity"], "warning");
    let cmd = v
        .iter()
        .find(|d| d["rule"] == "JSONArgsRecommended")
        .unwrap();
    assert_eq!(cmd["line"], 3);
    for d in &v {
        assert!(d["message"].as_str().is_some_and(|m| !m.is_empty()), "{d}");
    }
}

#[test]
fn skip_directive_is_honoured() {
    let env = Env::new();
    let f = write(
        &env,
        "Dockerfile",
        &format!("# check=skip=StageNameCasing,MaintainerDeprecated\n{WARNS}"),
    );
    let v = json_findings(&env, &f);
    assert_eq!(rules(&v), ["FromAsCasing", "JSONArgsRecommended"]);
    // Lines shift by one: the findings point at the real lines.
    assert_eq!(v[1]["line"], 4);
    let all = write(&env, "All", &format!("# check=skip=all\n{WARNS}"));
    let o = env.run(&["check", "-f", &all, "--strict"]);
    let out = out_str(&o);
    if o.status.code() == Some(0) {
        assert!(out.contains("no problems found"), "{out}");
    }
}

#[test]
fn explain_prints_the_rule() {
    let env = Env::new();
    let out = env.ok(&["check", "--explain", "StageNameCasing"]);
    assert!(out.starts_with("StageNameCasing"), "{out}");
    assert!(out.to_lowercase().contains("lowercase"), "{out}");
    assert!(out.contains("FROM"), "has an example: {out}");
    let (code, err) = env.fail(&["check", "--explain", "NoSuchRule"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("NoSuchRule") && err.contains("StageNameCasing"),
        "{err}"
    );
    let (_, err) = env.fail(&["check", "-f", "/nonexistent/Dockerfile"]);
    assert!(err.contains("/nonexistent/Dockerfile"), "{err}");
}

/// CopyIgnoredFile reads the context's ignore file, `<Dockerfile>.dockerignore` first, and
/// only judges literal context sources.
#[test]
fn copy_of_an_ignored_file_is_reported_from_the_context() {
    let env = Env::new();
    let ctx = env.path("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join(".dockerignore"), "*.env\n!public.env\n").unwrap();
    let df = ctx.join("Dockerfile");
    std::fs::write(
        &df,
        "FROM busybox AS base\nCOPY secret.env public.env app.txt /app/\n\
         COPY *.env /wild/\nCOPY --from=base /secret.env /x\n",
    )
    .unwrap();
    let (df, ctx) = (df.to_str().unwrap(), ctx.to_str().unwrap());
    let o = env.run(&["check", "-f", df, ctx, "--format", "json"]);
    let found: Vec<Value> = serde_json::from_slice::<Value>(&o.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    let ignored: Vec<&Value> = found
        .iter()
        .filter(|f| f["rule"] == "CopyIgnoredFile")
        .collect();
    assert_eq!(ignored.len(), 1, "{found:?}");
    assert!(
        ignored[0]["message"]
            .as_str()
            .unwrap()
            .contains("\"secret.env\""),
        "{found:?}"
    );
    // The Dockerfile-specific ignore file wins over .dockerignore.
    std::fs::write(format!("{ctx}/Dockerfile.dockerignore"), "app.txt\n").unwrap();
    let o = env.run(&["check", "-f", df, ctx]);
    let out = out_str(&o);
    assert!(out.contains("\"app.txt\" that is excluded"), "{out}");
    assert!(!out.contains("\"secret.env\""), "{out}");
    // Without an ignore file nothing is reported.
    std::fs::remove_file(format!("{ctx}/Dockerfile.dockerignore")).unwrap();
    std::fs::remove_file(format!("{ctx}/.dockerignore")).unwrap();
    let out = env.ok(&["check", "-f", df, ctx]);
    assert!(!out.contains("CopyIgnoredFile"), "{out}");
}
