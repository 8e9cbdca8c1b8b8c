//! import, save, load.

use crate::changes::parse_changes;
use crate::cli::{ArchiveFormat, ImportArgs, LayerCompression, LoadArgs, SaveArgs};
use anyhow::{Context, Result};
use kiln_export::{import_rootfs, ImportOptions};
use kiln_oci::media::Compression;
use kiln_oci::Reference;
use kiln_store::Store;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::process::ExitCode;

fn open_input(path: &str) -> Result<Box<dyn Read + Send>> {
    Ok(if path == "-" {
        Box::new(BufReader::with_capacity(1 << 20, io::stdin()))
    } else {
        Box::new(BufReader::with_capacity(
            1 << 20,
            File::open(path).with_context(|| format!("cannot open {path}"))?,
        ))
    })
}

pub fn import(store: &Store, a: &ImportArgs) -> Result<ExitCode> {
    let tags = a
        .tags
        .iter()
        .map(|t| Reference::parse(t).with_context(|| format!("-t {t}")))
        .collect::<Result<Vec<_>>>()?;
    let changes = parse_changes(&a.changes)?;
    let opts = ImportOptions {
        tags,
        changes,
        message: a.message.clone(),
        compression: match a.compression {
            LayerCompression::Gzip => Compression::Gzip,
            LayerCompression::Zstd => Compression::Zstd,
        },
        limits: super::decode_limits(&a.limits),
        source_name: if a.file == "-" {
            "stdin".into()
        } else {
            a.file.clone()
        },
    };
    let written = import_rootfs(store, open_input(&a.file)?, &opts)
        .with_context(|| format!("import {}", opts.source_name))?;
    println!("{}", written.id);
    Ok(ExitCode::SUCCESS)
}

pub fn save(store: &Store, a: &SaveArgs) -> Result<ExitCode> {
    let items = kiln_export::resolve_items(store, &a.images)?;
    let format = match a.format {
        ArchiveFormat::Docker => kiln_export::ArchiveFormat::Docker,
        ArchiveFormat::Oci => kiln_export::ArchiveFormat::Oci,
    };
    if a.output == "-" {
        let out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
        kiln_export::save(store, &items, format, out)?
            .flush()
            .context("write archive to stdout")?;
    } else {
        // Written beside the target and renamed, so a failed save leaves no half archive.
        let target = std::path::Path::new(&a.output);
        let dir = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        let tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("create a temp file in {}", dir.display()))?;
        let out = BufWriter::with_capacity(1 << 20, tmp);
        let tmp = kiln_export::save(store, &items, format, out)?
            .into_inner()
            .map_err(|e| e.into_error())
            .context("write archive")?;
        tmp.as_file().sync_all().context("sync archive")?;
        tmp.persist(target)
            .with_context(|| format!("write {}", target.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(store: &Store, a: &LoadArgs) -> Result<ExitCode> {
    let name = if a.input == "-" {
        "stdin"
    } else {
        a.input.as_str()
    };
    let images = kiln_export::load(
        store,
        open_input(&a.input)?,
        name,
        &super::decode_limits(&a.limits),
    )
    .with_context(|| format!("load {name}"))?;
    for img in images {
        if img.references.is_empty() {
            eprintln!(
                "kiln: warning: an image in {name} has no name (id {}); it was verified but is not kept. \
                 Save it with a name to load it.",
                img.id
            );
        }
        for r in &img.references {
            if a.quiet {
                println!("{}", r.familiar());
            } else {
                println!("Loaded image: {}", r.familiar());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
