//! End-to-end concurrency: real `kiln import` processes racing a `kiln prune` loop on one
//! store must leave it fsck-clean with both images complete.

mod common;

use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn two_imports_racing_prune_leave_store_clean() {
    let env = Env::new();
    let Some(busybox) = busybox_tar(&env) else {
        return;
    };
    let tiny = tiny_tar(&env, "tiny.tar", "tiny");
    env.ok(&["images"]); // create the store before the race
    for round in 0..4 {
        // Unreferenced blobs from the previous round are prune's prey while the imports
        // write the very same blobs again.
        let _ = env.run(&["rmi", "a", "b"]);
        let stop = Arc::new(AtomicBool::new(false));
        let pruner = {
            let stop = stop.clone();
            let mut cmd = env.cmd(&["prune", "--format", "json"]);
            std::thread::spawn(move || {
                let mut runs = 0;
                while !stop.load(Ordering::Relaxed) || runs == 0 {
                    let o = cmd.output().unwrap();
                    assert!(o.status.success(), "prune failed: {}", err_str(&o));
                    runs += 1;
                }
                runs
            })
        };
        // Both imports share the busybox layer in even rounds; in odd rounds one is tiny.
        let second = if round % 2 == 0 { &busybox } else { &tiny };
        let a = env
            .cmd(&[
                "import",
                busybox.to_str().unwrap(),
                "-t",
                "a",
                "--change",
                "CMD [\"sh\"]",
            ])
            .spawn()
            .unwrap();
        let b = env
            .cmd(&[
                "import",
                second.to_str().unwrap(),
                "-t",
                "b",
                "--change",
                "ENV B=1",
            ])
            .spawn()
            .unwrap();
        let (ra, rb) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        stop.store(true, Ordering::Relaxed);
        let runs = pruner.join().unwrap();
        assert!(
            ra.status.success(),
            "round {round}: import a: {}",
            err_str(&ra)
        );
        assert!(
            rb.status.success(),
            "round {round}: import b: {}",
            err_str(&rb)
        );
        assert!(runs >= 1);

        env.assert_fsck_clean();
        let refs = env.references();
        assert!(
            refs.contains("docker.io/library/a:latest")
                && refs.contains("docker.io/library/b:latest"),
            "round {round}: {refs:?}"
        );
        // Both images are complete: every blob is there and save reads them all.
        for r in ["a", "b"] {
            let out = env.path(&format!("{r}-{round}.tar"));
            env.ok(&["save", "-o", out.to_str().unwrap(), r]);
            for d in env.layer_digests(r) {
                assert_eq!(sha256_file(&env.blob_path(&d)), d);
            }
        }
    }
    env.assert_store_clean();
}
