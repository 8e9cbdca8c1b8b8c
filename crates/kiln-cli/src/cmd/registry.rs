//! pull, push, login, logout, and the registry side of `kiln build` (base images pulled on
//! demand, `--push`, `--output type=registry`). Glue only: kiln-registry does the work.

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PullPolicy, PushArgs};
use anyhow::{anyhow, bail, Context, Result};
use kiln_oci::spec::ImageManifest;
use kiln_oci::Digest;
use kiln_oci::Reference;
use kiln_registry::{
    Client, Event, PlatformSpec, PullObserver, PullOptions, PushOptions, Selection, Settings,
};
use kiln_snapshot::{PullUnpacker, Snapshots, UnpackOutcome};
use kiln_store::Store;
use std::collections::HashSet;
use std::io::Read;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

/// Registry access for one kiln invocation: transport policy from flags and config file.
pub struct Registries {
    settings: Settings,
    quiet: bool,
}

impl Registries {
    pub fn new(insecure: &[String], quiet: bool) -> Result<Registries> {
        Ok(Registries {
            settings: Settings::load(insecure)?,
            quiet,
        })
    }

    pub fn client(&self, host: &str) -> Result<Client> {
        let quiet = self.quiet;
        let host_owned = host.to_string();
        Ok(
            Client::new(host, &self.settings)?.with_observer(Arc::new(move |m: &str| {
                if !quiet {
                    eprintln!("{host_owned}: {m}");
                }
            })),
        )
    }

    /// Progress lines on stderr (none when quiet). `verb`: what a started blob is doing.
    pub fn progress(&self, verb: &'static str) -> impl Fn(Event) + Send + Sync {
        let quiet = self.quiet;
        move |e: Event| {
            if quiet {
                return;
            }
            match e {
                Event::Resolved { reference, digest } => eprintln!("{reference}: {digest}"),
                Event::BlobSkipped { digest, why, .. } => eprintln!("{}: {why}", short(&digest)),
                Event::BlobStarted { digest, size } => {
                    eprintln!("{}: {verb} {}", short(&digest), human(size))
                }
                Event::BlobDone { digest, .. } => eprintln!("{}: done", short(&digest)),
                Event::BlobMounted { digest, from } => {
                    eprintln!("{}: mounted from {from}", short(&digest))
                }
                Event::Retry { message } => eprintln!("retry: {message}"),
                Event::ManifestPushed { reference, digest } => {
                    eprintln!("pushed {reference} ({digest})")
                }
            }
        }
    }

    /// Pulls `r` into the store; with `unpack`, each layer is unpacked into its snapshot
    /// as soon as its blob is committed, while the others still download, and this returns
    /// once those unpacks are done too.
    pub fn pull(
        &self,
        store: &Store,
        r: &Reference,
        opts: &PullOptions,
        unpack: bool,
    ) -> Result<kiln_registry::Pulled> {
        let client = self.client(r.registry())?;
        let progress = self.progress("downloading");
        let unpacker = if unpack { self.unpacker(store) } else { None };
        let mut opts = opts.clone();
        opts.observer = unpacker.clone().map(|u| u as Arc<dyn PullObserver>);
        let pulled = kiln_registry::pull_image(store, &client, r, &opts, &progress)
            .with_context(|| format!("pull {}", r.familiar()));
        if let Some(u) = unpacker {
            // On failure the queued unpacks are dropped; verified layers already unpacked
            // stay (a snapshot is keyed by content, and prune removes unused ones).
            u.0.finish(pulled.is_err());
        }
        pulled
    }

    /// kiln-snapshot's pull unpacker, fed by kiln-registry's per-blob callback. None (the
    /// build unpacks lazily, as before) when the snapshot directory cannot be opened.
    fn unpacker(&self, store: &Store) -> Option<Arc<Unpack>> {
        let snapshots = match Snapshots::open(store) {
            Ok(s) => s,
            Err(e) => {
                if !self.quiet {
                    eprintln!("not unpacking while pulling: {e}");
                }
                return None;
            }
        };
        let quiet = self.quiet;
        // Unpacking is CPU-bound (inflate, sha256 of the tar, file creation); more workers
        // than cores only slow the downloads down.
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        // The limits a build's own unpack of a base layer uses, so this never refuses a
        // layer the build would take.
        let limits = kiln_archive::DecodeLimits::default();
        let report = move |o: &UnpackOutcome| {
            if quiet {
                return;
            }
            match o {
                UnpackOutcome::Unpacked { blob, .. } => eprintln!("{}: unpacked", short(blob)),
                UnpackOutcome::Present { .. } => {}
                UnpackOutcome::Failed { blob, error } => eprintln!(
                    "{}: not unpacked ({error}); a build unpacks it when it needs it",
                    short(blob)
                ),
            }
        };
        Some(Arc::new(Unpack(PullUnpacker::start(
            snapshots, workers, limits, report,
        ))))
    }

    /// Pushes the stored image `source` to `dest`.
    pub fn push(
        &self,
        store: &Store,
        source: &str,
        dest: &Reference,
        opts: &PushOptions,
    ) -> Result<kiln_oci::Digest> {
        let image = store
            .resolve(source)
            .with_context(|| format!("push {source}"))?;
        let client = self.client(dest.registry())?;
        let progress = self.progress("uploading");
        kiln_registry::push_image(store, &client, &image, dest, opts, &progress)
            .with_context(|| format!("push {}", dest.familiar()))
    }
}

