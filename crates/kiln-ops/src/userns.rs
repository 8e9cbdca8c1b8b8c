//! Rootless snapshot operations in a user namespace: kiln-snapshot's
//! [`kiln_snapshot::NamespaceRunner`] served by kiln-sandbox's re-exec helper
//! ([`kiln_sandbox::NamespaceHelper`]), so base layers are unpacked with their real
//! (subordinate) owners and snapshot trees holding such files can be removed. The two
//! crates stay independent of each other; this module is the only place they meet.

use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
struct Runner(kiln_sandbox::NamespaceHelper);

impl kiln_snapshot::NamespaceRunner for Runner {
    fn run(&self, request: &str) -> Result<String, String> {
        self.0.call(request).map_err(|e| e.to_string())
    }
    fn run_streaming(&self, request: &str, out: &mut dyn std::io::Write) -> Result<String, String> {
        self.0
            .call_streaming(request, out)
            .map_err(|e| e.to_string())
    }
}

/// Registers the namespace runner for every `Snapshots` this process opens, when it is
/// rootless with a subordinate id range (`exe`: the kiln binary, re-executed with
/// [`kiln_sandbox::USERNS_HELPER_ARG`]). `KILN_USERNS_HELPER=0` turns it off (then owners
/// other than 0 are kept in the owner override xattr, as with a single-id map). Returns
/// whether a runner was registered.
pub fn install_namespace_runner(exe: PathBuf) -> bool {
    if std::env::var_os("KILN_USERNS_HELPER").is_some_and(|v| v == "0") {
        return false;
    }
    match kiln_sandbox::NamespaceHelper::detect(exe) {
        Some(h) => {
            kiln_snapshot::set_namespace_runner(Arc::new(Runner(h)));
            true
        }
        None => false,
    }
}

/// The kiln binary's entry point when `argv[1]` is [`kiln_sandbox::USERNS_HELPER_ARG`]:
/// call it before any thread exists. Never returns.
pub fn namespace_helper_main() -> ! {
    kiln_sandbox::namespace_helper_main(kiln_snapshot::serve_in_namespace)
}
