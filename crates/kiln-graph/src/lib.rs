//! kiln-graph: the build IR.
//!
//! Owns the build graph — a DAG of [`Vertex`]es, each an [`Op`] (BuildKit's LLB words:
//! [`SourceOp`], [`ExecOp`], [`FileOp`], merge) over input vertices — and each vertex's
//! **canonical digest** (see [`key`] for the encoding and the table of what goes into each
//! op's cache key). Also a stable text dump for golden tests, topological order and
//! reachability.
//!
//! Must not: execute anything, do I/O, or depend on any kiln crate but `kiln-oci`
//! (frontends produce graphs; `kiln-solver` schedules them; `kiln-ops` executes them).

pub mod graph;
pub mod key;
pub mod op;

pub use graph::{Graph, GraphError, SourceSpan, StageRef, Vertex, VertexId, VertexMeta};
pub use key::{canonical_bytes, vertex_digest, KEY_VERSION};
pub use op::{
    CacheSharing, CopyAction, ExecMount, ExecOp, FileAction, FileOp, InputIndex, NetworkMode, Op,
    Platform, SecurityMode, SourceOp,
};

#[cfg(test)]
mod tests;
