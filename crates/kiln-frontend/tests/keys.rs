//! Cache-key properties across whole lowerings.

use kiln_frontend::{lower, FrontendOptions};
use kiln_oci::{ImageConfig, Reference};

fn resolver(_: &Reference) -> Result<ImageConfig, String> {
    Ok(ImageConfig {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Default::default()
    })
}

fn root_digest(src: &str, args: &[(&str, &str)]) -> String {
    let parsed = kiln_dockerfile::parse(src);
    let mut o = FrontendOptions::new(src, &resolver);
    for (k, v) in args {
        o.build_args.insert(k.to_string(), v.to_string());
    }
    let plan = lower(&parsed, &o).unwrap();
    plan.graph
        .vertex(plan.target.root)
        .unwrap()
        .digest
        .to_string()
}

#[test]
fn proxy_build_args_do_not_change_the_run_key() {
    let src = "FROM busybox\nRUN apt-get update\n";
    assert_eq!(
        root_digest(src, &[]),
        root_digest(
            src,
            &[("HTTP_PROXY", "http://proxy:3128"), ("no_proxy", "x")]
        )
    );
}

#[test]
fn undeclared_build_args_do_not_change_the_key_declared_ones_do() {
    let src = "FROM busybox\nARG V\nRUN make\n";
    let plain = "FROM busybox\nRUN make\n";
    assert_eq!(root_digest(plain, &[]), root_digest(plain, &[("V", "1")]));
    assert_ne!(
        root_digest(src, &[("V", "1")]),
        root_digest(src, &[("V", "2")])
    );
}

#[test]
fn identical_steps_in_two_stages_share_a_vertex() {
    let src = "FROM busybox AS a\nRUN echo same\nFROM busybox AS b\nRUN echo same\nFROM busybox\nCOPY --from=a /x /a\nCOPY --from=b /x /b\n";
    let parsed = kiln_dockerfile::parse(src);
    let plan = lower(&parsed, &FrontendOptions::new(src, &resolver)).unwrap();
    let execs = plan
        .graph
        .vertices()
        .iter()
        .filter(|v| v.op.kind() == "exec")
        .count();
    assert_eq!(execs, 1);
}
