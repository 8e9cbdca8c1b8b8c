//! Table tests for ARG / ENV scoping.

use std::collections::BTreeMap;

use kiln_dockerfile::scope::{
    is_builtin_build_arg, is_proxy_arg, Env, GlobalScope, Platform, StageScope,
};

fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn amd64() -> Platform {
    Platform::new("linux", "amd64", "")
}

fn global(build_args: &[(&str, &str)]) -> GlobalScope {
    GlobalScope::new(
        args(build_args),
        &Platform::new("linux", "arm", "v7"),
        &amd64(),
        "",
        '\\',
    )
}

fn stage(g: &GlobalScope) -> StageScope {
    g.stage_from_image([("PATH", "/usr/bin:/bin")])
}

fn expand(s: &StageScope, w: &str) -> String {
    s.expand(w).unwrap().word
}

#[test]
fn global_args_are_only_for_from() {
    let mut g = global(&[]);
    assert_eq!(
        g.declare_arg("VERSION", Some("1.0")).unwrap().as_deref(),
        Some("1.0")
    );
    assert_eq!(g.expand_from("alpine:$VERSION").unwrap().word, "alpine:1.0");
    let s = stage(&g);
    assert_eq!(expand(&s, "[$VERSION]"), "[]");
}

#[test]
fn global_defaults_see_earlier_globals_and_build_args_win() {
    let mut g = global(&[("B", "from-cli")]);
    g.declare_arg("A", Some("a")).unwrap();
    assert_eq!(
        g.declare_arg("B", Some("$A-b")).unwrap().as_deref(),
        Some("from-cli")
    );
    assert_eq!(
        g.declare_arg("C", Some("$A-$B")).unwrap().as_deref(),
        Some("a-from-cli")
    );
    assert_eq!(g.declare_arg("D", None).unwrap(), None);
    assert_eq!(g.env().get("D"), None);
    // a later bare redeclaration does not unset
    g.declare_arg("A", None).unwrap();
    assert_eq!(g.env().get("A"), Some("a"));
}

#[test]
fn stage_redeclaration_takes_global_value() {
    let mut g = global(&[]);
    g.declare_arg("V", Some("g")).unwrap();
    let mut s = stage(&g);
    assert_eq!(
        s.declare_arg(&mut g, "V", None).unwrap().as_deref(),
        Some("g")
    );
    assert_eq!(expand(&s, "$V"), "g");
    // own default beats the global value
    let mut s2 = stage(&g);
    assert_eq!(
        s2.declare_arg(&mut g, "V", Some("own")).unwrap().as_deref(),
        Some("own")
    );
}

#[test]
fn stage_build_arg_beats_default_and_global() {
    let mut g = global(&[("V", "cli"), ("W", "cli-w")]);
    g.declare_arg("V", Some("g")).unwrap();
    let mut s = stage(&g);
    assert_eq!(
        s.declare_arg(&mut g, "V", Some("d")).unwrap().as_deref(),
        Some("cli")
    );
    assert_eq!(
        s.declare_arg(&mut g, "W", None).unwrap().as_deref(),
        Some("cli-w")
    );
    // an empty build-arg is a value (set, empty)
    let mut g = global(&[("E", "")]);
    let mut s = stage(&g);
    assert_eq!(
        s.declare_arg(&mut g, "E", Some("d")).unwrap().as_deref(),
        Some("")
    );
    assert_eq!(expand(&s, "${E-unset}${E:-empty}"), "empty");
}

#[test]
fn undeclared_value_is_unset_not_empty() {
    let mut g = global(&[]);
    let mut s = stage(&g);
    assert_eq!(s.declare_arg(&mut g, "X", None).unwrap(), None);
    assert_eq!(expand(&s, "${X-unset}"), "unset");
    assert_eq!(s.declared_args(), &[("X".to_string(), None)]);
    let used = s.expand("$X").unwrap().used;
    assert!(used.unmatched.contains("X"));
}

#[test]
fn arg_line_defaults_see_earlier_args_on_the_line() {
    let mut g = global(&[]);
    let mut s = stage(&g);
    let v = s
        .declare_args(&mut g, &[("a", Some("1")), ("b", Some("$a-2"))])
        .unwrap();
    assert_eq!(v, vec![Some("1".to_string()), Some("1-2".to_string())]);
}

