mod common;

use common::*;
use kiln_oci::spec::Descriptor;
use kiln_oci::{media, Digest, Reference};
use kiln_store::{host_platform, StoreError, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use serde_json::json;

#[test]
fn index_entries_carry_full_reference_annotations() {
    let (dir, store) = store();
    let (m, _) = make_image(&store, "busybox", "b", 1, 1);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], m.digest().to_string());
    assert_eq!(entry["mediaType"], media::OCI_MANIFEST);
    assert_eq!(
        entry["annotations"][ANNOTATION_REF_NAME],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        entry["annotations"][ANNOTATION_CONTAINERD_NAME],
        "docker.io/library/busybox:latest"
    );
}

#[test]
fn retag_replaces_and_tag_requires_existing_manifest() {
    let (_dir, store) = store();
    let (m1, _) = make_image(&store, "app:1", "one", 1, 1);
    let (m2, _) = make_image(&store, "app:2", "two", 2, 1);
    let r = Reference::parse("app:1").unwrap();
    let old = store.tag(&r, &m2).unwrap().unwrap();
    assert_eq!(old.digest(), m1.digest());
    assert_eq!(store.index_entries().unwrap().len(), 2);
    assert_eq!(store.resolve("app:1").unwrap().target.digest(), m2.digest());

    let absent = Descriptor::new(media::OCI_MANIFEST.into(), 2, &Digest::of_bytes(b"{}"));
    let err = store.tag(&r, &absent).unwrap_err();
    assert!(
        err.to_string()
            .contains(&Digest::of_bytes(b"{}").to_string()),
        "{err}"
    );
    let layer = store
        .put_bytes(None, b"layer")
        .unwrap()
        .descriptor(media::OCI_LAYER_TAR);
    assert!(matches!(
        store.tag(&r, &layer),
        Err(StoreError::NotAManifest { .. })
    ));
}

