//! Secrets never leak: a `--secret` from a file and from an environment variable, a proxy
//! URL with credentials, and a `--build-arg` named like a secret reach the RUN step, yet
//! their values appear in no file of the store (layers decompressed, configs, history,
//! cache records and keys), no exported archive, and no output of kiln (progress events,
//! logs, error messages).

mod common;

use common::*;
use std::process::Command;

const FILE_CANARY: &str = "KILNCANARYfile7d1e";
const ENV_CANARY: &str = "KILNCANARYenv93ab";
const PROXY_CANARY: &str = "KILNCANARYproxy55c";
const ARG_CANARY: &str = "KILNCANARYarg0f2e";
/// Passed as a build-arg the Dockerfile never declares (the "unused" warning path).
const UNUSED_CANARY: &str = "KILNCANARYunused41b";
const ALL: [&str; 5] = [
    FILE_CANARY,
    ENV_CANARY,
    PROXY_CANARY,
    ARG_CANARY,
    UNUSED_CANARY,
];

const UNUSED_BUILD_ARG: &str = "DB_PASSWORD=KILNCANARYunused41b";

/// Files under `dir` (gzip members decompressed, tar archives searched as bytes) that
/// contain any of the needles; python, not kiln, does the reading.
fn grep_tree(dir: &std::path::Path) -> String {
    py(
        r#"
import sys, os, gzip
needles = [n.encode() for n in sys.argv[2:]]
hits = []
for root, dirs, files in os.walk(sys.argv[1]):
    for f in files + dirs:
        p = os.path.join(root, f)
        for n in needles:
            if n in f.encode():
                hits.append(p + ' (name)')
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        data = open(p, 'rb').read()
        if data[:2] == b'\x1f\x8b':
            try:
                data = gzip.decompress(data)
            except Exception:
                pass
        for n in needles:
            if n in data:
                hits.append(p + ': ' + n.decode())
print('\n'.join(hits))
"#,
        &[&[dir.to_str().unwrap()], &ALL[..]].concat(),
    )
}

fn assert_no_canary(what: &str, text: &str) {
    for c in ALL {
        assert!(!text.contains(c), "{c} leaked into {what}:\n{text}");
    }
}

fn dockerfile(fail: bool) -> String {
    format!(
        "FROM busybox
ARG API_TOKEN
RUN --mount=type=secret,id=filesec \\
    --mount=type=secret,id=envsec \\
    --mount=type=secret,id=envsec,env=ENV_SECRET \\
    --mount=type=secret,id=filesec,target=/etc/app/token,mode=0440,uid=1000,gid=1001 \\
    test \"$(cat /run/secrets/filesec)\" = \"$(cat /etc/app/token)\" \\
    && stat -c '%a %u %g' /etc/app/token > /token-stat \\
    && stat -c '%a %u %g' /run/secrets/envsec > /envsec-stat \\
    && sha256sum < /run/secrets/envsec | cut -d' ' -f1 > /envsec-sum \\
    && test \"$ENV_SECRET\" = \"$(cat /run/secrets/envsec)\" \\
    && test -n \"$API_TOKEN\" && test -n \"$HTTP_PROXY\" && echo used > /used{}
",
        if fail { " && exit 3" } else { "" }
    )
}

fn args<'a>(secret: &'a str, proxy: &'a str, arg: &'a str) -> Vec<&'a str> {
    vec![
        "--build-arg",
        UNUSED_BUILD_ARG,
        "--secret",
        secret,
        "--secret",
        "id=envsec,env=KILN_TEST_ENV_SECRET",
        "--build-arg",
        proxy,
        "--build-arg",
        arg,
    ]
}