#[test]
fn env_line_is_expanded_with_the_env_before_it() {
    let g = global(&[]);
    let mut s = stage(&g);
    s.set_env(&[("a", "old")]).unwrap();
    let out = s.set_env(&[("a", "1"), ("b", "$a")]).unwrap();
    assert_eq!(
        out,
        vec![("a".into(), "1".into()), ("b".into(), "old".into())]
    );
    assert_eq!(expand(&s, "$a$b"), "1old");
    // keys are expanded too
    s.set_env(&[("k_$a", "v")]).unwrap();
    assert_eq!(s.env().get("k_1"), Some("v"));
}

#[test]
fn env_shadows_arg_and_order_matters() {
    let mut g = global(&[("V", "cli")]);
    let mut s = stage(&g);
    s.declare_arg(&mut g, "V", None).unwrap();
    s.set_env(&[("V", "env-$V")]).unwrap();
    assert_eq!(expand(&s, "$V"), "env-cli");
    assert_eq!(s.config_env().get("V"), Some("env-cli"));
    // an ARG with a value after an ENV replaces it for the build only
    let mut g = global(&[]);
    let mut s = stage(&g);
    s.set_env(&[("W", "env")]).unwrap();
    s.declare_arg(&mut g, "W", Some("arg")).unwrap();
    assert_eq!(expand(&s, "$W"), "arg");
    assert_eq!(s.config_env().get("W"), Some("env"));
    // an ARG without a value leaves the ENV alone
    s.declare_arg(&mut g, "Z", None).unwrap();
    s.set_env(&[("Y", "env")]).unwrap();
    s.declare_arg(&mut g, "Y", None).unwrap();
    assert_eq!(expand(&s, "$Y"), "env");
}

#[test]
fn base_image_env_is_visible() {
    let g = global(&[]);
    let s = stage(&g);
    assert_eq!(expand(&s, "$PATH"), "/usr/bin:/bin");
    assert_eq!(
        s.config_env().to_strings(),
        vec!["PATH=/usr/bin:/bin".to_string()]
    );
}

#[test]
fn platform_args() {
    let mut g = global(&[]);
    let t = [
        ("TARGETPLATFORM", "linux/arm/v7"),
        ("TARGETOS", "linux"),
        ("TARGETARCH", "arm"),
        ("TARGETVARIANT", "v7"),
        ("BUILDPLATFORM", "linux/amd64"),
        ("BUILDOS", "linux"),
        ("BUILDARCH", "amd64"),
        ("BUILDVARIANT", ""),
        ("TARGETSTAGE", "default"),
    ];
    for (name, want) in t {
        // automatically visible in FROM
        assert_eq!(
            g.expand_from(&format!("${name}")).unwrap().word,
            want,
            "{name}"
        );
        // in a stage only after ARG NAME
        let mut s = stage(&g);
        assert_eq!(expand(&s, &format!("${{{name}-unset}}")), "unset", "{name}");
        s.declare_arg(&mut g, name, None).unwrap();
        assert_eq!(expand(&s, &format!("${name}")), want, "{name}");
    }
    // BUILDVARIANT is set-but-empty, not unset
    assert_eq!(g.expand_from("${BUILDVARIANT-unset}").unwrap().word, "");
    // build-args override them
    let g = GlobalScope::new(
        args(&[("TARGETARCH", "riscv64")]),
        &amd64(),
        &amd64(),
        "build",
        '\\',
    );
    assert_eq!(
        g.expand_from("$TARGETARCH $TARGETSTAGE").unwrap().word,
        "riscv64 build"
    );
}

#[test]
fn host_platform_mapping() {
    assert_eq!(
        Platform::from_rust("linux", "x86_64"),
        Platform::new("linux", "amd64", "")
    );
    assert_eq!(
        Platform::from_rust("linux", "aarch64"),
        Platform::new("linux", "arm64", "v8")
    );
    assert_eq!(
        Platform::from_rust("linux", "arm"),
        Platform::new("linux", "arm", "v7")
    );
    assert_eq!(
        Platform::from_rust("macos", "x86"),
        Platform::new("darwin", "386", "")
    );
    assert_eq!(
        Platform::from_rust("linux", "s390x"),
        Platform::new("linux", "s390x", "")
    );
    let h = Platform::host();
    assert!(!h.os.is_empty() && !h.arch.is_empty());
    assert_eq!(
        Platform::parse("linux/arm/v7"),
        Some(Platform::new("linux", "arm", "v7"))
    );
    assert_eq!(
        Platform::parse("linux/amd64").unwrap().to_string(),
        "linux/amd64"
    );
    assert_eq!(Platform::parse("linux"), None);
    assert_eq!(Platform::parse("a/b/c/d"), None);
}

