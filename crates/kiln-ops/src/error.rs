use std::path::PathBuf;

/// A failed step. Messages name what failed (the image, the path, the exit code).
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    Store(#[from] kiln_store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] kiln_snapshot::Error),
    #[error(transparent)]
    Sandbox(#[from] kiln_sandbox::Error),
    #[error(transparent)]
    Context(#[from] kiln_context::Error),
    #[error(transparent)]
    Fs(#[from] kiln_fs::Error),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// An imported cache failed while a hit from it was being used (a corrupt or lying
    /// blob, a transport error).
    /// Boxed: it is much larger than the other variants and rare.
    #[error("imported build cache: {0}")]
    CacheImport(Box<kiln_cache::Error>),
    #[error("base image {reference} is not in the local store; add it with `kiln import ROOTFS.tar -t {reference}` or `kiln load -i ARCHIVE.tar`")]
    ImageNotFound { reference: String },
    #[error("image {reference}: {message}")]
    BadImage { reference: String, message: String },
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    ExitCode {
        command: String,
        code: i32,
        /// Last lines of the step's output, for the error report.
        tail: Vec<String>,
    },
    #[error("process \"{command}\" was killed by signal {signal}")]
    Signal {
        command: String,
        signal: i32,
        tail: Vec<String>,
    },
    #[error("unknown build context {name:?} (known: {known})")]
    UnknownContext { name: String, known: String },
    #[error("secret {id:?} is required but was not provided (pass --secret id={id},src=FILE)")]
    MissingSecret { id: String },
    #[error(
        "secret {id:?}: environment variable {var} is not set (from --secret id={id},env={var})"
    )]
    MissingSecretEnv { id: String, var: String },
    #[error("ssh agent or key {id:?} is required but was not provided (pass --ssh {id}=$SSH_AUTH_SOCK or --ssh {id}=KEYFILE)")]
    MissingSsh { id: String },
    #[error(transparent)]
    Ssh(#[from] crate::ssh::SshError),
    #[error("user {user:?}: {message}")]
    User { user: String, message: String },
    /// An `ADD <url>` that could not be downloaded (the message names the limit and flag
    /// when one was hit).
    #[error("ADD {url}: {message}")]
    Remote { url: String, message: String },
    /// Checked before anything is written to the layer.
    #[error(
        "ADD {url}: checksum mismatch: --checksum expects {expected}, the download is {actual}"
    )]
    ChecksumMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("ADD {url} (git): {message}")]
    Git { url: String, message: String },
    #[error("{what} is not supported yet")]
    Unsupported { what: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<kiln_cache::Error> for OpError {
    fn from(e: kiln_cache::Error) -> Self {
        OpError::CacheImport(Box::new(e))
    }
}

impl OpError {
    pub(crate) fn io(
        what: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> OpError {
        let path = path.into();
        move |source| OpError::Io { what, path, source }
    }

    /// The step's last output lines, when it failed by exiting.
    pub fn output_tail(&self) -> &[String] {
        match self {
            OpError::ExitCode { tail, .. } | OpError::Signal { tail, .. } => tail,
            _ => &[],
        }
    }
}
