//! Test-only stand-in for the `kiln` binary: the integration tests point
//! [`kiln_sandbox::Sandbox`] at this executable so the re-exec path is the
//! real one. It does exactly what `kiln`'s `main` must do first.

fn main() {
    if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::INIT_ARG.as_ref()) {
        kiln_sandbox::init_main();
    }
    if std::env::args_os().nth(1).as_deref() == Some(kiln_sandbox::USERNS_HELPER_ARG.as_ref()) {
        kiln_sandbox::namespace_helper_main(test_request);
    }
    eprintln!("kiln-sandbox-test-init: only meant to be re-executed by kiln-sandbox");
    std::process::exit(2);
}

/// The namespace helper's test handler: `chown UID:GID PATH` (as root of the namespace),
/// `ids` (the helper's own uid/gid as it sees them), `fail MSG`.
fn test_request(req: &str) -> Result<String, String> {
    let words: Vec<&str> = req.split_whitespace().collect();
    match words.as_slice() {
        ["ids"] => Ok(format!(
            "{}:{}",
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw()
        )),
        ["chown", owner, path] => {
            let (u, g) = owner.split_once(':').ok_or("owner is UID:GID")?;
            let u: u32 = u.parse().map_err(|_| "bad uid")?;
            let g: u32 = g.parse().map_err(|_| "bad gid")?;
            std::os::unix::fs::chown(path, Some(u), Some(g))
                .map_err(|e| format!("chown {path}: {e}"))?;
            Ok(String::new())
        }
        ["remove", path] => std::fs::remove_dir_all(path)
            .map(|()| String::new())
            .map_err(|e| format!("remove {path}: {e}")),
        ["fail", msg] => Err((*msg).to_string()),
        ["cat", path] => {
            let mut f = std::fs::File::open(path).map_err(|e| format!("open {path}: {e}"))?;
            std::io::copy(&mut f, &mut std::io::stdout().lock())
                .map_err(|e| format!("read {path}: {e}"))?;
            Ok("done".into())
        }
        _ => Err(format!("unknown request {req:?}")),
    }
}
