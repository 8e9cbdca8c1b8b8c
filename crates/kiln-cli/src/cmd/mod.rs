//! One module per command; each turns parsed arguments into library calls and output.

mod build;
mod build_cache;
mod check;
mod exchange;
mod images;
mod maintenance;
mod run;

use crate::cli::{Cli, Command, LimitArgs};
use anyhow::{Context, Result};
use kiln_store::Store;
use std::path::PathBuf;
use std::process::ExitCode;

pub fn run(cli: Cli) -> Result<ExitCode> {
    let root = cli.root;
    let store = || open_store(root.clone());
    match cli.command {
        Command::Images(a) => images::images(&store()?, &a),
        Command::Inspect(a) => images::inspect(&store()?, &a),
        Command::Tag(a) => images::tag(&store()?, &a),
        Command::Rmi(a) => images::rmi(&store()?, &a),
        Command::Prune(a) => maintenance::prune(&store()?, &a),
        Command::Fsck(a) => maintenance::fsck(&store()?, &a),
        Command::Import(a) => exchange::import(&store()?, &a),
        Command::Save(a) => exchange::save(&store()?, &a),
        Command::Load(a) => exchange::load(&store()?, &a),
        Command::Check(a) => check::check(&a),
        Command::Build(a) => build::build(&store()?, &a),
        Command::Run(a) => run::run(&store()?, &a),
    }
}

fn open_store(flag: Option<PathBuf>) -> Result<Store> {
    // Absolute, because the sandbox helper and overlay mounts resolve it from elsewhere.
    let root = std::path::absolute(kiln_store::default_root(flag)?)?;
    Store::open(&root).with_context(|| format!("cannot open the store at {}", root.display()))
}

/// Decode limits from the flags, defaults where a flag is absent.
pub fn decode_limits(a: &LimitArgs) -> kiln_archive::DecodeLimits {
    let mut l = kiln_archive::DecodeLimits::default();
    if let Some(v) = a.max_layer_size {
        l.max_total_bytes = v;
    }
    if let Some(v) = a.max_decompression_ratio {
        l.max_ratio = v;
    }
    if let Some(v) = a.max_layer_entries {
        l.max_entries = v;
    }
    if let Some(v) = a.max_path_length {
        l.max_path_len = v;
    }
    l
}
