//! Typed registry errors. Every variant names the registry host or reference it concerns;
//! none carries a credential (usernames at most), because errors end up in logs.

use kiln_oci::{Digest, ReferenceError};
use kiln_store::StoreError;

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{host}: {message}")]
    Transport { host: String, message: String },
    #[error("{host}: {method} {path} answered HTTP {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        host: String,
        method: &'static str,
        path: String,
        status: u16,
        detail: Option<String>,
    },
    #[error("{host}: authentication required for {path} (run `kiln login {host}`){}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Unauthorized {
        host: String,
        path: String,
        detail: Option<String>,
    },
    #[error("{reference}: not found in registry {host}")]
    NotFound { host: String, reference: String },
    #[error("{host}: manifest for {reference} is larger than the limit of {limit} bytes (raise it with --max-manifest-size)")]
    ManifestTooLarge {
        host: String,
        reference: String,
        limit: u64,
    },
    #[error("{host}: manifest for {reference}: {message}")]
    BadManifest {
        host: String,
        reference: String,
        message: String,
    },
    #[error("{host}: blob {digest} of {reference} failed verification: {message}")]
    BlobRejected {
        host: String,
        reference: String,
        digest: Digest,
        message: String,
    },
    #[error("{host}: the token realm {realm_host} is on another host; kiln does not send credentials or follow token realms off the registry's host")]
    ForeignRealm { host: String, realm_host: String },
    #[error("{host}: cannot parse the authentication challenge {challenge:?}")]
    BadChallenge { host: String, challenge: String },
    #[error("{host}: the token server answered without a token")]
    NoToken { host: String },
    #[error("{host}: too many redirects for {path}")]
    TooManyRedirects { host: String, path: String },
    #[error("{host}: refusing plain HTTP to {target}; only localhost and hosts given with --insecure-registry (or in kiln's config file) may use it")]
    InsecureRefused { host: String, target: String },
    #[error("credential helper docker-credential-{helper} for {host}: {message}")]
    CredentialHelper {
        helper: String,
        host: String,
        message: String,
    },
    #[error("auth file {path}: {message}")]
    AuthFile { path: String, message: String },
    #[error("kiln config {path}: {message}")]
    Config { path: String, message: String },
    #[error("CA certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("{reference}: {message}")]
    Unsupported { reference: String, message: String },
    #[error(
        "{reference}: the manifest's digest is {actual}, not the {expected} the reference pins"
    )]
    DigestMismatch {
        reference: String,
        expected: Digest,
        actual: Digest,
    },
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// True when the image or blob asked for does not exist (not-found exit code, and the
    /// build's "not in the store" path).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }
}
