//! FROM: the base (another stage, a named context, `scratch` or an image), expanded with
//! the global ARGs only. Returns the new stage state and the base's ONBUILD triggers
//! (cleared from the config; the caller lowers them right after FROM).

use crate::error::{ErrorKind, FrontendError};
use crate::lower::{check_platform, Lowerer};
use crate::state::StageState;
use crate::{BaseImage, NamedContext};
use kiln_dockerfile::scope::Platform;
use kiln_dockerfile::{Instruction, Node};
use kiln_graph::{CopyAction, FileAction, FileOp, InputIndex, Op, SourceOp};
use kiln_oci::{ImageConfig, Reference};

pub(crate) fn dispatch(
    lw: &mut Lowerer<'_>,
    index: usize,
    node: &Node,
    total: usize,
    no_cache: bool,
) -> Result<(StageState, Vec<String>), FrontendError> {
    let Instruction::From(f) = &node.instruction else {
        return Err(FrontendError::at(
            ErrorKind::Unsupported,
            "malformed FROM",
            node.span,
        ));
    };
    let image = lw
        .global
        .expand_from(&f.image.raw)
        .map_err(|e| crate::util::expand_err(e, &f.image))?
        .word;
    if image.trim().is_empty() {
        return Err(FrontendError::at(
            ErrorKind::InvalidReference,
            format!("base name ({}) should not be blank", f.image.raw),
            f.image.span,
        ));
    }
    if let Some(p) = &f.platform {
        let v = lw
            .global
            .expand_from(&p.raw)
            .map_err(|e| crate::util::expand_err(e, p))?
            .word;
        let plat = Platform::parse(&v).ok_or_else(|| {
            FrontendError::at(
                ErrorKind::Platform,
                format!("invalid platform {v:?}"),
                p.span,
            )
        })?;
        check_platform(
            &plat,
            &Platform::host(),
            lw.opts.binfmt_available,
            Some(p.span),
        )?;
    }
    let name = lw.stages[index].name.clone();
    let desc_prefix = format!(
        "[{} 1/{total}]",
        name.clone().unwrap_or_else(|| format!("stage-{index}"))
    );
    let stage_ref = lw.stages[..index].iter().position(|d| {
        d.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(&image))
    });
    let mut st = if let Some(j) = stage_ref {
        lw.lower_stage(j, Some(f.image.span))?;
        let parent = lw.done[j].clone().ok_or_else(|| {
            FrontendError::at(ErrorKind::Graph, "parent stage not lowered", node.span)
        })?;
        StageState {
            index,
            name,
            root: parent.root,
            config: parent.config,
            scope: parent.scope.inherit(),
            base: parent.base,
            layers: parent.layers,
            cmd_set: false,
            step: 1,
            total,
            no_cache,
        }
    } else {
        let dummy_meta_stage = |root, config: ImageConfig, base, scope| StageState {
            index,
            name: name.clone(),
            root,
            config,
            scope,
            base,
            layers: Vec::new(),
            cmd_set: false,
            step: 1,
            total,
            no_cache,
        };
        let mut empty = ImageConfig {
            architecture: lw.platform.arch.clone(),
            os: lw.platform.os.clone(),
            variant: (!lw.platform.variant.is_empty()).then(|| lw.platform.variant.clone()),
            ..Default::default()
        };
        let named = lw.opts.build_contexts.get(&image).cloned();
        let (op, base_ref, config) = match named {
            Some(NamedContext::Local) => (
                Op::Source(SourceOp::Context {
                    name: image.clone(),
                    include: Vec::new(),
                    exclude: Vec::new(),
                }),
                None,
                {
                    set_default_path(&mut empty);
                    empty
                },
            ),
            Some(NamedContext::Image(r)) => {
                let cfg = resolve(lw, &r, node)?;
                (image_op(lw, &r), Some(r), cfg)
            }
            None if image.eq_ignore_ascii_case("scratch") => {
                set_default_path(&mut empty);
                (Op::Source(SourceOp::Scratch), None, empty)
            }
            None => {
                let r = Reference::parse(&image).map_err(|e| {
                    FrontendError::at(ErrorKind::InvalidReference, e.to_string(), f.image.span)
                })?;
                let cfg = resolve(lw, &r, node)?;
                (image_op(lw, &r), Some(r), cfg)
            }
        };
        let is_context = matches!(op, Op::Source(SourceOp::Context { .. }));
        let scope = {
            let env: Vec<(String, String)> = config
                .config
                .as_ref()
                .and_then(|c| c.env.clone())
                .unwrap_or_default()
                .iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.clone(), String::new()),
                })
                .collect();
            lw.global.stage_from_image(env)
        };
        let tmp = dummy_meta_stage(
            kiln_graph::VertexId(0),
            config.clone(),
            BaseImage::Scratch,
            scope.clone(),
        );
        let desc = format!("{desc_prefix} FROM {image}");
        let meta = lw.meta(&tmp, desc, node.span);
        let root = if is_context {
            // A directory is no filesystem yet: its files are copied onto scratch (owners
            // 0:0, like COPY from a context), which makes them the stage's first layer
            // and keys that layer by their content.
            let ctx = lw.context_vertex(&tmp, &image, Vec::new(), Vec::new(), node.span)?;
            let copy = CopyAction::new(InputIndex(0), vec!["/".into()], "/".into());
            let op = Op::File(FileOp {
                root: None,
                actions: vec![FileAction::Copy(copy)],
            });
            lw.add(op, vec![ctx], meta, node.span)?
        } else {
            lw.add(op, vec![], meta, node.span)?
        };
        let base = match (base_ref, is_context) {
            (Some(reference), _) => BaseImage::Image {
                reference,
                vertex: root,
            },
            (None, true) => BaseImage::Context { vertex: root },
            (None, false) => BaseImage::Scratch,
        };
        dummy_meta_stage(root, config, base, scope)
    };
    let triggers = st
        .config
        .config
        .as_mut()
        .and_then(|c| c.on_build.take())
        .unwrap_or_default();
    Ok((st, triggers))
}

/// BuildKit gives a base without ENV a default PATH.
fn set_default_path(cfg: &mut ImageConfig) {
    let rc = cfg.run_config_mut();
    if rc.env.is_none() {
        rc.env = Some(vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ]);
    }
}

fn image_op(lw: &Lowerer<'_>, r: &Reference) -> Op {
    Op::Source(SourceOp::Image {
        reference: r.clone(),
        platform: lw.graph_platform(),
    })
}

fn resolve(lw: &Lowerer<'_>, r: &Reference, node: &Node) -> Result<ImageConfig, FrontendError> {
    let mut cfg = (lw.opts.resolver)(r).map_err(|m| {
        FrontendError::at(
            ErrorKind::Resolve,
            format!("failed to resolve base image {r}: {m}"),
            node.span,
        )
        .with_hint(format!(
            "kiln builds from its local store: add the image with `kiln import ROOTFS.tar -t {}` or `kiln load -i ARCHIVE.tar`",
            r.familiar()
        ))
    })?;
    set_default_path(&mut cfg);
    Ok(cfg)
}