#[test]
fn canaries_reach_the_step_and_appear_in_no_artifact_or_output() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let secret_file = env.path("secret.txt");
    std::fs::write(&secret_file, FILE_CANARY).unwrap();
    let secret = format!("id=filesec,src={}", secret_file.display());
    let proxy = format!("HTTP_PROXY=http://user:{PROXY_CANARY}@proxy.invalid:3128");
    let arg = format!("API_TOKEN={ARG_CANARY}");
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile(false))]);
    let archive = env.path("img.tar");
    let rootfs = env.path("rootfs.tar");
    let mut all_output = String::new();

    for progress in ["json", "plain"] {
        let oci = format!("type=oci,dest={}", archive.display());
        let tar = format!("type=tar,dest={}", rootfs.display());
        let mut a = vec![
            "build",
            "--progress",
            progress,
            "-t",
            "leak",
            "-o",
            &oci,
            "-o",
            &tar,
        ];
        a.extend(args(&secret, &proxy, &arg));
        // The second round rebuilds from scratch so every step logs again.
        a.push("--no-cache");
        a.push(ctx.to_str().unwrap());
        let o = env
            .cmd(&a)
            .env("KILN_TEST_ENV_SECRET", ENV_CANARY)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", err_str(&o));
        all_output.push_str(&out_str(&o));
        all_output.push_str(&err_str(&o));
    }

    // The step had every value.
    let fs = tar_entries(&rootfs);
    assert_eq!(entry_data(&fs, "used"), "used\n");
    assert_eq!(entry_data(&fs, "token-stat"), "440 1000 1001\n");
    assert_eq!(
        entry_data(&fs, "envsec-stat"),
        "400 0 0\n",
        "BuildKit's defaults"
    );
    let p = env.path("env-canary");
    std::fs::write(&p, ENV_CANARY).unwrap();
    assert_eq!(
        format!("sha256:{}", entry_data(&fs, "envsec-sum").trim()),
        sha256_file(&p),
        "the env secret mounted as a file holds its value"
    );
    assert!(!fs.contains_key("run/secrets/filesec"));
    assert!(!fs.contains_key("etc/app/token"));

    // The history names the build-arg but not its value.
    let history = env.inspect("leak")["Config"]["history"].to_string();
    assert!(history.contains("API_TOKEN=<redacted>"), "{history}");

    // A failing step: the error report and its output tail.
    std::fs::write(ctx.join("Dockerfile"), dockerfile(true)).unwrap();
    for progress in ["json", "plain"] {
        let mut a = vec!["build", "--progress", progress];
        a.extend(args(&secret, &proxy, &arg));
        a.push(ctx.to_str().unwrap());
        let o = env
            .cmd(&a)
            .env("KILN_TEST_ENV_SECRET", ENV_CANARY)
            .output()
            .unwrap();
        assert!(!o.status.success());
        all_output.push_str(&out_str(&o));
        all_output.push_str(&err_str(&o));
    }
    assert!(UNUSED_BUILD_ARG.ends_with(UNUSED_CANARY));
    assert!(
        all_output.contains("DB_PASSWORD"),
        "the unused build-arg is warned about (by name): {all_output}"
    );
    all_output.push_str(&env.ok(&["inspect", "leak"]));
    all_output.push_str(&env.ok(&["images", "--format", "json"]));
    assert_no_canary("kiln's output", &all_output);

    let unpacked = env.path("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    sh_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
    );
    let hits = grep_tree(&unpacked);
    assert!(
        hits.trim().is_empty(),
        "canary in the exported image: {hits}"
    );
    let hits = grep_tree(&env.root);
    assert!(hits.trim().is_empty(), "canary in KILN_ROOT: {hits}");
}

#[test]
fn kiln_check_warns_about_a_secret_named_build_arg() {
    let env = Env::new();
    let ctx = context(&env, "ctx", &[("Dockerfile", &dockerfile(false))]);
    let o = env.run(&["check", ctx.to_str().unwrap()]);
    let text = format!("{}{}", out_str(&o), err_str(&o));
    assert!(text.contains("SecretsUsedInArgOrEnv"), "{text}");
    assert!(text.contains("API_TOKEN"), "{text}");
}

#[test]
fn missing_secret_env_var_names_the_variable_not_a_value() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=secret,id=e,required=true true\n",
        )],
    );
    let (_, err) = env.fail(&[
        "build",
        "--progress",
        "plain",
        "--secret",
        "id=e,env=KILN_TEST_UNSET_VAR",
        ctx.to_str().unwrap(),
    ]);
    assert!(err.contains("KILN_TEST_UNSET_VAR"), "{err}");
    assert!(
        err.contains("Dockerfile:2"),
        "the error names the line: {err}"
    );
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(err.contains("--secret id=e"), "{err}");
}
