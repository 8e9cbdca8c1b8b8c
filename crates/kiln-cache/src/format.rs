//! The cache artifact.
//!
//! ```text
//! OCI image manifest (application/vnd.oci.image.manifest.v1+json)
//!   artifactType  application/vnd.kiln.cache.v1
//!   config        application/vnd.kiln.cache.config.v1+json  → CacheConfig (below)
//!   layers        every layer blob a record names (its real layer media type), then one
//!                 gzip tar per exported cache mount; each blob once
//! ```
//!
//! Why an image manifest: a registry stores and garbage-collects its blobs like any image
//! (an index of one manifest per record would cost one request per record), and an OCI
//! layout directory holding it is exactly what a registry push would send.
//!
//! The config:
//!
//! ```json
//! { "version": 1, "keyScheme": "kiln-ops/v1+records-1", "mode": "max",
//!   "records": [ { "key": "sha256:…", "description": "[2/4] RUN make",
//!                  "layers": [ { "digest": "sha256:…", "diffId": "sha256:…" } ],
//!                  "chainId": "sha256:…", "parents": [0], "execSeconds": 1.5 } ],
//!   "mounts":  [ { "idHash": "sha256:…", "digest": "sha256:…",
//!                  "mode": 493, "uid": 0, "gid": 0 } ] }
//! ```
//!
//! - `key` is the step's cache key exactly as kiln-ops computes it; `keyScheme` names the
//!   derivation, and a cache made with another scheme is ignored as a whole.
//! - `layers` are the layers the step *added* on top of its base filesystem (none for a
//!   step that changed nothing); `digest` must be listed in the manifest, whose descriptor
//!   gives size and media type.
//! - `chainId` is the chain id of the step's whole result (base + added layers; absent for
//!   an empty filesystem). The importer recomputes it from its own base and refuses a
//!   record that does not add up.
//! - `parents` link a record to the records that produced its inputs (indices into
//!   `records`). They describe the build graph for tools and for `mode=min` selection;
//!   lookups never follow them — a key is always computed locally.
//! - `mounts` are `RUN --mount=type=cache` directories, named by the sha256 of their id
//!   (ids are user text); `mode`/`uid`/`gid` are the directory's own.

use kiln_oci::Digest;
use serde::{Deserialize, Serialize};

/// `artifactType` of the cache manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.cache.v1";
/// Media type of the config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.cache.config.v1+json";
/// Media type of a cache-mount tar. A standard layer type on purpose: registries that
/// check layer media types accept it, and the config says which blobs are mounts.
pub const MOUNT_MEDIA_TYPE: &str = kiln_oci::media::OCI_LAYER_GZIP;
/// The `org.opencontainers.image.ref.name` of the cache manifest in a layout's index.json.
pub const REF_NAME: &str = "kiln-cache";
/// The ref name the local transport gives the manifest an export replaced, kept (with its
/// blobs) for one more export so that a build importing it lazily can still finish.
pub const PREVIOUS_REF_NAME: &str = "kiln-cache-previous";
/// Bumped when the config format changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    pub version: u32,
    pub key_scheme: String,
    /// `min` or `max`: informational (what the exporter chose).
    pub mode: String,
    pub records: Vec<RecordEntry>,
    #[serde(default)]
    pub mounts: Vec<MountEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordEntry {
    pub key: Digest,
    #[serde(default)]
    pub description: String,
    pub layers: Vec<LayerEntry>,
    #[serde(default)]
    pub chain_id: Option<Digest>,
    #[serde(default)]
    pub parents: Vec<usize>,
    #[serde(default)]
    pub exec_seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerEntry {
    pub digest: Digest,
    pub diff_id: Digest,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MountEntry {
    pub id_hash: Digest,
    pub digest: Digest,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}