#[test]
fn resolve_by_name_id_prefix_and_manifest_digest() {
    let (_dir, store) = store();
    let (m, id) = make_image(&store, "busybox:1.36", "b", 1, 2);
    make_image(&store, "quay.io/x/y", "y", 2, 1);

    for input in [
        "busybox:1.36",
        "docker.io/library/busybox:1.36",
        "library/busybox:1.36",
        &id.to_string(),
        &id.hex()[..12],
        &format!("sha256:{}", &id.hex()[..8]),
        m.digest().as_ref(),
        &format!("busybox@{}", m.digest()),
    ] {
        let img = store
            .resolve(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(img.id, id, "{input}");
        assert_eq!(img.target.digest(), m.digest(), "{input}");
        assert_eq!(img.manifest.layers().len(), 2);
        assert_eq!(
            img.reference.unwrap().to_string(),
            "docker.io/library/busybox:1.36"
        );
    }
    let y = store.resolve("quay.io/x/y").unwrap();
    assert_eq!(y.reference.unwrap().familiar(), "quay.io/x/y:latest");

    for missing in [
        "busybox",
        "busybox:latest",
        "abc",
        "ffffffff",
        "sha256:0000",
    ] {
        let err = store.resolve(missing).unwrap_err();
        assert!(err.is_not_found(), "{missing}: {err}");
        assert!(err.to_string().contains(missing), "{err}");
    }
}

/// Finds two configs whose ids share the first four hex digits (birthday search).
fn colliding_labels() -> (String, String, String) {
    let mut seen = std::collections::HashMap::new();
    for i in 0.. {
        let label = format!("l{i}");
        let d = Digest::of_bytes(&config_json(&label));
        let prefix = d.hex()[..4].to_string();
        if let Some(other) = seen.insert(prefix.clone(), label.clone()) {
            return (other, label, prefix);
        }
    }
    unreachable!()
}

#[test]
fn ambiguous_prefix_lists_candidates() {
    let (_dir, store) = store();
    let (a, b, prefix) = colliding_labels();
    let (_, id_a) = make_image(&store, "a", &a, 1, 1);
    let (_, id_b) = make_image(&store, "b", &b, 2, 1);
    let err = store.resolve(&prefix).unwrap_err();
    match &err {
        StoreError::Ambiguous { input, candidates } => {
            assert_eq!(input, &prefix);
            assert_eq!(candidates.len(), 2);
        }
        other => panic!("expected ambiguity, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&id_a.to_string()) && msg.contains(&id_b.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("a:latest") && msg.contains("b:latest"),
        "{msg}"
    );
    // Full ids (and long enough prefixes) still resolve.
    assert_eq!(store.resolve(&id_a.to_string()).unwrap().id, id_a);
    assert_eq!(store.resolve(&id_b.hex()[..20]).unwrap().id, id_b);
    // Too-short prefixes are names, not ids.
    assert!(store.resolve(&prefix[..3]).unwrap_err().is_not_found());
}

#[test]
fn rmi_semantics() {
    let (dir, store) = store();
    let (m, id) = make_image(&store, "app:1", "same", 1, 1);
    store.tag(&Reference::parse("app:2").unwrap(), &m).unwrap();
    store.tag(&Reference::parse("other").unwrap(), &m).unwrap();
    make_image(&store, "unrelated", "u", 2, 1);

    // By tag: only that tag goes.
    let removed = store.remove("app:1").unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].reference.as_ref().unwrap().familiar(), "app:1");
    assert!(store.resolve("app:1").is_err());
    assert!(store.resolve("app:2").is_ok());

    // By id prefix: every remaining tag of the image goes, others stay.
    let removed = store.remove(&id.hex()[..10]).unwrap();
    let mut names: Vec<String> = removed
        .iter()
        .map(|e| e.reference.as_ref().unwrap().familiar())
        .collect();
    names.sort();
    assert_eq!(names, ["app:2", "other:latest"]);
    assert_eq!(store.index_entries().unwrap().len(), 1);
    assert!(store.resolve("unrelated").is_ok());

    // Not found names the input.
    let err = store.remove("app:1").unwrap_err();
    assert!(err.is_not_found());
    assert!(err.to_string().contains("app:1"), "{err}");
    let err = store.remove(&id.to_string()).unwrap_err();
    assert!(err.to_string().contains(&id.to_string()), "{err}");

    // Blobs stay until prune.
    assert_eq!(blob_files(dir.path()).len(), 6);
    store.prune().unwrap();
    assert_eq!(blob_files(dir.path()).len(), 3);
}

#[test]
fn list_images_records() {
    let (_dir, store) = store();
    let (m, id) = make_image(&store, "busybox", "b", 1, 2);
    let images = store.list_images().unwrap();
    assert_eq!(images.len(), 1);
    let r = &images[0];
    assert_eq!(
        r.reference.as_ref().unwrap().to_string(),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(r.digest.to_string(), m.digest().to_string());
    assert_eq!(r.manifest_digest, r.digest);
    assert_eq!(r.id, id);
    assert_eq!(r.created.as_deref(), Some("2024-05-01T12:00:00Z"));
    let cfg_size = config_json("b").len() as u64;
    assert_eq!(r.size, cfg_size + 1000 + 1010);
    let p = host_platform();
    assert_eq!(r.platform, format!("{}/{}", p.os(), p.architecture()));
}

#[test]
fn docker_schema2_manifest_parses() {
    let (_dir, store) = store();
    let lease = store.lease().unwrap();
    let layer = store.put_bytes(Some(&lease), &bytes(3, 500)).unwrap();
    // Docker configs carry many fields OCI does not define; they must be tolerated.
    let p = host_platform();
    let cfg = serde_json::to_vec(&json!({
        "architecture": p.architecture().to_string(), "os": "linux",
        "created": "2023-01-01T00:00:00Z", "docker_version": "24.0.0",
        "container_config": {"Hostname": ""}, "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of_bytes(b"x").to_string()]},
    }))
    .unwrap();
    let cfg = store.put_bytes(Some(&lease), &cfg).unwrap();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": {"mediaType": media::DOCKER_CONFIG, "size": cfg.size, "digest": cfg.digest},
        "layers": [{"mediaType": media::DOCKER_LAYER_GZIP, "size": layer.size, "digest": layer.digest}],
    });
    let desc = store
        .put_json(Some(&lease), media::DOCKER_MANIFEST, &manifest)
        .unwrap();
    store
        .tag(&Reference::parse("dock").unwrap(), &desc)
        .unwrap();
    let img = store.resolve("dock").unwrap();
    assert_eq!(img.id, cfg.digest);
    assert_eq!(
        img.manifest.layers()[0].media_type().as_ref(),
        media::DOCKER_LAYER_GZIP
    );
    let config = store.config(img.manifest.config()).unwrap();
    assert_eq!(config.created().as_deref(), Some("2023-01-01T00:00:00Z"));
    assert_eq!(store.list_images().unwrap()[0].id, cfg.digest);
}

