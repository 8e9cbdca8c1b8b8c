//! Canonical vertex digests.
//!
//! A vertex digest is `sha256( "kiln-graph/v1\n" || canonical_json(op) || "\n" ||
//! input_digest_0 || "\n" || input_digest_1 || … )`, where `canonical_json` is the
//! `serde_json` compact encoding of [`crate::Op`] (struct fields in declaration order, enum
//! variants by snake_case name, no maps other than `BTreeMap`, so the same op always gives the
//! same bytes) and each input digest is the `sha256:<hex>` string of that input vertex.
//! Identical op + identical inputs → identical digest, which is how the solver deduplicates.
//!
//! The digest is the **static** half of a cache key: everything the Dockerfile and the
//! build options decide. The **dynamic** half is added by the executor at run time, because
//! only it can see content: the executor's cache key for a vertex is
//! `digest(vertex) + dynamic inputs` as listed below.
//!
//! | op | static key (this digest) | dynamic part (executor) | never in any key |
//! | --- | --- | --- | --- |
//! | `Source::Image` | normalised reference, platform | resolved manifest digest (unless the reference pins one) | registry credentials |
//! | `Source::Context` | context name, include and exclude patterns | content digests (sha256 of bytes + mode/owner/link target) of exactly the included files after `.dockerignore` | mtimes, atimes, inode numbers, files not included |
//! | `Source::Scratch` | the word `scratch` | — | — |
//! | `Exec` | root input digest, args (shell-wrapped), env (ENV + declared ARGs with a value, in order), cwd, user string, network, security, every mount (type, target, cache id/sharing/uid/gid/mode, secret/ssh id and options, tmpfs size, bind source + the bound input's digest) | — | proxy build-args (`HTTP_PROXY`… — `proxy_env` is `serde(skip)`, like BuildKit's ProxyEnv); secret values; ssh agent keys; cache-mount contents; undeclared build-args |
//! | `File::Copy` | input digests (root + from), sources, dest, chown/chmod as written, every flag | the content of `from` reaches the key through the `from` input's key (a context source's content digests) | mtimes of copied files |
//! | `File::Mkfile` | path, sha256 of data, mode, chown | — | — |
//! | `File::Mkdir` | path, mode, parents, chown (USER as written) | — | — |
//! | `File::AddUrl` | url, dest, checksum, chown/chmod, unpack, exclude | with `--checksum`: the checksum, so a hit needs no request (a miss downloads and verifies before writing); without: the sha256 of the content, downloaded by this build or vouched for by a `304 Not Modified` to `If-None-Match` with the ETag of kiln's last download of that URL | ETag, Last-Modified, the time of the download |
//! | `File::AddGit` | url, `#ref:subdir`, dest, keep-git-dir, checksum, chown/chmod, exclude | the commit the ref resolves to now (`git ls-remote`, on every build) | the fetch time (file mtimes are the commit time) |
//!
//! Remote sources are re-checked on every build, as BuildKit does: an `ADD <url>` without
//! `--checksum` is requested again (conditionally, when the last download came with an
//! ETag; `kiln/cache/http/` remembers ETag → digest) and hits the cache only when the
//! content is the same. The ETag is trusted only for the key: when a miss then needs the
//! bytes and they do not hash to the digest the 304 vouched for, the build fails before
//! writing anything and the ETag is forgotten. An `ADD <git>` hits only while its ref still
//! names the same commit. Pin with `--checksum` (URL) or a commit id (git) to build
//! without the network.
//! | `Merge` | the input digests in order | — | — |
//! | metadata-only (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, USER, VOLUME, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER, ARG) | **no vertex at all**: they change only the image config, which is assembled after the solve | — | — |
//!
//! Why ARG values appear only where used: an ARG with a value becomes part of the RUN
//! environment (BuildKit passes declared ARGs to RUN as env), so it is in every later RUN's
//! key whether the command reads it or not — exactly BuildKit's behaviour. COPY/ADD/WORKDIR
//! see an ARG only through the expanded words, so a changed ARG that the instruction does
//! not reference leaves their key unchanged. Undeclared build-args never reach a key.
//!
//! Vertex metadata (`description`, stage, source span, `ignore_cache`) is **not** hashed:
//! renaming a stage or moving a line does not invalidate the cache.

use crate::op::Op;
use kiln_oci::Digest;

/// Version prefix of the canonical encoding. Bump it whenever the encoding of any op
/// changes, so old cache records can never match new vertices by accident.
pub const KEY_VERSION: &str = "kiln-graph/v1";

/// The exact bytes hashed for a vertex (exposed for debugging and tests).
pub fn canonical_bytes(op: &Op, input_digests: &[&Digest]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(KEY_VERSION.as_bytes());
    out.push(b'\n');
    // Serialising these plain data types cannot fail (no maps with non-string keys,
    // no custom errors); fall back to an impossible-to-collide marker rather than panic.
    match serde_json::to_vec(op) {
        Ok(json) => out.extend_from_slice(&json),
        Err(e) => out.extend_from_slice(format!("!unserialisable:{e}").as_bytes()),
    }
    for d in input_digests {
        out.push(b'\n');
        out.extend_from_slice(d.to_string().as_bytes());
    }
    out
}

/// The canonical digest of `op` over inputs with the given digests (in input order).
pub fn vertex_digest(op: &Op, input_digests: &[&Digest]) -> Digest {
    Digest::of_bytes(&canonical_bytes(op, input_digests))
}
