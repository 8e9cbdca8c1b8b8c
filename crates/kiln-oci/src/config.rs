//! The image configuration, as kiln reads and writes it.
//!
//! Why not `oci_spec::image::ImageConfiguration`: its `Config` has no `Healthcheck`,
//! `OnBuild`, `Shell` or `ArgsEscaped` (Docker fields every builder keeps), drops unknown
//! fields, and serialises labels and ports from a `HashMap`, so the same config could hash
//! differently from run to run. Here every map is a `BTreeMap` (sorted keys → the same bytes
//! for the same value) and unknown fields survive a round trip in `extra`.
//!
//! Configs read from elsewhere are stored byte-for-byte; this type is only used to build new
//! ones or to read fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `map[string]struct{}` in Go: a set of keys serialised as `{"k":{}}`.
pub type KeySet = BTreeMap<String, EmptyObject>;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(rename = "os.version", skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Execution defaults (`config` in the image config).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<KeySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<KeySet>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Docker's health check; durations in nanoseconds as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<crate::Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl ImageConfig {
    /// Canonical bytes: compact JSON with struct fields in declaration order and sorted maps.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("image config serialises")
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn run_config_mut(&mut self) -> &mut RunConfig {
        self.config.get_or_insert_with(RunConfig::default)
    }
}

/// The platform this process runs on, in OCI (GOARCH) words.
pub fn host_platform() -> (&'static str, &'static str, Option<&'static str>) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    };
    let variant = match arch {
        "arm64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    };
    ("linux", arch, variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_unknown_fields_and_docker_extras() {
        let src = r#"{"architecture":"amd64","os":"linux","config":{"Env":["A=b"],"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000},"OnBuild":["RUN x"],"Custom":1},"rootfs":{"type":"layers","diff_ids":[]},"container":"abc"}"#;
        let c = ImageConfig::from_slice(src.as_bytes()).unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().on_build.as_ref().unwrap()[0],
            "RUN x"
        );
        let again = String::from_utf8(c.to_bytes()).unwrap();
        assert!(again.contains(r#""Custom":1"#), "{again}");
        assert!(again.contains(r#""container":"abc""#), "{again}");
        assert!(again.contains(r#""Healthcheck":{"Test":["CMD","true"],"Interval":1000000000}"#));
    }

    #[test]
    fn maps_serialise_sorted() {
        let mut c = ImageConfig::default();
        let rc = c.run_config_mut();
        let mut labels = BTreeMap::new();
        labels.insert("z".to_string(), "1".to_string());
        labels.insert("a".to_string(), "2".to_string());
        rc.labels = Some(labels);
        let s = String::from_utf8(c.to_bytes()).unwrap();
        assert!(s.find("\"a\"").unwrap() < s.find("\"z\"").unwrap());
    }
}
