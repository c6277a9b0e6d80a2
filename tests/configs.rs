//! The configs levee ships stay valid and do what their comments say, so a broken demo fails
//! `make test`, not a user:
//!
//! - `envoy/envoy.yaml` passes `envoy --mode validate` as shipped (which also runs levee's
//!   `on_configure` on its plugin JSON), and so does the exact invocation of
//!   `envoy/docker-compose.yaml`, rebuilt as a directory tree where the container would see it;
//! - every levee plugin JSON embedded in `envoy/**.yaml` (the demo, the Istio `WasmPlugin` and
//!   `EnvoyFilter`) passes levee's own validator, and the Istio files carry the same
//!   `stats_tags` as the demo;
//! - the demo, started for real, serves each pattern the way `envoy/demo.sh` shows, its
//!   `stats_tags` turn limit and upstream names into Prometheus labels, and every series the
//!   shipped Grafana dashboard and alert rules query is in its `/stats/prometheus`.
//!
//! No YAML parser: the files are read with a few line rules that their layout follows (a
//! plugin JSON is the block under `value: |` or `pluginConfig:` and starts with `{`), and each
//! rule fails loudly when it finds nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod ops_files;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{burst, crate_root, envoy_bin, send, try_send, Request, Response};

/// Where `envoy/envoy.yaml` points levee.wasm, relative to the repository root.
const DEMO_WASM: &str = "target/wasm32-wasip1/release/levee.wasm";

fn envoy_dir() -> PathBuf {
    crate_root().join("envoy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn demo_yaml() -> String {
    read(&envoy_dir().join("envoy.yaml"))
}

/// The levee.wasm the tests run: `$LEVEE_WASM`, else the demo's own path.
fn wasm() -> PathBuf {
    std::env::var_os("LEVEE_WASM").map_or_else(|| crate_root().join(DEMO_WASM), PathBuf::from)
}

/// A fresh directory under the system temp dir, removed on drop unless the test failed
/// (then it keeps the configs and Envoy's log for a look).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn temp_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("levee-configs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// Every `*.yaml` under `envoy/`, sorted.
fn shipped_yaml_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&envoy_dir(), &mut files);
    files.sort();
    files
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The blocks under `value: |` (a StringValue block scalar) or `pluginConfig:` (a WasmPlugin's
/// mapping, written as JSON) whose text starts with `{`: the levee plugin JSONs of a file, with
/// their line numbers.
fn embedded_plugin_configs(yaml: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        // `pluginConfig:` (a WasmPlugin) holds a mapping, written as a JSON flow mapping.
        let is_block = ["value: |", "value: |-", "pluginConfig:"].contains(&t);
        if !is_block {
            continue;
        }
        let key_indent = indent(line);
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
            .copied()
            .collect();
        let text = body.join("\n");
        if text.trim_start().starts_with('{') {
            found.push((i + 2, text));
        }
    }
    found
}

/// The value of the first `key: value` line (quotes removed), e.g. `filename` or `working_dir`.
fn scalar(yaml: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    yaml.lines().find_map(|l| {
        let t = l.trim().trim_start_matches("- ");
        // `code: { local: { filename: x } }` keeps the key inside a flow mapping.
        let at = t.find(&prefix)?;
        let rest = t[at + prefix.len()..].trim();
        let value = rest.split([' ', '}', ',']).next()?.trim();
        (!value.is_empty()).then(|| unquote(value))
    })
}

/// A YAML scalar without its quotes (`'a''b'` → `a'b`, `"a"` → `a`).
fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        s[1..s.len() - 1].replace("\\\"", "\"")
    } else {
        s.to_string()
    }
}

/// `stats_tags` entries as `(tag_name, regex)`: a `tag_name:` line followed by a `regex:` line.
fn stats_tags(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().map(str::trim).collect();
    lines
        .windows(2)
        .filter_map(|w| {
            let name = w[0].trim_start_matches("- ").strip_prefix("tag_name:")?;
            let regex = w[1].trim_start_matches("- ").strip_prefix("regex:")?;
            Some((unquote(name), unquote(regex)))
        })
        .filter(|(name, _)| name.starts_with("levee_"))
        .collect()
}