#[test]
fn multi_platform_index_selects_host_manifest() {
    let (_dir, store) = store();
    let lease = store.lease().unwrap();
    let host = host_platform();
    let mut entries = Vec::new();
    let mut host_manifest = None;
    for (arch, label) in [
        ("s390x", "s390x"),
        (host.architecture().to_string().as_str(), "host"),
        ("riscv64", "riscv"),
    ] {
        let layer = store
            .put_bytes(Some(&lease), label.as_bytes())
            .unwrap()
            .descriptor(media::OCI_LAYER_GZIP);
        let cfg = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "rootfs": {"type":"layers","diff_ids":[]}})).unwrap();
        let m = write_manifest(&store, Some(&lease), &cfg, &[layer]);
        let mut v = serde_json::to_value(&m).unwrap();
        v["platform"] = json!({"architecture": arch, "os": "linux"});
        if label == "host" {
            host_manifest = Some((m.clone(), Digest::of_bytes(&cfg)));
        }
        entries.push(v);
    }
    // An attestation-like entry without platform is skipped.
    let index = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": entries});
    let idx = store
        .put_json(Some(&lease), media::OCI_INDEX, &index)
        .unwrap();
    store
        .tag(&Reference::parse("multi").unwrap(), &idx)
        .unwrap();
    let (hm, hid) = host_manifest.unwrap();
    let img = store.resolve("multi").unwrap();
    assert_eq!(img.target.digest(), idx.digest());
    assert_eq!(img.manifest_descriptor.digest(), hm.digest());
    assert_eq!(img.id, hid);
    let rec = &store.list_images().unwrap()[0];
    assert_eq!(rec.digest.to_string(), idx.digest().to_string());
    assert_eq!(rec.manifest_digest.to_string(), hm.digest().to_string());
    // Resolving by the platform manifest's digest or the image id also works.
    assert_eq!(store.resolve(hm.digest().as_ref()).unwrap().id, hid);
    // save needs every blob of every platform.
    assert_eq!(store.descriptors_of(&idx).unwrap().len(), 1 + 3 * 3);
    drop(lease);
    assert_eq!(store.prune().unwrap().blobs_removed, 0);
}

#[test]
fn index_without_host_platform_is_a_clear_error() {
    let (_dir, store) = store();
    let lease = store.lease().unwrap();
    let cfg = serde_json::to_vec(&json!({"architecture": "s390x", "os": "linux"})).unwrap();
    let m = write_manifest(&store, Some(&lease), &cfg, &[]);
    let mut v = serde_json::to_value(&m).unwrap();
    v["platform"] = json!({"architecture": "s390x", "os": "linux"});
    let index = json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": [v]});
    let idx = store
        .put_json(Some(&lease), media::OCI_INDEX, &index)
        .unwrap();
    store.tag(&Reference::parse("s390").unwrap(), &idx).unwrap();
    let err = store.resolve("s390").unwrap_err();
    assert!(
        matches!(err, StoreError::NoMatchingPlatform { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("linux/s390x"), "{err}");
}
