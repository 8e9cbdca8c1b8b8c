//! Interoperability: the store is an OCI layout that skopeo (and umoci) can read.
mod common;

use common::*;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn skopeo_inspects_layout() {
    if !have("skopeo") {
        eprintln!("note: skopeo not installed; skipping layout interoperability test");
        return;
    }
    let (dir, store) = store();
    let (m, id) = make_image(&store, "busybox", "b", 1, 2);
    make_image(&store, "localhost:5000/team/app:v1", "app", 2, 1);
    let target = format!(
        "oci:{}:docker.io/library/busybox:latest",
        dir.path().display()
    );
    let out = Command::new("skopeo")
        .args(["inspect", &target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {target}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], m.digest().to_string());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Created"], "2024-05-01T12:00:00Z");

    let out = Command::new("skopeo")
        .args(["inspect", "--config"])
        .arg(format!(
            "oci:{}:localhost:5000/team/app:v1",
            dir.path().display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = kiln_oci::Digest::of_bytes(&std::fs::read(store.blob_path(&id)).unwrap());
    assert_eq!(raw, id);
}

#[test]
fn umoci_lists_tags() {
    if !have("umoci") {
        eprintln!("note: umoci not installed; skipping");
        return;
    }
    let (dir, store) = store();
    make_image(&store, "busybox", "b", 1, 1);
    let out = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("docker.io/library/busybox:latest"), "{text}");
}