/// The list items under `key:` (a block sequence), quotes removed.
fn block_list(yaml: &str, key: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("{key}:"))
        .unwrap_or_else(|| panic!("no `{key}:` list"));
    let key_indent = indent(lines[start]);
    lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key_indent)
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(unquote)
        .collect()
}

/// Runs `envoy --mode validate` with `args` in `cwd`; `Err` carries Envoy's output.
fn envoy_validate(args: &[String], cwd: &Path) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .arg("--mode")
        .arg("validate")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", envoy_bin().display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains(" OK") {
        Ok(())
    } else {
        Err(text)
    }
}

#[test]
fn the_demo_envoy_yaml_passes_envoy_validate() {
    let yaml = demo_yaml();
    assert_eq!(
        scalar(&yaml, "filename").as_deref(),
        Some(DEMO_WASM),
        "envoy.yaml must load levee.wasm from {DEMO_WASM} (make run, docker-compose.yaml)"
    );
    // As shipped (relative wasm path, run from the repository root) when that file is the one
    // under test, else with the wasm path replaced.
    let scratch = temp_dir("validate");
    let (args, cwd) = if wasm() == crate_root().join(DEMO_WASM) {
        (vec!["-c".into(), "envoy/envoy.yaml".into()], crate_root())
    } else {
        let copy = scratch.0.join("envoy.yaml");
        std::fs::write(&copy, yaml.replace(DEMO_WASM, wasm().to_str().unwrap())).unwrap();
        (
            vec!["-c".into(), copy.display().to_string()],
            scratch.0.clone(),
        )
    };
    envoy_validate(&args, &cwd).unwrap_or_else(|log| panic!("envoy.yaml is invalid:\n{log}"));
}

#[test]
fn docker_compose_runs_the_demo_yaml_with_levee_wasm_where_the_yaml_expects_it() {
    let compose = read(&envoy_dir().join("docker-compose.yaml"));
    let image = scalar(&compose, "image").expect("no image");
    assert!(
        image.starts_with("envoyproxy/envoy:v1.")
            || image.starts_with("envoyproxy/envoy:distroless-v1."),
        "{image}: use the official envoyproxy/envoy image"
    );
    let workdir = scalar(&compose, "working_dir").expect("no working_dir");

    // The container's file system, rebuilt under `root` from the bind mounts.
    let scratch = temp_dir("compose");
    let root = scratch.0.clone();
    let sources: Vec<String> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("source:"))
        .map(unquote)
        .collect();
    let targets: Vec<String> = compose
        .lines()
        .filter_map(|l| l.trim().strip_prefix("target:"))
        .map(unquote)
        .collect();
    assert_eq!(
        sources.len(),
        targets.len(),
        "every bind mount needs a source and a target"
    );
    assert!(
        targets.iter().any(|t| t.ends_with("levee.wasm")),
        "docker-compose.yaml must mount levee.wasm"
    );
    for (source, target) in sources.iter().zip(&targets) {
        let host = if source.ends_with("levee.wasm") {
            assert!(
                envoy_dir().join(source) == crate_root().join("envoy/..").join(DEMO_WASM),
                "{source}: mount what `make build` writes ({DEMO_WASM})"
            );
            wasm()
        } else {
            envoy_dir().join(source)
        };
        assert!(
            host.exists(),
            "{source} does not exist ({})",
            host.display()
        );
        let inside = root.join(target.trim_start_matches('/'));
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&host, &inside).unwrap();
    }

    // The container's command, with its absolute paths moved under `root`.
    let args: Vec<String> = block_list(&compose, "command")
        .into_iter()
        .map(|a| {
            if a.starts_with('/') {
                root.join(a.trim_start_matches('/')).display().to_string()
            } else {
                a
            }
        })
        .collect();
    assert!(
        args.iter().any(|a| a.ends_with("envoy/envoy.yaml")),
        "{args:?}"
    );
    let cwd = root.join(workdir.trim_start_matches('/'));
    envoy_validate(&args, &cwd)
        .unwrap_or_else(|log| panic!("docker-compose.yaml's Envoy would not start:\n{log}"));
}

