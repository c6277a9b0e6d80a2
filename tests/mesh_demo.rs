//! The mesh demo that `make run-mesh` starts (`envoy/mesh/`) stays valid and does what
//! `envoy/mesh/demo.sh` says, so a broken demo fails `make test`, not a user:
//!
//! - `envoy-1.yaml` and `envoy-2.yaml` are the same file but for their two ports and their
//!   access log's tag, and carry one plugin JSON that keeps idempotency records in etcd and
//!   passes levee's validator;
//! - the three Envoy configs (two levee Envoys, the payments service) pass
//!   `envoy --mode validate`, which also runs levee's `on_configure` on the plugin JSON;
//! - started for real (a real etcd, every port moved to a free one), `demo.sh` itself, run by
//!   `sh`, shows a keyed POST executed on Envoy 1, its retry on Envoy 2 replayed byte for byte
//!   with `Idempotent-Replayed: true`, one execution at the payments service, and `422` for
//!   the same key with another body on both Envoys.
//!
//! (`tests/configs.rs` also runs levee's validator on these files' plugin JSON, with every
//! other YAML under `envoy/`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::etcd::Etcd;
use harness::peers::{free_port, peer_dir};
use harness::{crate_root, envoy_bin, try_send, Request};

/// Where the demo's configs load levee.wasm from, relative to the repository root.
const DEMO_WASM: &str = "target/wasm32-wasip1/release/levee.wasm";

/// The demo's fixed ports, as the files and `make run-mesh` use them.
const ENVOY_1: u16 = 10001;
const ADMIN_1: u16 = 9902;
const ENVOY_2: u16 = 10002;
const ADMIN_2: u16 = 9903;
const PAYMENTS: u16 = 10090;
const PAYMENTS_ADMIN: u16 = 9904;
const ETCD: u16 = 12379;

fn mesh_file(name: &str) -> String {
    let path = crate_root().join("envoy/mesh").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The levee.wasm the tests run: `$LEVEE_WASM`, else the demo's own path.
fn wasm() -> PathBuf {
    std::env::var_os("LEVEE_WASM").map_or_else(|| crate_root().join(DEMO_WASM), PathBuf::from)
}

/// `text` with each `(from, to)` replaced; every `from` must be there.
fn replaced(text: &str, pairs: &[(String, String)]) -> String {
    pairs.iter().fold(text.to_string(), |t, (from, to)| {
        assert!(t.contains(from.as_str()), "`{from}` not found");
        t.replace(from.as_str(), to)
    })
}

fn port_value(from: u16, to: u16) -> (String, String) {
    (format!("port_value: {from}"), format!("port_value: {to}"))
}

/// The plugin JSON of a levee Envoy config: the block under `value: |`.
fn plugin_json(yaml: &str) -> serde_json::Value {
    let lines: Vec<&str> = yaml.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.trim() == "value: |")
        .expect("no `value: |` block");
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_indent = indent(lines[at]);
    let body: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
        .copied()
        .collect();
    let text = body.join("\n");
    if let Err(e) = levee::footprint::validate(text.as_bytes()) {
        panic!("levee refuses the mesh demo's plugin JSON: {e}");
    }
    serde_json::from_str(&text).unwrap()
}

fn envoy_validate(config: &Path) {
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(config)
        .current_dir(crate_root())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", envoy_bin().display()));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains(" OK"),
        "{} is invalid:\n{text}",
        config.display()
    );
}

#[test]
fn the_two_levee_envoys_share_one_etcd_backed_config_and_every_file_passes_envoy_validate() {
    let one = mesh_file("envoy-1.yaml");
    let two = mesh_file("envoy-2.yaml");
    let expected = replaced(
        &one,
        &[
            port_value(ENVOY_1, ENVOY_2),
            port_value(ADMIN_1, ADMIN_2),
            ("[envoy-1]".into(), "[envoy-2]".into()),
            ("Envoy 1 of 2".into(), "Envoy 2 of 2".into()),
        ],
    );
    assert!(
        two == expected,
        "envoy-2.yaml must be envoy-1.yaml with ports {ENVOY_2}/{ADMIN_2} and the tag [envoy-2]"
    );

    let config = plugin_json(&one);
    let backend = config["idempotency"]["backend"]
        .as_str()
        .expect("idempotency.backend");
    assert_eq!(config["backends"][backend]["etcd"]["cluster"], "etcd");
    assert!(one.contains("- name: etcd") && one.contains(&format!("port_value: {ETCD}")));
    assert!(one.contains(&format!("port_value: {PAYMENTS}")));
    assert!(mesh_file("payments.yaml").contains(&format!("port_value: {PAYMENTS}")));

    let scratch = Scratch(peer_dir("mesh-validate"));
    for name in ["envoy-1.yaml", "envoy-2.yaml", "payments.yaml"] {
        let copy = scratch.0.join(name);
        let text = mesh_file(name).replace(DEMO_WASM, wasm().to_str().unwrap());
        std::fs::write(&copy, text).unwrap();
        envoy_validate(&copy);
    }
}

