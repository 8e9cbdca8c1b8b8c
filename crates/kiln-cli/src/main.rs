//! The `kiln` binary: argument parsing, rendering and exit codes. No build or storage logic
//! lives here; each command module is glue between the grammar in `cli.rs` and a library.

mod changes;
mod cli;
mod cmd;
mod progress;
mod render;

use clap::Parser;
use std::process::ExitCode;

/// Exit codes: 0 success, 1 failure, 2 usage error (clap's), 125 store unusable.
fn main() -> ExitCode {
    // The sandbox helper is this same binary re-executed; it must take over before anything
    // else runs (it refuses to start once a second thread exists).
    if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::INIT_ARG.as_ref()) {
        kiln_sandbox::init_main();
    }
    // Likewise the rootless namespace helper (unpacks and removals with subordinate ids).
    if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::USERNS_HELPER_ARG.as_ref()) {
        kiln_ops::userns::namespace_helper_main();
    }
    // `kiln images | head` should end quietly like any Unix tool, not panic on EPIPE.
    // SAFETY: restoring the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    if !kiln_fs::running_as_root() {
        if let Ok(exe) = std::env::current_exe() {
            kiln_ops::userns::install_namespace_runner(exe);
        }
    }
    init_tracing(cli.log_level.as_deref());
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiln: {}", render::error_chain(&e));
            ExitCode::from(1)
        }
    }
}

fn init_tracing(flag: Option<&str>) {
    let filter = flag
        .map(str::to_string)
        .or_else(|| std::env::var("KILN_LOG").ok())
        // The platform verifier logs each certificate failure at ERROR; kiln reports the
        // failure itself, naming the registry.
        .unwrap_or_else(|| "warn,rustls_platform_verifier=off".to_string());
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .without_time()
        .try_init();
}