#[test]
fn every_levee_config_embedded_in_the_shipped_yaml_passes_levees_validator() {
    let files = shipped_yaml_files();
    assert!(
        files.iter().any(|f| f.ends_with("istio/wasmplugin.yaml")),
        "{files:?}"
    );
    let mut checked = 0;
    for file in &files {
        let yaml = read(file);
        let configs = embedded_plugin_configs(&yaml);
        let loads_levee =
            yaml.contains("envoy.filters.http.wasm") || yaml.contains("kind: WasmPlugin");
        assert!(
            !loads_levee || !configs.is_empty(),
            "{}: loads a wasm filter but no levee JSON was found (a `value: |` or `pluginConfig:` block starting with `{{`)",
            file.display()
        );
        for (line, json) in configs {
            if let Err(e) = levee::footprint::validate(json.as_bytes()) {
                panic!("{}:{line}: {e}", file.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} embedded configs found");
}

#[test]
fn the_istio_wasmplugin_carries_the_envoyfilters_config_without_the_body_fingerprint() {
    let config = |name: &str| -> serde_json::Value {
        let configs = embedded_plugin_configs(&read(&envoy_dir().join("istio").join(name)));
        assert_eq!(configs.len(), 1, "{name}: one levee config expected");
        serde_json::from_str(&configs[0].1).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    // A WasmPlugin cannot set allow_on_headers_stop_iteration, so it reads no request body:
    // the same config, minus the one feature that needs the body (tests/istio.rs runs it).
    let mut wasmplugin = config("wasmplugin.yaml");
    let envoyfilter = config("envoyfilter.yaml");
    assert_eq!(wasmplugin["idempotency"]["fingerprint"], false);
    assert_eq!(envoyfilter["idempotency"].get("fingerprint"), None);
    wasmplugin["idempotency"]
        .as_object_mut()
        .unwrap()
        .remove("fingerprint");
    assert_eq!(wasmplugin, envoyfilter);
}

#[test]
fn the_istio_files_carry_the_demos_stats_tags() {
    let demo = stats_tags(&demo_yaml());
    assert_eq!(
        demo.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [
            "levee_limit",
            "levee_upstream",
            "levee_backend",
            "levee_result"
        ]
    );
    let istio: Vec<(String, String)> = shipped_yaml_files()
        .iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("istio")))
        .flat_map(|f| stats_tags(&read(f)))
        .collect();
    assert_eq!(
        istio, demo,
        "envoy/istio/ must use the same stats_tags as envoy/envoy.yaml"
    );
}

/// The demo Envoy on free ports, killed on drop.
struct Demo {
    child: Child,
    port: u16,
    admin: u16,
    log: PathBuf,
    dir: Option<Scratch>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Demo {
    /// `envoy/envoy.yaml` with its two ports moved to free ones (a port taken in between
    /// by another test is retried).
    fn start() -> Demo {
        let yaml = demo_yaml();
        assert!(yaml.contains("port_value: 10000") && yaml.contains("port_value: 9901"));
        let mut scratch = Some(temp_dir("demo"));
        let dir = scratch.as_ref().unwrap().0.clone();
        let mut last = String::new();
        for _ in 0..3 {
            let (port, admin) = (free_port(), free_port());
            let config = dir.join("envoy.yaml");
            let text = yaml
                .replace("port_value: 10000", &format!("port_value: {port}"))
                .replace("port_value: 9901", &format!("port_value: {admin}"))
                .replace(DEMO_WASM, wasm().to_str().unwrap());
            std::fs::write(&config, text).unwrap();
            let log = dir.join("envoy.log");
            let child = Command::new(envoy_bin())
                .args([
                    "-c",
                    config.to_str().unwrap(),
                    "--concurrency",
                    "2",
                    "--disable-hot-restart",
                ])
                .args(["--log-path", log.to_str().unwrap()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut demo = Demo {
                child,
                port,
                admin,
                log,
                dir: None,
            };
            if demo.wait_ready() {
                demo.dir = scratch.take();
                return demo;
            }
            last = std::fs::read_to_string(&demo.log).unwrap_or_default();
        }
        panic!("the demo did not start:\n{last}");
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if try_send(self.admin, &Request::get("/ready")).is_ok_and(|r| r.status == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn get(&self, path: &str) -> Response {
        send(self.port, &Request::get(path))
    }

    fn prometheus(&self) -> String {
        send(self.admin, &Request::get("/stats/prometheus")).text()
    }
}

fn pay(demo: &Demo, key: &str, body: &str) -> Response {
    send(
        demo.port,
        &Request::post("/payments", body.as_bytes().to_vec())
            .header("idempotency-key", key)
            .header("content-type", "application/json"),
    )
}

/// The value of one Prometheus sample, e.g. `levee_ratelimit_allowed{levee_limit="per-client"}`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[test]
fn the_demo_serves_each_pattern_as_demo_sh_shows_and_labels_its_metrics() {
    let demo = Demo::start();

    // 1. per-client token bucket: 5 × 200, then 429 with Retry-After.
    let codes: Vec<u16> = (0..8).map(|_| demo.get("/api/orders").status).collect();
    assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429, 429]);
    let r = demo.get("/api/orders");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("5"));

    // 2. shaper: 3 concurrent requests all pass, the last one ~1 s later (T = 500 ms).
    let shaped: Vec<(u16, Duration)> = burst(3, |_| {
        let r = demo.get("/shaped/report");
        (r.status, r.elapsed)
    });
    assert!(shaped.iter().all(|(s, _)| *s == 200), "{shaped:?}");
    let slowest = shaped.iter().map(|(_, d)| *d).max().unwrap();
    assert!(slowest >= Duration::from_millis(800), "{shaped:?}");

    // 3. idempotency: one charge, a byte-for-byte replay, 422 for another body.
    let first = pay(&demo, "order-42", r#"{"amount":100}"#);
    assert_eq!(first.status, 201, "{}", first.text());
    assert!(first.text().contains("charge_id"), "{}", first.text());
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = pay(&demo, "order-42", r#"{"amount":100}"#);
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(pay(&demo, "order-42", r#"{"amount":999}"#).status, 422);

    // 4. breaker: 2 failures in a row open it (the flaky upstream fails half the time).
    let open = (0..300)
        .map(|_| demo.get("/flaky"))
        .find(|r| r.header("x-levee-circuit").as_deref() == Some("open"))
        .expect("the circuit never opened");
    assert_eq!(open.status, 503);
    assert!(open.header("retry-after").is_some());

    // 5. callout retries: 1..=5 attempts, reported in x-levee-attempts.
    let retried: Vec<Response> = (0..10).map(|_| demo.get("/retry")).collect();
    for r in &retried {
        let n: u32 = r
            .header("x-levee-attempts")
            .expect("x-levee-attempts")
            .parse()
            .unwrap();
        assert!((1..=5).contains(&n), "{n}");
    }
    assert!(retried.iter().any(|r| r.status == 200));

    // 6. fallback: a failed attempt is answered by a stale copy of an earlier success, or
    // (nothing cached yet) by the static fallback; every answer is a 200.
    let mut fell_back = false;
    for _ in 0..40 {
        let r = demo.get("/fallback");
        assert_eq!(r.status, 200, "{}", r.text());
        match r.header("x-levee-fallback").as_deref() {
            Some("static") => {
                assert!(r.text().contains("static fallback"), "{}", r.text());
                fell_back = true;
            }
            Some("stale-cache") => {
                assert!(r.header("age").is_some());
                fell_back = true;
            }
            _ => {}
        }
        if fell_back {
            break;
        }
    }
    assert!(
        fell_back,
        "no fallback in 40 requests to a 50 % flaky upstream"
    );

    // 7. shadow: 21 requests inside one epoch-aligned 10 s window exceed its 20, so at least
    // one is counted as shadow-rejected (and none is refused). Wait until at least 5 s of the
    // current window are left, so the 21 cannot straddle a window boundary.
    wait_for_window_room(Duration::from_secs(10), Duration::from_secs(5));
    for _ in 0..21 {
        assert_eq!(demo.get("/").status, 200);
    }

    // 8. Prometheus names carry the limit / upstream as a label, never inside the name.
    let prom = demo.prometheus();
    let at =
        |series: &str| sample(&prom, series).unwrap_or_else(|| panic!("no {series} in:\n{prom}"));
    assert_eq!(
        at(r#"levee_ratelimit_allowed{levee_limit="per-client"}"#),
        5.0
    );
    assert_eq!(
        at(r#"levee_ratelimit_rejected{levee_limit="per-client"}"#),
        4.0
    );
    assert!(at(r#"levee_ratelimit_delayed{levee_limit="shaper"}"#) >= 1.0);
    assert!(at(r#"levee_ratelimit_shadow_rejected{levee_limit="everyone-shadow"}"#) >= 1.0);
    assert_eq!(at(r#"levee_breaker_opened{levee_upstream="flaky"}"#), 1.0);
    assert_eq!(at(r#"levee_breaker_state{levee_upstream="flaky"}"#), 1.0);
    assert!(at(r#"levee_upstream_attempts{levee_upstream="flaky-retry"}"#) >= 10.0);
    assert_eq!(at("levee_idempotency_replayed{}"), 1.0);
    assert_eq!(at("levee_idempotency_stored{}"), 1.0);
    // histogram_bucket_settings: attempt counts get buckets of their own. Histograms reach the
    // admin endpoint at Envoy's stats flush (every 5 s).
    let count = r#"levee_upstream_attempts_per_request_count{levee_upstream="flaky-retry"}"#;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut prom = prom;
    while sample(&prom, count) != Some(10.0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        prom = demo.prometheus();
    }
    assert_eq!(sample(&prom, count), Some(10.0), "{prom}");
    let bucket =
        r#"levee_upstream_attempts_per_request_bucket{levee_upstream="flaky-retry",le="2"}"#;
    assert!(sample(&prom, bucket).is_some(), "{prom}");
    for line in prom.lines().filter(|l| !l.starts_with('#')) {
        for (family, label) in [
            ("levee_ratelimit_", "{levee_limit=\""),
            ("levee_breaker_", "{levee_upstream=\""),
            ("levee_upstream_", "{levee_upstream=\""),
            ("levee_backend_", "{levee_backend=\""),
        ] {
            assert!(
                !line.starts_with(family) || line.contains(label),
                "a levee name escaped the stats_tags: {line}"
            );
        }
    }
    // 9. The shipped Grafana dashboard and alert rules query only series this Envoy exports
    // (the demo has no `backends`: tests/idempotency_etcd_quota.rs checks the levee_backend_*
    // ones against an Envoy whose records live in etcd).
    let backend_names = ops_files::backend_families();
    for name in ops_files::names_in_ops_files()
        .into_iter()
        .filter(|n| !backend_names.contains(n))
    {
        assert!(
            prom.lines()
                .any(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} "))),
            "{name}, used by envoy/grafana or envoy/prometheus, is not in /stats/prometheus:\n{prom}"
        );
    }
}

/// Sleeps until the current epoch-aligned window of length `window` has at least `room` left.
fn wait_for_window_room(window: Duration, room: Duration) {
    let window_ms = window.as_millis();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let left = window_ms - since_epoch % window_ms;
    if left < room.as_millis() {
        std::thread::sleep(Duration::from_millis(left as u64 + 50));
    }
}
