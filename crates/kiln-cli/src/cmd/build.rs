//! `kiln build`: Dockerfile → plan (frontend) → parallel solve (solver + ops) → image
//! (export). This module is glue: every decision lives in a library.

use crate::cli::{BuildArgs, LayerCompression, OnError};
use crate::progress::{FailureInfo, Progress, ProgressMode};
use anyhow::{anyhow, bail, Context as _, Result};
use kiln_dockerfile::scope::Platform;
use kiln_export::{ConfigChange, Layer, Output as BuildOutput};
use kiln_frontend::{FrontendOptions, NamedContext};
use kiln_oci::{Digest, ImageConfig, Reference};
use kiln_ops::{ExecOptions, Executor, OpError, Output, SecretSource};
use kiln_snapshot::CommitOptions;
use kiln_solver::{Job, SolveError};
use kiln_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

pub fn build(store: &Store, a: &BuildArgs, insecure: &[String]) -> Result<ExitCode> {
    let context_dir = std::fs::canonicalize(&a.context)
        .with_context(|| format!("build context {}", a.context.display()))?;
    let dockerfile = a
        .file
        .clone()
        .unwrap_or_else(|| context_dir.join("Dockerfile"));
    let src = std::fs::read_to_string(&dockerfile)
        .with_context(|| format!("cannot read Dockerfile {}", dockerfile.display()))?;
    let file_label = dockerfile.display().to_string();
    let parsed = kiln_dockerfile::parse(&src);
    if parsed.has_errors() {
        for d in &parsed.diagnostics {
            eprintln!("{}", kiln_dockerfile::render(d, &file_label, &src));
        }
        bail!("{file_label} has syntax errors");
    }

    let outputs = a
        .outputs
        .iter()
        .map(|o| kiln_export::parse_output(o))
        .collect::<Result<Vec<_>, _>>()?;
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("-t {t}")))
        .collect::<Result<Vec<_>>>()?;
    let build_args = parse_build_args(&a.build_args);
    let named = parse_build_contexts(store, &a.build_contexts)?;
    let secrets = parse_secrets(&a.secrets)?;
    let ssh = parse_ssh(&a.ssh)?;
    let cache_args = super::build_cache::parse(&a.cache_from, &a.cache_to)?;

    if a.push && tags.is_empty() {
        bail!("--push needs at least one -t NAME to push to");
    }
    let push_refs: Vec<Reference> = outputs
        .iter()
        .filter_map(|o| match o {
            BuildOutput::Registry(name) => Some(
                Reference::parse(name)
                    .with_context(|| format!("--output type=registry,name={name}")),
            ),
            _ => None,
        })
        .collect::<Result<_>>()?;
    let base_platform = match &a.platform {
        Some(p) => kiln_registry::PlatformSpec::parse(p)
            .ok_or_else(|| anyhow!("--platform {p:?}: expected os/arch[/variant]"))?,
        None => kiln_registry::PlatformSpec::host(),
    };
    let puller = super::registry::BasePuller::new(
        store,
        a.pull,
        super::registry::Registries::new(insecure, a.quiet)?,
        kiln_registry::PullOptions {
            selection: kiln_registry::Selection::Platform(base_platform),
            max_manifest_size: a.registry_limits.max_manifest_size,
            ..kiln_registry::PullOptions::default()
        },
    );
    // FROM: the frontend asks for each base image's config; pull it first when the policy
    // says so, so the executor later finds it in the store.
    let resolver = |r: &Reference| -> Result<ImageConfig, String> {
        puller.ensure(r)?;
        base_config(store, r)
    };
    let mut fopts = FrontendOptions::new(&src, &resolver);
    fopts.build_args = build_args;
    fopts.target = a.target.clone();
    fopts.no_cache = a.no_cache;
    fopts.no_cache_filter = a.no_cache_filter.clone();
    fopts.allow_insecure = a.allow.iter().any(|x| x == "security.insecure");
    fopts.build_contexts = named
        .iter()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    if let Some(p) = &a.platform {
        let platform = Platform::parse(p)
            .ok_or_else(|| anyhow!("--platform {p:?}: expected os/arch[/variant]"))?;
        fopts.binfmt_available = binfmt_available(&platform);
        fopts.platform = Some(platform);
    }
    let plan = match kiln_frontend::lower(&parsed, &fopts) {
        Ok(p) => p,
        Err(e) => {
            for d in e.to_diagnostics() {
                eprintln!("{}", kiln_dockerfile::render(&d, &file_label, &src));
            }
            bail!("{file_label}: {}", e.message);
        }
    };
    if !a.quiet {
        for w in &plan.warnings {
            eprintln!("{}", kiln_dockerfile::render(w, &file_label, &src));
        }
        if let Some(w) = &plan.unused_build_args_warning {
            eprintln!("{w}");
        }
    }

    // COPY --from=IMAGE reaches the graph without a resolver call: pull those images too.
    for v in plan.graph.vertices() {
        if let kiln_graph::Op::Source(kiln_graph::SourceOp::Image { reference, .. }) = &v.op {
            puller.ensure(reference).map_err(|e| anyhow!(e))?;
        }
    }

    let dockerfile_name = dockerfile
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("Dockerfile")
        .to_string();
    let main_context = Arc::new(
        kiln_context::Context::open(&context_dir, &dockerfile_name)?.with_stat_cache(store.root()),
    );
    let mut contexts = BTreeMap::new();
    contexts.insert("context".to_string(), main_context.clone());
    for (name, (_, dir)) in &named {
        if let Some(dir) = dir {
            contexts.insert(
                name.clone(),
                Arc::new(
                    kiln_context::Context::open(dir, &dockerfile_name)?
                        .with_stat_cache(store.root()),
                ),
            );
        }
    }

    let epoch = source_date_epoch(a.reproducible, &context_dir);
    let opts = ExecOptions {
        commit: CommitOptions {
            compression: match a.compression {
                LayerCompression::Gzip => kiln_snapshot::LayerCompression::default(),
                LayerCompression::Zstd => kiln_snapshot::LayerCompression::Zstd { level: None },
            },
            clamp_mtime: epoch,
            ..CommitOptions::default()
        },
        default_network: match a.network.as_str() {
            "default" | "host" => kiln_sandbox::Network::Host,
            "none" => kiln_sandbox::Network::None,
            other => bail!("--network {other:?}: expected default, host or none"),
        },
        build_identity: format!(
            "{}\n{}",
            context_dir.display(),
            std::fs::canonicalize(&dockerfile)
                .unwrap_or(dockerfile.clone())
                .display()
        ),
        host_ca_bundle: None,
        max_download_size: a
            .max_download_size
            .unwrap_or(kiln_ops::DEFAULT_MAX_DOWNLOAD_SIZE),
    };
    let exe = std::env::current_exe().context("locate the kiln binary for the sandbox helper")?;
    let executor = Executor::new(store, &plan.graph, exe, contexts, secrets, opts)?
        .with_ssh(ssh)
        .keep_failed_step(a.on_error == OnError::Shell)
        .with_cache_imports(super::build_cache::load_imports(
            &cache_args.imports,
            &puller.regs,
            a.quiet,
        )?);

    let root_vertex = plan
        .graph
        .vertex(plan.target.root)
        .ok_or_else(|| anyhow!("internal: target vertex missing"))?;
    let needed = plan.graph.reachable_from(&[plan.target.root]);
    executor.prefetch_context_digests(&needed);
    let jobs: Vec<Job<Digest, kiln_graph::VertexId>> = needed
        .into_iter()
        .filter_map(|id| plan.graph.vertex(id).map(|v| (id, v)))
        .map(|(id, v)| {
            let deps = v
                .inputs
                .iter()
                .filter_map(|i| plan.graph.vertex(*i).map(|d| d.digest.clone()))
                .collect();
            Job::new(v.digest.clone(), id, deps)
        })
        .collect();
    let cancel = kiln_solver::CancelToken::new();
    let _signals = kiln_solver::signal::cancel_on_signals(cancel.clone()).ok();
    let solver_opts = kiln_solver::Options {
        jobs: a
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        cancel,
    };
    let mode = if a.quiet {
        ProgressMode::Json
    } else {
        a.progress
    };
    let progress: Progress<Digest> = if a.quiet {
        Progress::start_with(mode, Box::new(std::io::sink()), || (80, 24))?
    } else {
        Progress::start(mode)?
    };
    let sink = progress.sink();
    let result = kiln_solver::solve(
        jobs,
        std::slice::from_ref(&root_vertex.digest),
        &executor,
        &solver_opts,
        &sink,
    );
    executor.stop_prefetch();
    let solution = match result {
        Ok(s) => s,
        Err(e) => {
            let info = failure_info(&e, &plan.graph, &src, &file_label);
            let _ = progress.finish(info);
            if a.on_error == OnError::Shell {
                debug_shell(&executor);
            }
            return Err(anyhow!(solve_error_text(&e)));
        }
    };
    let _ = progress.finish(None);
    if let Err(e) = main_context.save_stat_cache() {
        tracing::warn!("could not save the stat cache: {e}");
    }

    let state = match solution.targets.first().map(|o| o.as_ref()) {
        Some(Output::Fs(s)) => s.clone(),
        _ => bail!("internal: the target stage produced no filesystem"),
    };
    let mut config = plan.target.config.clone();
    let created =
        kiln_export::image::rfc3339(epoch.unwrap_or_else(kiln_export::image::creation_time));
    config.created = Some(created.clone());
    let (os, arch, variant) = kiln_oci::config::host_platform();
    if config.architecture.is_empty() {
        config.architecture = arch.to_string();
    }
    if config.os.is_empty() {
        config.os = os.to_string();
    }
    if config.variant.is_none() {
        config.variant = variant.map(str::to_string);
    }
    // A step that changed nothing adds no layer: its history entry says so.
    let layer_count = |id: kiln_graph::VertexId| -> usize {
        plan.graph
            .vertex(id)
            .and_then(|v| solution.results.get(&v.digest))
            .map(|o| match o.as_ref() {
                Output::Fs(s) => s.layers.len(),
                Output::Context(_) => 0,
            })
            .unwrap_or(0)
    };
    for step in &plan.target.layers {
        let own = layer_count(step.vertex)
            - step
                .parent
                .map(layer_count)
                .unwrap_or(0)
                .min(layer_count(step.vertex));
        if let Some(h) = config.history.get_mut(step.history_index) {
            h.empty_layer = if own == 0 { Some(true) } else { None };
        }
    }
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(created.clone());
        }
    }
    let labels: Vec<(String, String)> = a
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect();
    if !labels.is_empty() {
        ConfigChange::Label(labels).apply(&mut config);
    }
    config.rootfs.diff_ids = state.layers.iter().map(|l| l.diff_id.clone()).collect();
    // Layers that came from an imported cache as lazy hits are fetched (verified) now.
    executor.ensure_blobs(&state)?;
    super::build_cache::report_fetches(&executor, mode, a.quiet);
    let layers: Vec<Layer> = state
        .layers
        .iter()
        .map(|l| Layer {
            descriptor: l.descriptor.clone(),
            diff_id: l.diff_id.clone(),
        })
        .collect();
    let written = match unchanged_image(store, &tags, &config, &layers) {
        // A no-op rebuild keeps the image it would only re-date (same id, like BuildKit).
        Some(existing) => {
            for t in &tags {
                store.tag(t, &existing.manifest)?;
            }
            existing
        }
        None => kiln_export::write_image(store, executor.lease(), &config, &layers, &tags)?,
    };
    super::build_cache::export(
        &executor,
        plan.target.root,
        &cache_args.exports,
        &puller.regs,
        mode,
        a.quiet,
    )?;
    if tags.is_empty() {
        // Like docker's dangling images: listed as <none>, usable by id, kept by prune.
        store.keep_untagged(&written.manifest)?;
    }

    for out in &outputs {
        if *out == BuildOutput::Image {
            continue;
        }
        // Not looked up by digest in index.json: an untagged build is not listed there.
        let image = kiln_store::ResolvedImage {
            reference: tags.first().cloned(),
            target: written.manifest.clone(),
            manifest_descriptor: written.manifest.clone(),
            manifest: store.manifest(&written.manifest)?,
            id: written.id.clone(),
        };
        let item = kiln_export::SaveItem {
            image,
            name: tags.first().cloned(),
        };
        kiln_export::write_output(store, item, out)?;
    }
    let mut pushes: Vec<Reference> = Vec::new();
    if a.push {
        pushes.extend(tags.iter().cloned());
    }
    pushes.extend(push_refs);
    if !pushes.is_empty() {
        let digest = Digest::try_from(written.manifest.digest())
            .map_err(|e| anyhow!("internal: image digest: {e}"))?;
        for r in &pushes {
            puller.regs.push(
                store,
                &digest.to_string(),
                r,
                &kiln_registry::PushOptions::default(),
            )?;
        }
    }
    if let Some(p) = &a.iidfile {
        std::fs::write(p, written.id.to_string())
            .with_context(|| format!("--iidfile {}", p.display()))?;
    }
    if let Some(p) = &a.metadata_file {
        let meta = serde_json::json!({
            "containerimage.digest": written.manifest.digest().to_string(),
            "containerimage.config.digest": written.id.to_string(),
            "image.name": tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","),
        });
        std::fs::write(p, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("--metadata-file {}", p.display()))?;
    }
    if a.quiet {
        println!("{}", written.id);
    } else {
        eprintln!("image {}", written.id);
        for t in &tags {
            eprintln!("naming to {}", t.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The image the first tag names, if it equals `config` except for timestamps.
fn unchanged_image(
    store: &Store,
    tags: &[Reference],
    config: &ImageConfig,
    layers: &[Layer],
) -> Option<kiln_export::WrittenImage> {
    let first = tags.first()?;
    let existing = store.resolve(&first.to_string()).ok()?;
    let same_blobs = existing.manifest.layers().len() == layers.len()
        && existing.manifest.layers().iter().zip(layers).all(|(a, b)| {
            a.digest() == b.descriptor.digest() && a.media_type() == b.descriptor.media_type()
        });
    if !same_blobs {
        return None;
    }
    let old = store.image_config(existing.manifest.config()).ok()?;
    let undated = |c: &ImageConfig| {
        let mut c = c.clone();
        c.created = None;
        for h in &mut c.history {
            h.created = None;
        }
        c
    };
    (undated(&old) == undated(config)).then(|| kiln_export::WrittenImage {
        manifest: existing.target.clone(),
        id: existing.id.clone(),
    })
}

fn base_config(store: &Store, r: &Reference) -> Result<ImageConfig, String> {
    let img = store.resolve(&r.to_string()).map_err(|e| {
        if e.is_not_found() {
            // The frontend's hint says how to add it.
            format!("base image {} is not in the local store", r.familiar())
        } else {
            e.to_string()
        }
    })?;
    store
        .image_config(img.manifest.config())
        .map_err(|e| format!("config of {}: {e}", r.familiar()))
}

/// `KEY=VALUE`, or `KEY` alone taking the value from the environment (skipped if unset,
/// as docker does).
fn parse_build_args(args: &[String]) -> BTreeMap<String, String> {
    args.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}

type NamedContexts = BTreeMap<String, (NamedContext, Option<PathBuf>)>;

/// `NAME=DIR`, `NAME=docker-image://REF` (the local store; pulling is the registry
/// client's job) or `NAME=oci-layout://DIR[:TAG|@DIGEST]` (ingested into the store, kept
/// as an untagged image, and then used like `docker-image://` by digest).
fn parse_build_contexts(store: &Store, specs: &[String]) -> Result<NamedContexts> {
    let mut out = BTreeMap::new();
    for s in specs {
        let (name, value) = s.split_once('=').ok_or_else(|| {
            anyhow!("--build-context {s:?}: expected NAME=DIR, NAME=docker-image://REF or NAME=oci-layout://DIR")
        })?;
        if let Some(r) = value.strip_prefix("docker-image://") {
            let r = Reference::parse(r).with_context(|| format!("--build-context {s}"))?;
            out.insert(name.to_string(), (NamedContext::Image(r), None));
        } else if let Some(rest) = value.strip_prefix("oci-layout://") {
            let r =
                oci_layout_context(store, rest).with_context(|| format!("--build-context {s}"))?;
            out.insert(name.to_string(), (NamedContext::Image(r), None));
        } else if value.contains("://") {
            bail!(
                "--build-context {s:?}: expected a directory, docker-image://REF or oci-layout://DIR"
            );
        } else {
            let dir =
                std::fs::canonicalize(value).with_context(|| format!("--build-context {s}"))?;
            out.insert(name.to_string(), (NamedContext::Local, Some(dir)));
        }
    }
    Ok(out)
}

/// `DIR[:TAG|@DIGEST]` of an `oci-layout://` context → a digest reference into the store.
fn oci_layout_context(store: &Store, spec: &str) -> Result<Reference> {
    let (dir, selector) = if let Some((d, digest)) = spec.rsplit_once('@') {
        (
            d,
            kiln_export::LayoutSelector::Digest(Digest::parse(digest)?),
        )
    } else {
        match spec.rsplit_once(':') {
            // A colon inside the path (`./a:b/dir`) is not a tag.
            Some((d, tag)) if !tag.contains('/') => {
                (d, kiln_export::LayoutSelector::Tag(tag.to_string()))
            }
            _ => (spec, kiln_export::LayoutSelector::Default),
        }
    };
    let dir = std::fs::canonicalize(dir).with_context(|| format!("layout directory {dir}"))?;
    let lease = store.lease()?;
    let desc = kiln_export::import_layout(store, &lease, &dir, &selector)?;
    // Untagged (like a dangling build), so the store keeps it and finds it by digest.
    store.keep_untagged(&desc)?;
    Ok(Reference::parse(&format!(
        "localhost/kiln-oci-layout@{}",
        desc.digest()
    ))?)
}

fn parse_secrets(specs: &[String]) -> Result<BTreeMap<String, SecretSource>> {
    let mut out = BTreeMap::new();
    for s in specs {
        let mut id = None;
        let mut source = None;
        for field in s.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => source = Some(SecretSource::File(PathBuf::from(v))),
                Some(("env", v)) => source = Some(SecretSource::Env(v.to_string())),
                Some(("type", "file" | "env")) => {}
                // Never echo the value: the spec may carry a secret by mistake.
                _ => bail!("--secret: unknown field (expected id=, src= or env=)"),
            }
        }
        let id = id.ok_or_else(|| anyhow!("--secret: missing id="))?;
        let source = source.unwrap_or_else(|| SecretSource::Env(id.clone()));
        out.insert(id, source);
    }
    Ok(out)
}

/// `--ssh ID[=PATH[,PATH…]]` (BuildKit's grammar); keys are read and checked now, so a bad
/// key fails the build before any step runs.
fn parse_ssh(specs: &[String]) -> Result<BTreeMap<String, kiln_ops::SshSource>> {
    let mut out = BTreeMap::new();
    for s in specs {
        let (id, paths) = match s.split_once('=') {
            Some((id, p)) => (id, p.split(',').map(PathBuf::from).collect::<Vec<_>>()),
            None => (s.as_str(), Vec::new()),
        };
        if id.is_empty() {
            bail!("--ssh {s:?}: expected ID[=SOCKET|KEYFILE[,KEYFILE…]]");
        }
        out.insert(id.to_string(), kiln_ops::SshSource::from_paths(id, &paths)?);
    }
    Ok(out)
}

/// `--on-error shell`: /bin/sh in the failed RUN's filesystem, after the error report.
fn debug_shell(executor: &Executor<'_>) {
    use std::io::IsTerminal;
    let Some(step) = executor.take_failed_step() else {
        eprintln!("--on-error shell: the failed step is not a RUN step; no shell to open");
        return;
    };
    if std::io::stdin().is_terminal() {
        eprintln!(
            "--on-error shell: opening /bin/sh in the filesystem of the failed step `{}` \
             (its changes are discarded when you exit)",
            step.command()
        );
    } else {
        eprintln!(
            "--on-error shell: stdin is not a terminal; running the commands read from stdin \
             with /bin/sh in the filesystem of the failed step `{}`",
            step.command()
        );
    }
    match step.shell() {
        Ok(st) => eprintln!(
            "--on-error shell: shell exited with {}",
            match (st.code, st.signal) {
                (Some(c), _) => format!("code {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "unknown status".into(),
            }
        ),
        Err(e) => eprintln!("--on-error shell: cannot start the shell: {e}"),
    }
}

/// `SOURCE_DATE_EPOCH`, or with `--reproducible` the context's git commit time, else 0.
fn source_date_epoch(reproducible: bool, context: &Path) -> Option<i64> {
    if let Some(v) = std::env::var_os("SOURCE_DATE_EPOCH") {
        if let Some(n) = v.to_str().and_then(|s| s.trim().parse().ok()) {
            return Some(n);
        }
    }
    if !reproducible {
        return None;
    }
    let git = std::process::Command::new("git")
        .arg("-C")
        .arg(context)
        .args(["log", "-1", "--format=%ct"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok());
    Some(git.unwrap_or(0))
}

/// Whether the kernel can run binaries of `platform`: an enabled binfmt_misc handler whose
/// magic matches an ELF header of that machine. Handlers are found by content, not by
/// name (qemu-user-static, binfmt-support and tonistiigi/binfmt all name them differently).
/// The handler must be registered with the F flag (interpreter opened at registration) or
/// its interpreter must be at a path the step's root also has, which kiln does not check.
fn binfmt_available(platform: &Platform) -> bool {
    // ELF e_machine values (elf.h).
    let machine: u16 = match platform.arch.as_str() {
        "arm64" => 0xb7,
        "amd64" => 0x3e,
        "arm" => 0x28,
        "ppc64le" => 0x15,
        "s390x" => 0x16,
        "riscv64" => 0xf3,
        "386" => 0x03,
        _ => return false,
    };
    let Ok(dir) = std::fs::read_dir("/proc/sys/fs/binfmt_misc") else {
        return false;
    };
    dir.flatten().any(|e| {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        binfmt_matches(&text, machine)
    })
}

/// One `/proc/sys/fs/binfmt_misc/<name>` entry: enabled, magic at offset 0, and the
/// e_machine bytes (offset 18, little- or big-endian per the magic's EI_DATA) equal.
fn binfmt_matches(entry: &str, machine: u16) -> bool {
    let field = |k: &str| {
        entry
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    if entry.lines().next() != Some("enabled") || field("interpreter ").is_none() {
        return false;
    }
    // Without F the kernel opens the interpreter by path at exec time, inside the step's
    // root, where the image does not have it: only fix-binary handlers work in a sandbox.
    if !field("flags:").is_some_and(|f| f.contains('F')) {
        return false;
    }
    if field("offset ").is_some_and(|o| o != "0") {
        return false;
    }
    let Some(magic) = field("magic ") else {
        return false;
    };
    let bytes: Vec<u8> = (0..magic.len() / 2)
        .filter_map(|i| u8::from_str_radix(magic.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" {
        return false;
    }
    let want = if bytes[5] == 2 {
        machine.to_be_bytes()
    } else {
        machine.to_le_bytes()
    };
    bytes[18..20] == want
}

fn failure_info(
    e: &SolveError<Digest, OpError>,
    graph: &kiln_graph::Graph,
    src: &str,
    file: &str,
) -> Option<FailureInfo<Digest>> {
    let key = e.failed_key()?.clone();
    let vertex = graph.find(&key).and_then(|id| graph.vertex(id));
    let exit_code = match e {
        SolveError::Job {
            source: OpError::ExitCode { code, .. },
            ..
        } => Some(*code),
        _ => None,
    };
    let source_excerpt = vertex.and_then(|v| v.meta.span.as_ref()).map(|span| {
        let mut out = format!("{file}:{}\n", span.line_start);
        for (i, line) in src.lines().enumerate() {
            let n = i + 1;
            if n >= span.line_start && n <= span.line_end {
                out.push_str(&format!(" {n:>4} | {line}\n"));
            }
        }
        out
    });
    Some(FailureInfo {
        key,
        exit_code,
        source_excerpt,
    })
}

fn solve_error_text(e: &SolveError<Digest, OpError>) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::binfmt_matches;

    #[test]
    fn binfmt_entry_is_matched_by_elf_machine() {
        // As qemu-user-static registers aarch64 (mask line omitted: it is not consulted).
        let entry = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\n";
        assert!(binfmt_matches(entry, 0xb7));
        assert!(!binfmt_matches(entry, 0x28), "arm is not aarch64");
        assert!(!binfmt_matches(
            &entry.replacen("enabled", "disabled", 1),
            0xb7
        ));
        let s390 = "enabled\ninterpreter /usr/bin/qemu-s390x\nflags: F\noffset 0\nmagic 7f454c4602020100000000000000000000020016\n";
        assert!(binfmt_matches(s390, 0x16), "big-endian e_machine");
        let no_f = s390.replace("flags: F", "flags: P");
        assert!(
            !binfmt_matches(&no_f, 0x16),
            "interpreter not opened at registration"
        );
    }
}
