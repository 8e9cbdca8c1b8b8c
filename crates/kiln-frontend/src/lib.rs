//! kiln-frontend: Dockerfile → build graph.
//!
//! Owns the lowering of a parsed Dockerfile (`kiln_dockerfile::Parsed`) into a
//! [`kiln_graph::Graph`] plus the final image config of the target stage, with BuildKit's
//! semantics (`frontend/dockerfile/dockerfile2llb/convert.go` is the reference where the
//! Dockerfile documentation is vague). One module per instruction under `instructions/`.
//!
//! Must not: do I/O or execute anything. Base image configs come from the caller's
//! resolver callback; content digests of context files are the executor's business.
//! Depends on `kiln-dockerfile` (syntax, expansion, scoping), `kiln-graph` (the IR),
//! `kiln-oci` (references, configs and `ConfigChange` config edits).

mod error;
mod instructions;
mod lower;
mod state;
mod util;

pub use error::{ErrorKind, FrontendError};
pub use lower::lower;

use kiln_dockerfile::scope::Platform;
use kiln_graph::{Graph, VertexId};
use kiln_oci::{ImageConfig, Reference};
use std::collections::BTreeMap;

/// Resolves a base image reference to its config (the CLI reads the local store).
pub type Resolver<'a> = &'a dyn Fn(&Reference) -> Result<ImageConfig, String>;

/// A `--build-context name=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory; becomes `Source::Context { name }` (the executor maps the name
    /// to the directory).
    Local,
    /// `docker-image://ref`.
    Image(Reference),
}

/// Everything the frontend needs besides the Dockerfile.
pub struct FrontendOptions<'a> {
    /// The Dockerfile text the `Parsed` came from (for line numbers and ONBUILD text).
    pub source: &'a str,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target` (stage name, case-insensitive, or index); default: the last stage.
    pub target: Option<String>,
    /// `--platform`; `None` = host.
    pub platform: Option<Platform>,
    /// Whether a platform other than the host may run (binfmt emulation available).
    pub binfmt_available: bool,
    /// `--build-context name=…`, by name.
    pub build_contexts: BTreeMap<String, NamedContext>,
    /// `--no-cache`: every vertex is marked `ignore_cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) whose vertices ignore the cache.
    pub no_cache_filter: Vec<String>,
    /// `--allow security.insecure`.
    pub allow_insecure: bool,
    /// Base image configs.
    pub resolver: Resolver<'a>,
}

impl<'a> FrontendOptions<'a> {
    /// Defaults: no build-args, last stage, host platform.
    pub fn new(source: &'a str, resolver: Resolver<'a>) -> Self {
        FrontendOptions {
            source,
            build_args: BTreeMap::new(),
            target: None,
            platform: None,
            binfmt_available: false,
            build_contexts: BTreeMap::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            allow_insecure: false,
            resolver,
        }
    }
}

/// One layer the exporter must produce for the target image, in order, after the base
/// image's layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStep {
    /// The vertex whose filesystem holds the change.
    pub vertex: VertexId,
    /// The layer is `vertex` minus `parent` (overlay upper dir of the step); `None` means
    /// all of `vertex` is the layer (`COPY --link` onto scratch).
    pub parent: Option<VertexId>,
    /// Index in `StageResult::config.history` of the entry describing this layer.
    pub history_index: usize,
}

/// Where the target stage's filesystem starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    /// `FROM scratch`.
    Scratch,
    /// An image (its layers come first); the vertex is its `Source::Image`.
    Image {
        reference: Reference,
        vertex: VertexId,
    },
    /// A named build context used as a base (`FROM name` with `--build-context name=dir`):
    /// its whole filesystem is one layer.
    Context { vertex: VertexId },
}

/// The build result of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct StageResult {
    /// The vertex with the stage's final filesystem.
    pub root: VertexId,
    /// The final image config (base config + this build's changes; `rootfs.diff_ids` are
    /// the base image's, to be extended by the exporter; `created` unset).
    pub config: ImageConfig,
    pub base: BaseImage,
    /// Layers this build adds on top of the base, in order.
    pub layers: Vec<LayerStep>,
}

/// A stage of the Dockerfile and whether this build needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSummary {
    pub index: usize,
    pub name: Option<String>,
    /// The FROM reference after expansion (image, stage name or `scratch`).
    pub base: String,
    /// Reachable from the target (lowered); other stages are never built.
    pub built: bool,
}

/// The frontend's output.
#[derive(Debug, Clone)]
pub struct BuildPlan {
    pub graph: Graph,
    pub target: StageResult,
    /// Docker's "build-args were not consumed" warning, if any.
    pub unused_build_args_warning: Option<String>,
    /// Other warnings (e.g. deprecated MAINTAINER), as diagnostics.
    pub warnings: Vec<kiln_dockerfile::Diagnostic>,
    pub stages: Vec<StageSummary>,
}