#[test]
fn proxy_args() {
    for p in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "FTP_PROXY",
        "ftp_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        assert!(is_proxy_arg(p), "{p}");
    }
    assert!(!is_proxy_arg("Http_Proxy"));
    let mut g = global(&[("HTTP_PROXY", "http://p:3128"), ("no_proxy", "x")]);
    let mut s = stage(&g);
    // usable by RUN without declaration, but not by expansion
    assert_eq!(expand(&s, "${HTTP_PROXY-unset}"), "unset");
    let run = s.run_env(&g);
    assert_eq!(run.get("HTTP_PROXY"), Some("http://p:3128"));
    assert_eq!(run.get("no_proxy"), Some("x"));
    // declared: visible, but never in history or config
    s.declare_arg(&mut g, "HTTP_PROXY", None).unwrap();
    s.declare_arg(&mut g, "OTHER", Some("o")).unwrap();
    assert_eq!(expand(&s, "$HTTP_PROXY"), "http://p:3128");
    assert_eq!(
        s.history_args(),
        vec![("OTHER".to_string(), "o".to_string())]
    );
    assert_eq!(s.config_env().get("HTTP_PROXY"), None);
    assert!(g.unconsumed_build_args().is_empty());
}

#[test]
fn unconsumed_build_args() {
    let mut g = global(&[
        ("USED", "1"),
        ("UNUSED", "2"),
        ("ALSO_UNUSED", "3"),
        ("https_proxy", "p"),
        ("TARGETOS", "linux"),
        ("BUILDKIT_INLINE_CACHE", "1"),
        ("SOURCE_DATE_EPOCH", "0"),
    ]);
    let mut s = stage(&g);
    s.declare_arg(&mut g, "USED", None).unwrap();
    assert_eq!(
        g.unconsumed_build_args(),
        vec!["ALSO_UNUSED".to_string(), "UNUSED".to_string()]
    );
    assert_eq!(
        g.unconsumed_warning().as_deref(),
        Some("[Warning] One or more build-args [ALSO_UNUSED UNUSED] were not consumed")
    );
    // a global declaration counts as consumption too
    g.declare_arg("UNUSED", None).unwrap();
    g.mark_consumed("ALSO_UNUSED");
    assert_eq!(g.unconsumed_warning(), None);
    assert!(is_builtin_build_arg("BUILDKIT_SYNTAX"));
}

#[test]
fn child_stage_inherits_parent_scope() {
    let mut g = global(&[]);
    let mut parent = stage(&g);
    parent.declare_arg(&mut g, "A", Some("1")).unwrap();
    parent.set_env(&[("E", "e")]).unwrap();
    let child = parent.inherit();
    assert_eq!(expand(&child, "$A$E"), "1e");
    assert_eq!(
        child.history_args(),
        vec![("A".to_string(), "1".to_string())]
    );
}

#[test]
fn escape_char_is_used() {
    let mut g = GlobalScope::new(args(&[]), &amd64(), &amd64(), "", '`');
    g.declare_arg("P", Some("C:\\dir")).unwrap();
    let mut s = g.stage_from_image(Env::new().iter());
    s.declare_arg(&mut g, "P", None).unwrap();
    assert_eq!(expand(&s, "`$P=$P"), "$P=C:\\dir");
}

#[test]
fn errors_propagate() {
    let mut g = global(&[]);
    assert!(g.declare_arg("X", Some("${Y:?required}")).is_err());
    let mut s = stage(&g);
    assert!(s.declare_arg(&mut g, "X", Some("${")).is_err());
    assert!(s.set_env(&[("A", "${B:=c}")]).is_err());
    // a failed ENV line changes nothing
    assert_eq!(s.env().get("A"), None);
}
