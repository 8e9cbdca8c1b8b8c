//! `kiln check`: parse + lint a Dockerfile, render findings, exit 0/1/2.

use crate::cli::{CheckArgs, OutputFormat};
use anyhow::{bail, Context, Result};
use kiln_dockerfile::lint::{self, CheckOptions};
use std::io::IsTerminal;
use std::process::ExitCode;

pub fn check(a: &CheckArgs) -> Result<ExitCode> {
    if let Some(id) = &a.explain {
        let Some(rule) = lint::rule(id) else {
            let ids: Vec<&str> = lint::RULES.iter().map(|r| r.id).collect();
            bail!("no lint rule {id:?}; rules: {}", ids.join(", "));
        };
        println!("{} — {}\n\n{}", rule.id, rule.name, rule.explanation);
        return Ok(ExitCode::SUCCESS);
    }
    let path = a
        .file
        .clone()
        .unwrap_or_else(|| a.context.join("Dockerfile"));
    let src = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read Dockerfile {}", path.display()))?;
    let file = path.display().to_string();
    let parsed = kiln_dockerfile::parse(&src);
    // The context matters only for CopyIgnoredFile: its ignore file, chosen as a build
    // would (`<Dockerfile>.dockerignore` first).
    let dockerfile_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("Dockerfile");
    let context = kiln_context::Context::open(&a.context, dockerfile_name)
        .with_context(|| format!("cannot open build context {}", a.context.display()))?;
    let opts = CheckOptions {
        dockerignore: context.ignore_file().map(|_| context.ignore().clone()),
        ..CheckOptions::default()
    };
    let report = lint::run(&parsed, &opts);
    match a.format {
        OutputFormat::Json => {
            let items: Vec<_> = report
                .diagnostics
                .iter()
                .map(|d| d.to_json(&file, &src))
                .collect();
            println!("{}", serde_json::to_string_pretty(&items)?);
        }
        OutputFormat::Table => {
            let styled = std::io::stdout().is_terminal();
            for d in &report.diagnostics {
                let text = if styled {
                    kiln_dockerfile::diag::render_styled(d, &file, &src)
                } else {
                    kiln_dockerfile::diag::render(d, &file, &src)
                };
                println!("{text}");
            }
            let (e, w) = (report.errors(), report.warnings());
            if e + w == 0 {
                println!("{file}: no problems found");
            } else {
                println!(
                    "{file}: {e} error{}, {w} warning{}",
                    if e == 1 { "" } else { "s" },
                    if w == 1 { "" } else { "s" }
                );
            }
        }
    }
    Ok(ExitCode::from(report.exit_code(a.strict) as u8))
}
