use super::*;
use kiln_oci::Reference;

fn image(g: &mut Graph, r: &str) -> VertexId {
    g.add(
        Op::Source(SourceOp::Image {
            reference: Reference::parse(r).unwrap(),
            platform: Platform::new("linux", "amd64", ""),
        }),
        vec![],
        VertexMeta::default(),
    )
    .unwrap()
}

fn exec(args: &[&str], env: &[&str]) -> ExecOp {
    ExecOp {
        root: InputIndex(0),
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env.iter().map(|s| s.to_string()).collect(),
        proxy_env: vec![],
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        mounts: vec![],
    }
}

fn fixed_graph() -> (Graph, VertexId, VertexId) {
    let mut g = Graph::new();
    let base = image(&mut g, "busybox");
    let run = g
        .add(
            Op::Exec(exec(&["/bin/sh", "-c", "make"], &["PATH=/bin"])),
            vec![base],
            VertexMeta::default(),
        )
        .unwrap();
    (g, base, run)
}

/// Golden digests: if one of these changes, every cache key in the field changes. That
/// must be deliberate (and come with a KEY_VERSION bump).
#[test]
fn canonical_encoding_is_stable() {
    let (g, base, run) = fixed_graph();
    let b = g.vertex(base).unwrap();
    assert_eq!(
        String::from_utf8(canonical_bytes(&b.op, &[])).unwrap(),
        "kiln-graph/v1\n{\"source\":{\"image\":{\"reference\":\"docker.io/library/busybox:latest\",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}}}"
    );
    assert_eq!(
        b.digest.to_string(),
        "sha256:985df085e20705300e2f97b0d21513f3b4120e18af756a277a09c163eb5de3eb"
    );
    assert_eq!(
        g.vertex(run).unwrap().digest.to_string(),
        "sha256:2c78f7c82b0983b8900dab25475315abeab3c1696c2984de11b8a0b5712bffa7"
    );
}

#[test]
fn mkfile_key_holds_data_digest_not_bytes() {
    let op = Op::File(FileOp {
        root: None,
        actions: vec![FileAction::Mkfile {
            path: "/EOF".into(),
            data: b"hello\n".to_vec(),
            mode: 0o755,
            chown: None,
        }],
    });
    let s = String::from_utf8(canonical_bytes(&op, &[])).unwrap();
    assert!(
        s.contains("sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"),
        "{s}"
    );
}

#[test]
fn identical_vertices_are_deduplicated() {
    let (mut g, base, run) = fixed_graph();
    let again = g
        .add(
            Op::Exec(exec(&["/bin/sh", "-c", "make"], &["PATH=/bin"])),
            vec![base],
            VertexMeta {
                description: "other".into(),
                ignore_cache: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(again, run);
    assert_eq!(g.len(), 2);
    assert!(g.vertex(run).unwrap().meta.ignore_cache);
    let other = g
        .add(
            Op::Exec(exec(&["/bin/sh", "-c", "make"], &["PATH=/usr/bin"])),
            vec![base],
            VertexMeta::default(),
        )
        .unwrap();
    assert_ne!(other, run);
}

#[test]
fn proxy_env_and_meta_are_not_in_the_key() {
    let (g, base, run) = fixed_graph();
    let mut g2 = Graph::new();
    let base2 = image(&mut g2, "docker.io/library/busybox:latest");
    assert_eq!(
        g.vertex(base).unwrap().digest,
        g2.vertex(base2).unwrap().digest
    );
    let mut e = exec(&["/bin/sh", "-c", "make"], &["PATH=/bin"]);
    e.proxy_env = vec!["HTTP_PROXY=http://proxy:3128".into()];
    let run2 = g2
        .add(
            Op::Exec(e.clone()),
            vec![base2],
            VertexMeta {
                description: "[x 1/1] RUN make".into(),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        g.vertex(run).unwrap().digest,
        g2.vertex(run2).unwrap().digest
    );
    assert_eq!(
        e.process_env(),
        vec!["PATH=/bin", "HTTP_PROXY=http://proxy:3128"]
    );
}

#[test]
fn input_order_matters() {
    let mut g = Graph::new();
    let a = image(&mut g, "a");
    let b = image(&mut g, "b");
    let m1 = g.add(Op::Merge, vec![a, b], VertexMeta::default()).unwrap();
    let m2 = g.add(Op::Merge, vec![b, a], VertexMeta::default()).unwrap();
    assert_ne!(m1, m2);
}

#[test]
fn invalid_inputs_are_rejected() {
    let mut g = Graph::new();
    let err = g
        .add(
            Op::Exec(exec(&["true"], &[])),
            vec![VertexId(3)],
            VertexMeta::default(),
        )
        .unwrap_err();
    assert!(matches!(err, GraphError::UnknownInput { .. }));
    let a = image(&mut g, "a");
    let mut e = exec(&["true"], &[]);
    e.mounts.push(ExecMount::Bind {
        target: "/x".into(),
        from: InputIndex(1),
        source: "/".into(),
        readwrite: false,
    });
    let err = g
        .add(Op::Exec(e), vec![a], VertexMeta::default())
        .unwrap_err();
    assert!(matches!(err, GraphError::BadInputIndex { .. }));
    assert_eq!(
        g.add(Op::Merge, vec![], VertexMeta::default()),
        Err(GraphError::EmptyMerge)
    );
}

#[test]
fn reachability_and_dump() {
    let (mut g, base, run) = fixed_graph();
    let unused = image(&mut g, "alpine");
    assert_eq!(g.reachable_from(&[run]), vec![base, run]);
    assert_eq!(g.topological_order(), vec![base, run, unused]);
    let d = g.dump_from(&[run]);
    assert!(d.contains("v1 sha256:"), "{d}");
    assert!(d.contains("args=[\"/bin/sh\", \"-c\", \"make\"]"), "{d}");
    assert!(!d.contains("alpine"), "{d}");
    assert_eq!(g.dump(), g.clone().dump());
}
