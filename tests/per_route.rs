//! The book's per-route recipe (`docs/src/deployment/per-route.md`) does what the page says,
//! run as printed in a real Envoy: `envoy.config.route.v3.FilterConfig` with `disabled: true`
//! turns levee off for one route and for a whole virtual host, while every other route keeps
//! its limits. The page's own YAML is used, with only the listener port, the wasm path, the
//! upstream (a `direct_response`) and the limit (1 per minute, so a second request shows it)
//! replaced; each replacement must find its text, so the page cannot drift from this test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{crate_root, envoy_bin, send, try_send, Request};

/// The first ```yaml block of the page.
fn recipe() -> String {
    let page = std::fs::read_to_string(crate_root().join("docs/src/deployment/per-route.md"))
        .expect("read per-route.md");
    let start = page.find("```yaml\n").expect("no ```yaml block") + "```yaml\n".len();
    let len = page[start..].find("\n```").expect("unclosed block");
    page[start..start + len].to_owned()
}

fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "per-route.md no longer contains {from:?}"
    );
    text.replace(from, to)
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn levee_wasm() -> String {
    std::env::var("LEVEE_WASM").unwrap_or_else(|_| {
        crate_root()
            .join("target/wasm32-wasip1/release/levee.wasm")
            .display()
            .to_string()
    })
}

#[test]
fn filter_config_disabled_turns_levee_off_per_route_and_per_virtual_host() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut yaml = recipe();
    yaml = replaced(&yaml, "port_value: 10000", &format!("port_value: {port}"));
    yaml = replaced(&yaml, "/etc/envoy/levee.wasm", &levee_wasm());
    yaml = replaced(
        &yaml,
        "route: { cluster: backend }",
        "direct_response: { status: 200, body: { inline_string: ok } }",
    );
    yaml = replaced(
        &yaml,
        r#""name": "per-client", "key": ["client_ip"], "limit": 100, "window": "1m""#,
        r#""name": "per-client", "key": ["client_ip"], "limit": 1, "window": "1m""#,
    );
    let dir = std::env::temp_dir().join(format!("levee-per-route-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let _envoy = Running(
        Command::new(envoy_bin())
            .args(["--concurrency", "2", "--disable-hot-restart", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_send(port, &Request::get("/healthz")).is_err() {
        assert!(Instant::now() < deadline, "Envoy did not start: {dir:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // levee runs on the default route: the second request within the minute is refused.
    assert_eq!(send(port, &Request::get("/")).status, 200);
    let limited = send(port, &Request::get("/orders"));
    assert_eq!(limited.status, 429);
    assert!(limited.header("x-ratelimit-limit").is_some());
    // The health route and the internal virtual host never see levee: no limit, no headers.
    for _ in 0..3 {
        let health = send(port, &Request::get("/healthz"));
        assert_eq!(health.status, 200);
        assert!(health.header("x-ratelimit-limit").is_none());
        let internal = send(
            port,
            &Request::get("/").header("host", "internal.example.com"),
        );
        assert_eq!(internal.status, 200);
        assert!(internal.header("x-ratelimit-limit").is_none());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
