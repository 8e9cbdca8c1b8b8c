//! `kiln build`: Dockerfile → plan (frontend) → parallel solve (solver + ops) → image
//! (export). This module is glue: every decision lives in a library.

use crate::cli::{BuildArgs, LayerCompression};
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
    let named = parse_build_contexts(&a.build_contexts)?;
    let secrets = parse_secrets(&a.secrets)?;

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
    };
    let exe = std::env::current_exe().context("locate the kiln binary for the sandbox helper")?;
    let executor = Executor::new(store, &plan.graph, exe, contexts, secrets, opts)?;

    let root_vertex = plan
        .graph
        .vertex(plan.target.root)
        .ok_or_else(|| anyhow!("internal: target vertex missing"))?;
    let jobs: Vec<Job<Digest, kiln_graph::VertexId>> = plan
        .graph
        .reachable_from(&[plan.target.root])
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
    let solution = match result {
        Ok(s) => s,
        Err(e) => {
            let info = failure_info(&e, &plan.graph, &src, &file_label);
            let _ = progress.finish(info);
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

fn parse_build_contexts(specs: &[String]) -> Result<NamedContexts> {
    let mut out = BTreeMap::new();
    for s in specs {
        let (name, value) = s.split_once('=').ok_or_else(|| {
            anyhow!("--build-context {s:?}: expected NAME=DIR or NAME=docker-image://REF")
        })?;
        if let Some(r) = value.strip_prefix("docker-image://") {
            out.insert(
                name.to_string(),
                (NamedContext::Image(Reference::parse(r)?), None),
            );
        } else if value.contains("://") {
            bail!(
                "--build-context {s:?}: only local directories and docker-image:// are supported"
            );
        } else {
            let dir =
                std::fs::canonicalize(value).with_context(|| format!("--build-context {s}"))?;
            out.insert(name.to_string(), (NamedContext::Local, Some(dir)));
        }
    }
    Ok(out)
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

/// Whether the kernel can run binaries of `platform` (a binfmt_misc handler is registered).
fn binfmt_available(platform: &Platform) -> bool {
    let qemu = match platform.arch.as_str() {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "arm" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "386" => "i386",
        _ => return false,
    };
    Path::new(&format!("/proc/sys/fs/binfmt_misc/qemu-{qemu}")).exists()
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
