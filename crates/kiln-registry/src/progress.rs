//! What a pull or push reports while it runs. The library never prints (ARCHITECTURE
//! invariant 8); the CLI renders these as progress lines.

use kiln_oci::Digest;

#[derive(Debug, Clone)]
pub enum Event {
    /// A manifest was resolved: what the reference points at.
    Resolved {
        reference: String,
        digest: Digest,
    },
    /// A blob needed no transfer: `why` is "already in the store" / "already in the registry".
    BlobSkipped {
        digest: Digest,
        size: u64,
        why: &'static str,
    },
    BlobStarted {
        digest: Digest,
        size: u64,
    },
    BlobDone {
        digest: Digest,
        size: u64,
    },
    /// Pushed by cross-repository mount from `from` instead of an upload.
    BlobMounted {
        digest: Digest,
        from: String,
    },
    /// A request or transfer is retried (connection cut, 5xx, 429).
    Retry {
        message: String,
    },
    /// A manifest was written to the registry.
    ManifestPushed {
        reference: String,
        digest: Digest,
    },
}

pub type Progress = dyn Fn(Event) + Send + Sync;

/// A progress sink that drops everything.
pub fn quiet() -> &'static Progress {
    &|_| {}
}
