//! `kiln build` failures as the user sees them: exit status, the failing step's exit code,
//! the tail of its output, the Dockerfile lines; missing sources and base images.

mod common;

use common::*;

#[test]
fn failing_run_shows_exit_code_output_tail_and_dockerfile_lines() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox
RUN echo fine
RUN for i in $(seq 1 40); do echo out-line-$i; done; \\
    echo to-stderr >&2; \\
    exit 7
RUN echo never-reached
",
        )],
    );
    let dockerfile = ctx.join("Dockerfile");
    for progress in ["plain", "auto", "tty"] {
        let (code, err) = env.fail(&["build", "--progress", progress, ctx.to_str().unwrap()]);
        assert_ne!(code, 0);
        assert!(
            err.contains("exit code: 7"),
            "{progress}: exit code missing:\n{err}"
        );
        assert!(
            err.contains("out-line-40"),
            "{progress}: output tail missing:\n{err}"
        );
        assert!(
            err.contains("to-stderr"),
            "{progress}: stderr tail missing:\n{err}"
        );
        assert!(
            err.contains(&format!("{}:3", dockerfile.display())),
            "{progress}: file:line missing:\n{err}"
        );
        for line in ["RUN for i in", "echo to-stderr >&2", "exit 7"] {
            assert!(
                err.contains(line),
                "{progress}: Dockerfile line {line:?} missing:\n{err}"
            );
        }
        assert!(
            !err.contains("never-reached\n"),
            "{progress}: ran past the failure:\n{err}"
        );
    }
    // JSON: machine events only; the failed event carries the exit code, the log events the
    // output, and no later step starts.
    let o = env.run(&["build", "--progress", "json", ctx.to_str().unwrap()]);
    assert!(!o.status.success());
    let ev = events(&err_str(&o));
    let failed: Vec<_> = ev.iter().filter(|e| e["kind"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{ev:#?}");
    assert!(failed[0]["error"]
        .as_str()
        .unwrap()
        .contains("exit code: 7"));
    assert!(
        ev.iter()
            .any(|e| e["kind"] == "log"
                && e["data"].as_str().is_some_and(|d| d.contains("to-stderr")))
    );
    assert!(!steps_with(&ev, "started")
        .iter()
        .any(|d| d.contains("never-reached")));
    env.assert_store_clean();
}

#[test]
fn missing_copy_source_names_path_context_and_line() {
    let env = Env::new();
    if busybox_image(&env).is_none() {
        return;
    }
    let ctx = context(
        &env,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY present.txt /\nCOPY no/such-file.txt /dst\n",
            ),
            ("present.txt", "x"),
        ],
    );
    let (code, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("no/such-file.txt"), "{err}");
    assert!(
        err.contains(ctx.to_str().unwrap()),
        "the context is named: {err}"
    );
    assert!(
        err.contains(&format!("{}:3", ctx.join("Dockerfile").display())),
        "the line is named: {err}"
    );
    // A wildcard that matches nothing fails too.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY *.nomatch /dst/\n",
    )
    .unwrap();
    let (_, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert!(err.contains("*.nomatch"), "{err}");
}

#[test]
fn missing_base_image_names_reference_and_how_to_add_it() {
    let env = Env::new();
    let ctx = context(
        &env,
        "ctx",
        &[("Dockerfile", "FROM example.com/team/nosuch:1.2\nRUN true\n")],
    );
    let (code, err) = env.fail(&["build", "--progress", "plain", ctx.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("example.com/team/nosuch:1.2"), "{err}");
    assert!(err.contains("kiln import"), "{err}");
    assert!(err.contains("kiln load"), "{err}");
    assert!(
        !err.contains("kiln pull"),
        "suggests a command that does not exist: {err}"
    );
}
