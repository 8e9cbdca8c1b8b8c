//! The driver: global ARGs, target selection, lazy stage lowering (only stages the target
//! needs are ever lowered), stage/context/image resolution for `--from`.

use crate::error::{ErrorKind, FrontendError};
use crate::instructions;
use crate::state::StageState;
use crate::{BaseImage, BuildPlan, FrontendOptions, NamedContext, StageResult, StageSummary};
use kiln_dockerfile::scope::{GlobalScope, Platform};
use kiln_dockerfile::{line_col, Diagnostic, Instruction, Node, Parsed, Span};
use kiln_graph::{Graph, Op, SourceOp, SourceSpan, StageRef, VertexId, VertexMeta};
use kiln_oci::Reference;

/// What a `--from` / `from=` / `FROM` name refers to.
pub(crate) enum FromTarget {
    Stage(usize),
    Context(String),
    Image(Reference),
}

pub(crate) struct StageDef {
    pub name: Option<String>,
    pub node: Node,
}

pub(crate) struct Lowerer<'a> {
    pub opts: &'a FrontendOptions<'a>,
    pub escape: char,
    pub global: GlobalScope,
    pub graph: Graph,
    pub stages: Vec<StageDef>,
    pub nodes: Vec<Vec<Node>>,
    pub done: Vec<Option<StageState>>,
    pub in_progress: Vec<bool>,
    pub summaries: Vec<StageSummary>,
    pub platform: Platform,
    pub warnings: Vec<Diagnostic>,
}

