//! Command-line grammar. Flag names here are the public interface: keep them stable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Build OCI container images: no daemon, no root, no registry required"
)]
pub struct Cli {
    /// Store directory (default: $KILN_ROOT, else /var/lib/kiln as root, else $XDG_DATA_HOME/kiln)
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log filter for diagnostics on stderr (e.g. debug, kiln_store=trace); also $KILN_LOG
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Allow plain HTTP to this registry (HOST or HOST:PORT; repeatable). Loopback hosts are
    /// always allowed; others can also be listed in kiln's config.json `insecureRegistries`
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub insecure_registries: Vec<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(Box<BuildArgs>),
    /// Run a command in a new container from an image (foreground; exit code passed through)
    Run(Box<RunArgs>),
    /// List images in the store
    Images(ImagesArgs),
    /// Show an image's manifest and config as JSON
    Inspect(InspectArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Remove image names (and images by id)
    Rmi(RmiArgs),
    /// Remove blobs no image references; prints the bytes freed
    Prune(PruneArgs),
    /// Re-hash every blob and check that every referenced blob exists
    Fsck(FsckArgs),
    /// Make a one-layer image from a root filesystem tarball
    Import(ImportArgs),
    /// Write images to a docker-archive or oci-archive tarball
    Save(SaveArgs),
    /// Read images from a docker-archive or oci-archive tarball
    Load(LoadArgs),
    /// Lint a Dockerfile
    Check(CheckArgs),
    /// Fetch an image from a registry into the store
    Pull(PullArgs),
    /// Send an image from the store to a registry
    Push(PushArgs),
    /// Store credentials for a registry (in $REGISTRY_AUTH_FILE or ~/.docker/config.json)
    Login(LoginArgs),
    /// Remove stored credentials for a registry
    Logout(LogoutArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RegistryLimitArgs {
    /// Largest manifest or index accepted from a registry, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = kiln_registry::DEFAULT_MAX_MANIFEST)]
    pub max_manifest_size: u64,
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image reference (`registry/repo:tag` or `registry/repo@sha256:…`)
    pub reference: String,
    /// Platform to select from a multi-platform image (default: the host's)
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,
    /// Only download: leave the layers packed until a build or `kiln run` first uses them
    /// (by default each layer is unpacked into its snapshot as soon as it has arrived)
    #[arg(long)]
    pub no_unpack: bool,
    #[command(flatten)]
    pub limits: RegistryLimitArgs,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// Image in the store (reference or id)
    pub source: String,
    /// Destination reference (default: SOURCE, which must then name a registry)
    pub destination: Option<String>,
    /// Upload blobs larger than this in chunks of this size, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub chunk_size: u64,
    /// Print only the manifest digest
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host (`host[:port]`)
    pub host: String,
    #[arg(short, long)]
    pub username: String,
    /// Read the password from standard input (the only way: never on the command line)
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    /// Registry host (`host[:port]`)
    pub host: String,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull every base image, even when the store has it
    Always,
    /// Pull base images the store lacks
    Missing,
    /// Never pull; a missing base image is an error
    Never,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Only print image ids
    #[arg(short, long)]
    pub quiet: bool,
    /// Show full image ids
    #[arg(long)]
    pub no_trunc: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Image reference, image id (or unique prefix) or manifest digest
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Delete blobs whose content does not match their digest
    #[arg(long)]
    pub remove_corrupt: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
}

/// Bounds on untrusted archives; each error names the flag that raises its limit.
#[derive(Args, Debug, Clone)]
pub struct LimitArgs {
    /// Largest uncompressed size of one layer or archive, in bytes
    #[arg(long, value_name = "BYTES")]
    pub max_layer_size: Option<u64>,
    /// Largest ratio of decompressed to compressed bytes
    #[arg(long, value_name = "RATIO")]
    pub max_decompression_ratio: Option<u64>,
    /// Most entries in one layer or archive
    #[arg(long, value_name = "N")]
    pub max_layer_entries: Option<u64>,
    /// Longest path name inside an archive, in bytes
    #[arg(long, value_name = "BYTES")]
    pub max_path_length: Option<usize>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    Gzip,
    Zstd,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// Root filesystem tarball (plain, gzip or zstd); `-` reads standard input
    pub file: String,
    /// Name of the new image
    #[arg(short = 't', long = "tag", required = true)]
    pub tags: Vec<String>,
    /// Dockerfile instruction applied to the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL,
    /// ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Commit message, recorded in the image history
    #[arg(short, long)]
    pub message: Option<String>,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompression,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    /// Output file (`-` for standard output)
    #[arg(short, long, required = true)]
    pub output: String,
    #[arg(long, value_enum, default_value = "docker")]
    pub format: ArchiveFormat,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// Input archive (`-` for standard input)
    #[arg(short, long, default_value = "-")]
    pub input: String,
    /// Only print loaded image names
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Path to the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Exit 1 when there are warnings
    #[arg(long)]
    pub strict: bool,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Explain a rule and exit
    #[arg(long, value_name = "RULE")]
    pub explain: Option<String>,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Build context directory
    pub context: PathBuf,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name and optionally a tag for the image (repeatable)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Build-time variable KEY=VALUE (KEY alone takes the value from the environment)
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build this stage and what it needs (default: the last stage)
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the build cache for these stages (repeatable)
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Progress output
    #[arg(long, value_enum, default_value = "auto")]
    pub progress: crate::progress::ProgressMode,
    /// Output destination: type=image (default), type=docker|oci,dest=FILE, type=oci,dest=DIR,tar=false,
    /// type=local,dest=DIR, type=tar,dest=FILE; a bare path means type=local,dest=PATH
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Write the image id to this file
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (image digest, config digest, names) as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Set a label on the image KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Print only the image id
    #[arg(short, long)]
    pub quiet: bool,
    /// Steps run at once (default: the number of cores)
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Layer compression
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompression,
    /// Reproducible image: timestamps from SOURCE_DATE_EPOCH, else the context's git commit
    /// time, else 0
    #[arg(long)]
    pub reproducible: bool,
    /// Default network of RUN steps: default|host|none
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Target platform (only the host platform, or one with a registered binfmt handler)
    #[arg(long)]
    pub platform: Option<String>,
    /// Allow an entitlement (security.insecure)
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR (repeatable)
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// SSH agent or keys for RUN --mount=type=ssh: ID (agent at $SSH_AUTH_SOCK),
    /// ID=SOCKET, or ID=KEYFILE[,KEYFILE…] (ed25519, served by kiln) (repeatable)
    #[arg(long = "ssh", value_name = "ID[=SOCKET|KEYFILE]")]
    pub ssh: Vec<String>,
    /// When a RUN step fails: `error` reports it; `shell` then runs /bin/sh in the failed
    /// step's filesystem with its environment, user, workdir and mounts (interactive on a
    /// terminal; with piped stdin the piped commands run there)
    #[arg(long = "on-error", value_enum, default_value = "error")]
    pub on_error: OnError,
    /// Extra build context NAME=DIR, NAME=docker-image://REF (local store) or
    /// NAME=oci-layout://DIR[:TAG|@DIGEST], usable in FROM and COPY --from (repeatable)
    #[arg(long = "build-context", value_name = "NAME=SOURCE")]
    pub build_contexts: Vec<String>,
    /// Largest download of one ADD <url> or git checkout, in bytes (default 4 GiB)
    #[arg(long, value_name = "BYTES")]
    pub max_download_size: Option<u64>,
    /// Export the build cache: type=local,dest=DIR[,mode=min|max][,mounts=true] or
    /// type=registry,ref=REF[,…] (repeatable)
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// Import a build cache: type=local,src=DIR[,mounts=false] or type=registry,ref=REF
    /// (repeatable; looked up in order after the local cache)
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// When to pull base images (FROM, COPY --from=IMAGE) from their registry
    #[arg(long, value_enum, default_value = "missing")]
    pub pull: PullPolicy,
    /// Push the image to the registry of each -t name after the build
    #[arg(long)]
    pub push: bool,
    #[command(flatten)]
    pub registry_limits: RegistryLimitArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Report the failure and stop
    Error,
    /// Open a shell in the failed step's filesystem, then report the failure
    Shell,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunNetwork {
    /// Share the host's network
    Host,
    /// Only a loopback interface
    None,
}

#[derive(Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct RunArgs {
    /// Set an environment variable (KEY=VALUE, or KEY to take the value from kiln's environment)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid) and optional group, resolved from the image's /etc/passwd and /etc/group
    #[arg(short = 'u', long = "user", value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Bind mount a host path: HOST:CONTAINER[:ro]
    #[arg(short = 'v', long = "volume", value_name = "HOST:CONTAINER[:ro]")]
    pub volumes: Vec<String>,
    /// Remove the container's writable layer when it exits (otherwise it stays under
    /// KILN_ROOT/kiln/snapshots/active/<id>/upper until `kiln prune`)
    #[arg(long)]
    pub rm: bool,
    /// Network mode
    #[arg(long, value_enum, default_value = "host")]
    pub network: RunNetwork,
    /// Override the image's ENTRYPOINT (an empty string clears it)
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Accepted for docker compatibility; stdin is always inherited
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Accepted for docker compatibility; no pseudo-terminal is allocated
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Image reference or id
    pub image: String,
    /// Command and arguments (replace the image's CMD)
    #[arg(allow_hyphen_values = true)]
    pub command: Vec<String>,
}
