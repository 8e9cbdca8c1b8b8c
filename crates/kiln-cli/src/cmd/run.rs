//! `kiln run IMAGE [CMD…]`: one foreground container from an image in the store, in kiln's
//! own sandbox, over a fresh writable layer (kiln-snapshot) on the image's layer snapshots.
//!
//! Exit code: the payload's (128 + n when killed by signal n); 125 when kiln itself fails
//! before the payload starts, like `docker run`. Without `--rm` the container's writable
//! layer stays in `KILN_ROOT/kiln/snapshots/active/<id>/upper` (nothing is printed about
//! it; `kiln prune` reclaims it).

use crate::cli::{RunArgs, RunNetwork};
use anyhow::{bail, Context, Result};
use kiln_sandbox::{Mount, Network, RootFs, Sandbox, Spec, Stdio};
use kiln_snapshot::{ActiveMount, Snapshots};
use kiln_store::Store;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// /etc/passwd and /etc/group come from the (untrusted) image: bounded reads.
const ETC_FILE_LIMIT: u64 = 4 << 20;

pub fn run(store: &Store, a: &RunArgs) -> Result<ExitCode> {
    let img = store.resolve(&a.image)?;
    let config = store
        .image_config(img.manifest.config())
        .with_context(|| format!("config of {}", a.image))?;
    let rc = config.config.clone().unwrap_or_default();

    let snaps = Snapshots::open(store)?;
    let lowers = snaps
        .prepare_image(
            &img.manifest,
            &config,
            &kiln_archive::DecodeLimits::default(),
        )
        .with_context(|| format!("unpacking the layers of {}", a.image))?;
    let mut active = snaps.prepare_active(&lowers)?;

    let args = command_line(a, rc.entrypoint.as_deref(), rc.cmd.as_deref())?;
    let mut env = rc.env.clone().unwrap_or_default();
    for e in &a.env {
        let kv = match e.split_once('=') {
            Some(_) => e.clone(),
            None => match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue, // docker: `-e KEY` with KEY unset passes nothing
            },
        };
        set_env(&mut env, kv);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", kiln_sandbox::DEFAULT_PATH));
    }

    let mount = active.mount()?;
    let user_spec = a.user.clone().or(rc.user.clone()).unwrap_or_default();
    let user = if user_spec.is_empty() {
        (0, 0, Vec::new())
    } else {
        // Read through kiln-snapshot's layered lookup (kiln-fs safe roots): a symlinked
        // /etc/passwd in the image can never make kiln read a host file.
        let read = |p: &str| -> Result<String> {
            let bytes = active.read_file(Path::new(p), ETC_FILE_LIMIT)?;
            Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned())
        };
        kiln_sandbox::resolve_user(&user_spec, &read("etc/passwd")?, &read("etc/group")?)
            .with_context(|| format!("user {user_spec:?} in image {}", a.image))?
    };

    let rootfs = match mount {
        ActiveMount::Overlay {
            lowers,
            upper,
            work,
        } => RootFs::Overlay {
            lowers,
            upper,
            work,
        },
        ActiveMount::Dir(d) => RootFs::Dir(d),
    };
    let mut spec = Spec::new(rootfs, args);
    spec.env = env;
    spec.user = user;
    spec.network = match a.network {
        RunNetwork::Host => Network::Host,
        RunNetwork::None => Network::None,
    };
    if let Some(w) = a
        .workdir
        .clone()
        .or(rc.working_dir.clone())
        .filter(|w| !w.is_empty())
    {
        spec.cwd = w;
        spec.create_cwd = true; // docker creates a missing working directory too
    }
    for v in &a.volumes {
        spec.mounts.push(volume(v)?);
    }

    let sandbox = Sandbox::new(std::env::current_exe().context("locating the kiln binary")?);
    let outcome = sandbox.run(&spec, Stdio::inherit());
    let finish = if a.rm {
        active.remove().map_err(anyhow::Error::from)
    } else {
        active.keep();
        Ok(())
    };
    let outcome = outcome.context("starting the container")?;
    finish?;
    for w in &outcome.warnings {
        tracing::warn!("{w}");
    }
    let code = match (outcome.status.code, outcome.status.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    };
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

/// Entrypoint + Cmd, docker's rules: arguments after the image replace Cmd; `--entrypoint`
/// replaces Entrypoint (as one word) and then also drops the image's Cmd.
fn command_line(
    a: &RunArgs,
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
) -> Result<Vec<String>> {
    let entry: Vec<String> = match &a.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => entrypoint.unwrap_or_default().to_vec(),
    };
    let rest: Vec<String> = if !a.command.is_empty() {
        a.command.clone()
    } else if a.entrypoint.is_some() {
        Vec::new()
    } else {
        cmd.unwrap_or_default().to_vec()
    };
    let args: Vec<String> = entry.into_iter().chain(rest).collect();
    if args.is_empty() {
        bail!("no command specified: the image has no ENTRYPOINT or CMD; give one after the image name");
    }
    Ok(args)
}

fn set_env(env: &mut Vec<String>, kv: String) {
    let key = kv.split('=').next().unwrap_or_default().to_string();
    env.retain(|e| e.split('=').next() != Some(key.as_str()));
    env.push(kv);
}

/// `HOST:CONTAINER[:ro|rw]`; the host side must exist and is canonicalised (it is the
/// caller's own path, trusted), the container side is resolved confined by the sandbox.
fn volume(v: &str) -> Result<Mount> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, target, readonly) = match parts.as_slice() {
        [h, t] => (*h, *t, false),
        [h, t, "ro"] => (*h, *t, true),
        [h, t, "rw"] => (*h, *t, false),
        _ => bail!("invalid volume {v:?}: expected HOST:CONTAINER[:ro]"),
    };
    if !target.starts_with('/') {
        bail!("invalid volume {v:?}: the container path must be absolute");
    }
    let source: PathBuf =
        std::fs::canonicalize(host).with_context(|| format!("volume {v:?}: host path {host:?}"))?;
    Ok(Mount::Bind {
        source,
        target: target.to_string(),
        readonly,
    })
}
