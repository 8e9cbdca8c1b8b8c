//! kiln-context: the build context and the file semantics of COPY / ADD.
//!
//! Owns: loading `.dockerignore` for a context, walking the context without following
//! symlinks, content digests of exactly the files a COPY reads (the cache key input),
//! the persistent stat cache that avoids re-hashing unchanged files, manifests that
//! explain which file changed, and executing COPY / ADD / heredoc / WORKDIR file
//! operations between two [`kiln_fs::SafeRoot`]s with BuildKit's rules.
//!
//! Must not: resolve untrusted paths other than through `kiln-fs` (every open, stat and
//! create goes through a `SafeRoot`), schedule or cache operations (that is the solver's
//! and kiln-ops' job), parse Dockerfiles, or print anything.

mod chmod;
mod context;
mod copy;
mod digest;
mod error;
mod follow;
mod parallel;
mod statcache;
mod unpack;
mod walk;
mod wildcard;

pub use chmod::Chmod;
pub use context::{Context, DigestRequest};
pub use copy::{copy_into, mkdir_p_owned, write_heredoc_file, CopyOpts, CopyReport};
pub use digest::{diff, Change, DigestOpts, FileDigest, SourceDigest, SourceManifest};
pub use error::Error;
pub use statcache::{StatCache, StatCacheStats};
pub use walk::{WalkEntry, WalkKind};
pub use wildcard::{has_wildcards, match_pattern};
