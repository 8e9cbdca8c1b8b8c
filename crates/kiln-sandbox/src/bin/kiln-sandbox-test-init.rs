//! Test-only stand-in for the `kiln` binary: the integration tests point
//! [`kiln_sandbox::Sandbox`] at this executable so the re-exec path is the
//! real one. It does exactly what `kiln`'s `main` must do first.

fn main() {
    if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::INIT_ARG.as_ref()) {
        kiln_sandbox::init_main();
    }
    eprintln!("kiln-sandbox-test-init: only meant to be re-executed by kiln-sandbox");
    std::process::exit(2);
}
