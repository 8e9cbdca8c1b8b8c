//! What a vertex produces.

use kiln_oci::spec::Descriptor;
use kiln_oci::{Digest, ImageConfig};
use kiln_snapshot::SnapshotId;
use std::sync::Arc;

/// One layer of a filesystem: its snapshot (overlay-native content) and its blob.
#[derive(Debug, Clone)]
pub struct LayerRef {
    pub snapshot: SnapshotId,
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// A filesystem as a stack of layers, bottom-most first.
#[derive(Debug, Clone, Default)]
pub struct FsState {
    pub layers: Vec<LayerRef>,
    /// Set for image sources: the image's config, for `COPY --from=image` ownership rules
    /// and for exporting.
    pub image_config: Option<Box<ImageConfig>>,
}

impl FsState {
    pub fn lowers(&self) -> Vec<SnapshotId> {
        self.layers.iter().map(|l| l.snapshot.clone()).collect()
    }

    /// Content identity of the filesystem for cache keys: the chain of its diff_ids (the
    /// same content gives the same identity however it was produced).
    pub fn identity(&self) -> String {
        let diff_ids: Vec<Digest> = self.layers.iter().map(|l| l.diff_id.clone()).collect();
        kiln_snapshot::chain_id(&diff_ids).map_or_else(|| "scratch".to_string(), |d| d.to_string())
    }
}

/// The result of a vertex.
#[derive(Debug, Clone)]
pub enum Output {
    Fs(FsState),
    /// A build context (the default one or a named `--build-context`).
    Context(Arc<kiln_context::Context>),
}

impl Output {
    pub fn identity(&self) -> String {
        match self {
            Output::Fs(s) => s.identity(),
            // A context's content enters keys per COPY (digest of exactly what it reads).
            Output::Context(c) => format!("context:{}", c.source_name()),
        }
    }
}
