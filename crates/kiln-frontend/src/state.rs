//! Per-stage lowering state.

use crate::{BaseImage, LayerStep};
use kiln_dockerfile::scope::StageScope;
use kiln_graph::VertexId;
use kiln_oci::changes::ConfigChange;
use kiln_oci::config::History;
use kiln_oci::ImageConfig;

/// History comment BuildKit writes; kept identical so tools that read it behave the same.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

#[derive(Debug, Clone)]
pub struct StageState {
    pub index: usize,
    pub name: Option<String>,
    pub root: VertexId,
    pub config: ImageConfig,
    pub scope: StageScope,
    pub base: BaseImage,
    pub layers: Vec<LayerStep>,
    /// CMD was set in this stage (a later ENTRYPOINT keeps it).
    pub cmd_set: bool,
    /// Current step (FROM is 1) and total, for progress labels.
    pub step: usize,
    pub total: usize,
    pub no_cache: bool,
}

impl StageState {
    /// `[name 2/5]` (BuildKit uses `stage-N` for unnamed stages).
    pub fn prefix(&self) -> String {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index));
        format!("[{name} {}/{}]", self.step, self.total.max(self.step))
    }

    pub fn workdir(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_string())
    }

    pub fn user(&self) -> String {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default()
    }

    pub fn shell(&self) -> Vec<String> {
        self.config
            .config
            .as_ref()
            .and_then(|c| c.shell.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    /// Metadata-only change: config edit plus an `empty_layer` history entry.
    pub fn apply(&mut self, change: ConfigChange, created_by: String) {
        change.apply(&mut self.config);
        self.history(created_by, false);
    }

    /// Appends a history entry; returns its index.
    pub fn history(&mut self, created_by: String, with_layer: bool) -> usize {
        let created_by = if with_layer {
            format!("{created_by} # buildkit")
        } else {
            created_by
        };
        self.config.history.push(History {
            created_by: Some(created_by),
            comment: Some(HISTORY_COMMENT.to_string()),
            empty_layer: (!with_layer).then_some(true),
            ..Default::default()
        });
        self.config.history.len() - 1
    }

    /// Records a new root produced by a layer-creating step.
    pub fn commit(
        &mut self,
        new_root: VertexId,
        layer_parent: Option<VertexId>,
        created_by: String,
    ) {
        self.commit_layer(new_root, new_root, layer_parent, created_by);
    }

    /// Like [`StageState::commit`] when the layer vertex differs from the new root
    /// (`COPY --link`: the layer is the scratch copy, the root is the merge).
    pub fn commit_layer(
        &mut self,
        new_root: VertexId,
        layer_vertex: VertexId,
        layer_parent: Option<VertexId>,
        created_by: String,
    ) {
        let history_index = self.history(created_by, true);
        self.layers.push(LayerStep {
            vertex: layer_vertex,
            parent: layer_parent,
            history_index,
        });
        self.root = new_root;
    }
}