/// Lowers a parsed Dockerfile for the target stage.
pub fn lower(parsed: &Parsed, opts: &FrontendOptions<'_>) -> Result<BuildPlan, FrontendError> {
    if parsed.has_errors() {
        let mut e = FrontendError::new(ErrorKind::Parse, "the Dockerfile has syntax errors", None);
        e.diagnostics = parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == kiln_dockerfile::Severity::Error)
            .cloned()
            .collect();
        e.span = e.diagnostics.first().map(|d| d.span);
        return Err(e);
    }
    let df = &parsed.dockerfile;
    let stages = df.stages();
    if stages.is_empty() {
        return Err(FrontendError::new(
            ErrorKind::NoStages,
            "the Dockerfile has no FROM instruction (no build stage)",
            None,
        ));
    }
    let host = Platform::host();
    let platform = opts.platform.clone().unwrap_or_else(|| host.clone());
    check_platform(&platform, &host, opts.binfmt_available, None)?;

    let defs: Vec<StageDef> = stages
        .iter()
        .map(|s| StageDef {
            name: s.name.map(|w| w.raw.clone()),
            node: s.from_node.clone(),
        })
        .collect();
    let target = match &opts.target {
        Some(t) => find_stage(&defs, t, defs.len()).ok_or_else(|| {
            FrontendError::new(
                ErrorKind::UnknownTarget,
                format!("target stage {t:?} could not be found"),
                None,
            )
            .with_hint(format!(
                "stages: {}",
                defs.iter()
                    .enumerate()
                    .map(|(i, d)| d.name.clone().unwrap_or_else(|| i.to_string()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None => defs.len() - 1,
    };
    let target_name = defs[target].name.clone().unwrap_or_default();
    let mut global = GlobalScope::new(
        opts.build_args.clone(),
        &platform,
        &host,
        &target_name,
        df.escape,
    );
    for node in df.preamble() {
        if let Instruction::Arg(decls) = &node.instruction {
            for d in decls {
                global
                    .declare_arg(&d.name.raw, d.default.as_ref().map(|w| w.raw.as_str()))
                    .map_err(|e| {
                        crate::util::expand_err(e, d.default.as_ref().unwrap_or(&d.name))
                    })?;
            }
        }
    }
    // Docker's unused-build-arg warning counts ARGs of every stage, built or not.
    for node in &df.nodes {
        if let Instruction::Arg(decls) = &node.instruction {
            for d in decls {
                global.mark_consumed(&d.name.raw);
            }
        }
    }
    let summaries = stages
        .iter()
        .map(|s| StageSummary {
            index: s.index,
            name: s.name.map(|w| w.raw.clone()),
            base: s.base.map(|w| w.raw.clone()).unwrap_or_default(),
            built: false,
        })
        .collect();
    let n = defs.len();
    let mut lw = Lowerer {
        opts,
        escape: df.escape,
        global,
        graph: Graph::new(),
        nodes: stages.iter().map(|s| s.instructions.to_vec()).collect(),
        stages: defs,
        done: vec![None; n],
        in_progress: vec![false; n],
        summaries,
        platform,
        warnings: Vec::new(),
    };
    lw.lower_stage(target, None)?;
    let st = lw.done[target].clone().ok_or_else(|| {
        FrontendError::new(ErrorKind::Graph, "target stage was not lowered", None)
    })?;
    Ok(BuildPlan {
        graph: lw.graph,
        target: StageResult {
            root: st.root,
            config: st.config,
            base: st.base,
            layers: st.layers,
        },
        unused_build_args_warning: lw.global.unconsumed_warning(),
        warnings: lw.warnings,
        stages: lw.summaries,
    })
}

pub(crate) fn check_platform(
    p: &Platform,
    host: &Platform,
    binfmt: bool,
    span: Option<Span>,
) -> Result<(), FrontendError> {
    let same = p.os == host.os
        && p.arch == host.arch
        && (p.variant.is_empty() || host.variant.is_empty() || p.variant == host.variant);
    if same || binfmt {
        return Ok(());
    }
    Err(FrontendError::new(
        ErrorKind::Platform,
        format!("platform {p} cannot run on this {host} host"),
        span,
    )
    .with_hint(format!(
        "--platform {p}: kiln runs steps natively, so another platform needs a binfmt_misc \
         handler for {} registered with the F flag in /proc/sys/fs/binfmt_misc (e.g. \
         qemu-user-static); none is, so build for {host} or register one",
        p.arch
    )))
}

/// Stage by name (case-insensitive) or index, among stages before `before`.
fn find_stage(defs: &[StageDef], name: &str, before: usize) -> Option<usize> {
    let lim = before.min(defs.len());
    if let Some(i) = defs[..lim].iter().position(|d| {
        d.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }) {
        return Some(i);
    }
    name.parse::<usize>().ok().filter(|&i| i < lim)
}

impl<'a> Lowerer<'a> {
    pub fn source_span(&self, span: Span) -> SourceSpan {
        let src = self.opts.source;
        let (l1, _) = line_col(src, span.start);
        let (l2, _) = line_col(src, span.end.saturating_sub(1).max(span.start));
        SourceSpan {
            start: span.start,
            end: span.end,
            line_start: l1,
            line_end: l2,
        }
    }

    pub fn meta(&self, st: &StageState, description: String, span: Span) -> VertexMeta {
        VertexMeta {
            description,
            stage: Some(StageRef {
                index: st.index,
                name: st.name.clone(),
            }),
            span: Some(self.source_span(span)),
            ignore_cache: st.no_cache,
        }
    }

    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        meta: VertexMeta,
        span: Span,
    ) -> Result<VertexId, FrontendError> {
        self.graph
            .add(op, inputs, meta)
            .map_err(|e| FrontendError::at(ErrorKind::Graph, e.to_string(), span))
    }

    /// The text of a node as written (for ONBUILD).
    pub fn node_text(&self, node: &Node) -> String {
        self.opts
            .source
            .get(node.span.start..node.span.end)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| {
                let mut s = node.keyword.raw.clone();
                for w in &node.args {
                    s.push(' ');
                    s.push_str(&w.raw);
                }
                s
            })
    }

    /// Resolves a `--from` / `from=` value for stage `current`.
    pub fn resolve_from(
        &mut self,
        name: &str,
        current: usize,
        span: Span,
    ) -> Result<FromTarget, FrontendError> {
        if let Some(i) = find_stage(&self.stages, name, self.stages.len()) {
            if i == current {
                return Err(FrontendError::at(
                    ErrorKind::Cycle,
                    format!("stage {name:?} refers to itself"),
                    span,
                ));
            }
            self.lower_stage(i, Some(span))?;
            return Ok(FromTarget::Stage(i));
        }
        if let Some(c) = self.opts.build_contexts.get(name) {
            return Ok(match c {
                NamedContext::Local => FromTarget::Context(name.to_string()),
                NamedContext::Image(r) => FromTarget::Image(r.clone()),
            });
        }
        Reference::parse(name)
            .map(FromTarget::Image)
            .map_err(|e| FrontendError::at(ErrorKind::InvalidReference, e.to_string(), span))
    }

    /// The root vertex of a resolved `--from`.
    pub fn root_of(
        &mut self,
        target: &FromTarget,
        st: &StageState,
        span: Span,
    ) -> Result<VertexId, FrontendError> {
        match target {
            FromTarget::Stage(i) => self.done[*i]
                .as_ref()
                .map(|s| s.root)
                .ok_or_else(|| FrontendError::at(ErrorKind::Graph, "stage was not lowered", span)),
            FromTarget::Context(name) => {
                self.context_vertex(st, name, Vec::new(), Vec::new(), span)
            }
            FromTarget::Image(r) => {
                let op = Op::Source(SourceOp::Image {
                    reference: r.clone(),
                    platform: self.graph_platform(),
                });
                let meta = VertexMeta {
                    description: format!("[internal] load image {r}"),
                    ..self.meta(st, String::new(), span)
                };
                self.add(op, vec![], meta, span)
            }
        }
    }

    pub fn context_vertex(
        &mut self,
        st: &StageState,
        name: &str,
        include: Vec<String>,
        exclude: Vec<String>,
        span: Span,
    ) -> Result<VertexId, FrontendError> {
        let op = Op::Source(SourceOp::Context {
            name: name.to_string(),
            include,
            exclude,
        });
        let meta = VertexMeta {
            description: format!("[internal] load build context {name}"),
            ..self.meta(st, String::new(), span)
        };
        self.add(op, vec![], meta, span)
    }

    pub fn graph_platform(&self) -> kiln_graph::Platform {
        kiln_graph::Platform::new(
            &self.platform.os,
            &self.platform.arch,
            &self.platform.variant,
        )
    }

    fn stage_no_cache(&self, index: usize) -> bool {
        self.opts.no_cache
            || self.opts.no_cache_filter.iter().any(|f| {
                self.stages[index]
                    .name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(f))
                    || f.parse::<usize>().ok() == Some(index)
            })
    }

    /// Lowers stage `i` (and, first, every stage it needs). Idempotent.
    pub fn lower_stage(&mut self, i: usize, from_span: Option<Span>) -> Result<(), FrontendError> {
        if self.done[i].is_some() {
            return Ok(());
        }
        if self.in_progress[i] {
            return Err(FrontendError::new(
                ErrorKind::Cycle,
                format!("circular dependency detected on stage {i}"),
                from_span,
            ));
        }
        self.in_progress[i] = true;
        self.summaries[i].built = true;
        let nodes = self.nodes[i].clone();
        let from_node = self.stages[i].node.clone();
        let total = 1 + nodes
            .iter()
            .filter(|n| {
                matches!(
                    n.instruction,
                    Instruction::Run(_)
                        | Instruction::Copy(_)
                        | Instruction::Add(_)
                        | Instruction::Workdir(_)
                )
            })
            .count();
        let no_cache = self.stage_no_cache(i);
        let (mut st, triggers) =
            instructions::from::dispatch(self, i, &from_node, total, no_cache)?;
        self.summaries[i].base = st_base_text(&st);
        // ONBUILD triggers of the base run right after FROM, as if written there.
        for t in triggers {
            let parsed = kiln_dockerfile::parse(&t);
            if parsed.has_errors() || parsed.dockerfile.nodes.len() != 1 {
                return Err(FrontendError::at(
                    ErrorKind::InvalidFlag,
                    format!("invalid ONBUILD trigger {t:?} in the base image"),
                    from_node.span,
                ));
            }
            let mut node = parsed.dockerfile.nodes[0].clone();
            let name = node.name();
            if matches!(name.as_str(), "FROM" | "ONBUILD" | "MAINTAINER") {
                return Err(FrontendError::at(
                    ErrorKind::InvalidFlag,
                    format!("{name} is not allowed as an ONBUILD trigger"),
                    from_node.span,
                ));
            }
            st.total += 1;
            // Spans point into the trigger text; re-anchor them at the FROM line.
            reanchor(&mut node, from_node.span);
            instructions::dispatch(self, &mut st, &node)?;
        }
        for node in &nodes {
            instructions::dispatch(self, &mut st, node)?;
        }
        self.in_progress[i] = false;
        self.done[i] = Some(st);
        Ok(())
    }
}

fn st_base_text(st: &StageState) -> String {
    match &st.base {
        BaseImage::Scratch => "scratch".to_string(),
        BaseImage::Image { reference, .. } => reference.to_string(),
        BaseImage::Context { .. } => "context".to_string(),
    }
}

/// Points every span of a trigger node at `span` (the FROM that ran it), keeping the
/// structure; the text is not in the Dockerfile.
fn reanchor(node: &mut Node, span: Span) {
    fn w(word: &mut kiln_dockerfile::Word, span: Span) {
        word.span = span;
    }
    node.span = span;
    w(&mut node.keyword, span);
    for a in &mut node.args {
        w(a, span);
    }
    for f in &mut node.flags {
        f.span = span;
        f.name_span = span;
        if let Some(v) = &mut f.value {
            w(v, span);
        }
    }
    for h in &mut node.heredocs {
        h.marker_span = span;
        h.body_span = span;
    }
    // Error offsets inside words are clamped to the word span, so the instruction
    // payload words may keep their spans: expand_err clamps to word.span.
    let _ = &node.instruction;
}