/// A temp dir removed on drop unless the test failed (then it keeps configs and logs).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// An Envoy of the demo on its moved ports, killed on drop.
struct DemoEnvoy {
    child: Child,
    admin: u16,
    log: PathBuf,
}

impl Drop for DemoEnvoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} ---\n{}",
                self.log.display(),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl DemoEnvoy {
    fn start(dir: &Path, name: &str, text: &str, admin: u16, concurrency: &str) -> DemoEnvoy {
        let config = dir.join(name);
        std::fs::write(&config, text).unwrap();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .args(["--concurrency", concurrency, "--disable-hot-restart"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        DemoEnvoy { child, admin, log }
    }

    fn admin_get(&self, path: &str) -> Option<String> {
        let r = try_send(self.admin, &Request::get(path)).ok()?;
        (r.status == 200).then(|| r.text())
    }

    /// Waits until `ok(admin answer to path)`; panics (with the log, on drop) if not in 30 s.
    fn wait_for(&mut self, path: &str, ok: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "{} exited",
                self.log.display()
            );
            if self.admin_get(path).is_some_and(|t| ok(&t)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: admin {path} not as expected within 30 s",
            self.log.display()
        );
    }
}

/// The responses in `curl -si` output: (status, header lines lowercased, body).
fn responses(out: &str) -> Vec<(u16, Vec<String>, String)> {
    out.split("HTTP/1.1 ")
        .skip(1)
        .map(|chunk| {
            let (head, body) = chunk.split_once("\r\n\r\n").unwrap_or((chunk, ""));
            let mut lines = head.lines();
            let status = lines.next().unwrap()[..3].parse().unwrap();
            let headers = lines.map(|l| l.trim().to_ascii_lowercase()).collect();
            let body = body.lines().next().unwrap_or("").to_string();
            (status, headers, body)
        })
        .collect()
}

#[test]
fn the_mesh_demo_runs_as_demo_sh_shows_a_retry_on_the_other_envoy_replayed() {
    let etcd = Etcd::single();
    let scratch = Scratch(peer_dir("mesh-demo"));
    let dir = scratch.0.clone();
    let (e1, a1, e2, a2) = (free_port(), free_port(), free_port(), free_port());
    let (pay, pay_admin) = (free_port(), free_port());
    let etcd_port = etcd.client_port(0);
    let moved = |text: &str| {
        replaced(
            text,
            &[
                port_value(ENVOY_1, e1),
                port_value(ADMIN_1, a1),
                port_value(ENVOY_2, e2),
                port_value(ADMIN_2, a2),
                port_value(PAYMENTS, pay),
                port_value(PAYMENTS_ADMIN, pay_admin),
                port_value(ETCD, etcd_port),
                (DEMO_WASM.into(), wasm().display().to_string()),
            ]
            .into_iter()
            .filter(|(from, _)| text.contains(from.as_str()))
            .collect::<Vec<_>>(),
        )
    };
    let mut envoys = [
        DemoEnvoy::start(
            &dir,
            "payments.yaml",
            &moved(&mesh_file("payments.yaml")),
            pay_admin,
            "1",
        ),
        DemoEnvoy::start(
            &dir,
            "envoy-1.yaml",
            &moved(&mesh_file("envoy-1.yaml")),
            a1,
            "2",
        ),
        DemoEnvoy::start(
            &dir,
            "envoy-2.yaml",
            &moved(&mesh_file("envoy-2.yaml")),
            a2,
            "2",
        ),
    ];
    for envoy in &mut envoys {
        envoy.wait_for("/ready", |t| t.trim() == "LIVE");
    }
    // As make run-mesh does: wait for each levee Envoy's first health check of etcd.
    let healthy = format!("etcd::127.0.0.1:{etcd_port}::health_flags::healthy");
    for envoy in &mut envoys[1..] {
        envoy.wait_for("/clusters", |t| t.lines().any(|l| l == healthy));
    }

    let script = replaced(
        &mesh_file("demo.sh"),
        &[
            (format!("localhost:{ENVOY_1}/"), format!("localhost:{e1}/")),
            (format!("localhost:{ENVOY_2}/"), format!("localhost:{e2}/")),
            (
                format!("localhost:{PAYMENTS_ADMIN}/"),
                format!("localhost:{pay_admin}/"),
            ),
        ],
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run sh (the demo uses curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rs = responses(&text);
    let statuses: Vec<u16> = rs.iter().map(|r| r.0).collect();
    assert_eq!(statuses, [201, 201, 422, 422], "{text}");
    let replayed =
        |r: &(u16, Vec<String>, String)| r.1.iter().any(|h| h == "idempotent-replayed: true");
    assert!(!replayed(&rs[0]), "the first POST executes:\n{text}");
    assert!(
        replayed(&rs[1]),
        "the retry on Envoy 2 is a replay:\n{text}"
    );
    assert!(rs[0].2.contains("charge_id"), "{text}");
    assert_eq!(rs[1].2, rs[0].2, "the replay carries the first charge_id");
    assert!(
        text.lines()
            .any(|l| l.trim() == "http.payments.downstream_rq_completed: 1"),
        "the payments service executed once:\n{text}"
    );
    drop(etcd);
}