/// The glue between the crates: kiln-registry tells what is committed, kiln-snapshot
/// unpacks it (neither depends on the other).
struct Unpack(PullUnpacker);

impl PullObserver for Unpack {
    fn manifest(&self, digest: &Digest, manifest: &ImageManifest) {
        self.0.manifest(digest, manifest)
    }
    fn blob_ready(&self, manifest: &Digest, blob: &Digest) {
        self.0.blob_ready(manifest, blob)
    }
}

fn short(d: &Digest) -> String {
    d.hex().chars().take(12).collect()
}

fn human(n: u64) -> String {
    const U: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

fn parse_platform(p: Option<&str>) -> Result<PlatformSpec> {
    match p {
        None => Ok(PlatformSpec::host()),
        Some(s) => PlatformSpec::parse(s)
            .ok_or_else(|| anyhow!("--platform {s:?}: expected os/arch[/variant]")),
    }
}

pub fn pull(store: &Store, a: &PullArgs, insecure: &[String]) -> Result<ExitCode> {
    let r = Reference::parse(&a.reference).with_context(|| format!("pull {}", a.reference))?;
    let regs = Registries::new(insecure, a.quiet)?;
    let opts = PullOptions {
        selection: Selection::Platform(parse_platform(a.platform.as_deref())?),
        max_manifest_size: a.limits.max_manifest_size,
        ..PullOptions::default()
    };
    let pulled = regs.pull(store, &r, &opts, !a.no_unpack)?;
    if a.quiet {
        println!("{}", pulled.digest);
    } else {
        eprintln!("Digest: {}", pulled.digest);
        println!("{}", r.familiar());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn push(store: &Store, a: &PushArgs, insecure: &[String]) -> Result<ExitCode> {
    let dest_text = a.destination.as_deref().unwrap_or(&a.source);
    let dest = Reference::parse(dest_text).with_context(|| format!("push {dest_text}"))?;
    let regs = Registries::new(insecure, a.quiet)?;
    if a.chunk_size == 0 {
        bail!("--chunk-size must be at least 1 byte");
    }
    let opts = PushOptions {
        chunk_size: a.chunk_size,
        ..PushOptions::default()
    };
    let digest = regs.push(store, &a.source, &dest, &opts)?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

pub fn login(a: &LoginArgs, insecure: &[String]) -> Result<ExitCode> {
    let host = registry_host(&a.host)?;
    let mut password = String::new();
    std::io::stdin()
        .take(64 << 10)
        .read_to_string(&mut password)
        .context("read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!("login {host}: the password on standard input is empty");
    }
    let settings = Settings::load(insecure)?;
    let cred = kiln_registry::Credential::Basic {
        username: a.username.clone(),
        password: password.clone(),
    };
    Client::new(&host, &settings)?
        .with_credential(Some(cred))
        .check_login()
        .with_context(|| format!("login {host} as {}", a.username))?;
    let stored = kiln_registry::auth::save_login(&host, &a.username, &password)
        .with_context(|| format!("login {host}"))?;
    eprintln!("credentials stored in {stored}");
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub fn logout(a: &LogoutArgs) -> Result<ExitCode> {
    let host = registry_host(&a.host)?;
    let removed =
        kiln_registry::auth::remove_login(&host).with_context(|| format!("logout {host}"))?;
    if let Some(from) = removed {
        eprintln!("credentials removed from {from}");
        println!("Removing login credentials for {host}");
    } else {
        eprintln!("Not logged in to {host}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `https://host:port/` or `host:port` → `host:port`, checked like a reference's registry.
fn registry_host(input: &str) -> Result<String> {
    let h = input
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let r = Reference::parse(&format!("{h}/x"))
        .map_err(|_| anyhow!("{input:?} is not a registry host (host[:port])"))?;
    if r.registry() != h && !(r.registry() == "docker.io" && h.ends_with("docker.io")) {
        bail!("{input:?} is not a registry host (host[:port])");
    }
    Ok(r.registry().to_string())
}

/// Base images for `kiln build`: resolved from the store, pulled by policy. Each reference
/// is pulled at most once per build.
pub struct BasePuller<'a> {
    pub store: &'a Store,
    pub policy: PullPolicy,
    pub regs: Registries,
    pub opts: PullOptions,
    done: Mutex<HashSet<Reference>>,
}

impl<'a> BasePuller<'a> {
    pub fn new(store: &'a Store, policy: PullPolicy, regs: Registries, opts: PullOptions) -> Self {
        BasePuller {
            store,
            policy,
            regs,
            opts,
            done: Mutex::new(HashSet::new()),
        }
    }

    /// Makes sure `r` is in the store according to the policy. Errors are strings for the
    /// frontend's resolver callback.
    pub fn ensure(&self, r: &Reference) -> std::result::Result<(), String> {
        if self.done.lock().unwrap().contains(r) {
            return Ok(());
        }
        let present = match self.store.resolve(&r.to_string()) {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.to_string()),
        };
        let pull = match self.policy {
            PullPolicy::Always => true,
            PullPolicy::Missing => !present,
            PullPolicy::Never => false,
        };
        if pull {
            // Unpacked while downloading: the FROM step then finds every snapshot.
            self.regs
                .pull(self.store, r, &self.opts, true)
                .map_err(|e| format!("{e:#}"))?;
        } else if !present {
            return Err(format!(
                "base image {} is not in the local store (and --pull never forbids pulling it)",
                r.familiar()
            ));
        }
        self.done.lock().unwrap().insert(r.clone());
        Ok(())
    }
}
