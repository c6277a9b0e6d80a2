//! A real Envoy process per test, with levee (or any wasm filter) loaded.
//!
//! Why a real Envoy: what levee must prove — exact limits across worker VMs, paused requests
//! resumed from timers, callouts, shared data without delete — only exists in Envoy's wasm
//! host. Each [`Envoy`] runs in its own temp dir with ephemeral ports (the OS picks them, Envoy
//! reports them: `--admin-address-path` and the admin `/listeners`) and without hot restart
//! (no shared-memory region to clash on), so tests run in parallel. Its log is in
//! `<dir>/envoy.log` (stderr, flushed per line — `--log-path` buffers for seconds). When a test
//! panics, the dir is kept and the log's tail is printed.

use super::envoy_config::{self, LISTENER_NAME};
pub use super::envoy_config::{crate_root, EnvoyOptions, Route};
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long Envoy may take to become ready (or to apply a reload).
const READY_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

/// A running Envoy; dropping it kills the process.
pub struct Envoy {
    child: Child,
    dir: PathBuf,
    port: u16,
    admin_port: u16,
    opts: EnvoyOptions,
    /// Keep the temp dir on drop (`LEVEE_KEEP_ENVOY_DIR` set; a panicking test always keeps it).
    keep_dir: bool,
}

/// `$ENVOY_BIN`, else `<crate root>/.venv/bin/envoy` (what `make envoy` installs).
pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN")
        .map_or_else(|| crate_root().join(".venv/bin/envoy"), PathBuf::from)
}

impl Envoy {
    /// Starts Envoy and waits until it serves; panics with Envoy's log if it cannot.
    pub fn start(opts: EnvoyOptions) -> Envoy {
        Envoy::try_start(opts).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts Envoy; `Err` carries Envoy's log when it exits, rejects the listener (e.g. the
    /// plugin refused its config) or is not ready within 20 s.
    pub fn try_start(opts: EnvoyOptions) -> Result<Envoy, String> {
        let dir = unique_dir();
        let lds_dir = dir.join("lds");
        fs::create_dir_all(&lds_dir).map_err(|e| format!("create {}: {e}", lds_dir.display()))?;
        let lds_path = lds_dir.join("lds.json");
        write_json(&lds_path, &envoy_config::lds(&opts))?;
        let bootstrap = dir.join("bootstrap.json");
        write_json(&bootstrap, &envoy_config::bootstrap(&opts, &lds_path))?;
        let log_path = dir.join("envoy.log");
        let log = fs::File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
        let bin = envoy_bin();
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&bootstrap)
            .args(["--concurrency", &opts.concurrency.to_string()])
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(dir.join("admin.txt"))
            .args(["-l", "info", "--component-log-level"])
            .arg(format!("wasm:{}", opts.wasm_log_level))
            .args(["--drain-time-s", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run Envoy at {} ({e}); run `make envoy` or set ENVOY_BIN",
                    bin.display()
                )
            })?;
        let mut envoy = Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
            opts,
            keep_dir: std::env::var_os("LEVEE_KEEP_ENVOY_DIR").is_some(),
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => {
                let _ = envoy.child.kill();
                let _ = envoy.child.wait();
                let kept = if envoy.keep_dir {
                    "kept"
                } else {
                    "removed; LEVEE_KEEP_ENVOY_DIR=1 keeps it"
                };
                Err(format!(
                    "Envoy did not start: {why} (config and log in {}, {kept})\n--- envoy log ---\n{}",
                    envoy.dir.display(),
                    envoy.log()
                ))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("Envoy exited with {status}"));
            }
            if self.admin_port == 0 {
                self.admin_port = fs::read_to_string(self.dir.join("admin.txt"))
                    .ok()
                    .and_then(|a| a.trim().rsplit(':').next()?.parse().ok())
                    .unwrap_or(0);
            }
            if self.admin_port != 0 && self.admin("/ready").is_ok_and(|r| r.trim() == "LIVE") {
                if self.stat("listener_manager.lds.update_rejected") > 0 {
                    return Err("the listener (with the wasm filter) was rejected".to_string());
                }
                if let Some(port) = self.listener_port() {
                    self.port = port;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready within {READY_TIMEOUT:?}"));
            }
            thread::sleep(POLL);
        }
    }

    fn listener_port(&self) -> Option<u16> {
        let body = self.admin("/listeners?format=json").ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["listener_statuses"]
            .as_array()?
            .iter()
            .find(|l| l["name"] == LISTENER_NAME)?["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
    }

    /// Starts Envoy expecting levee to refuse its plugin config; returns levee's one
    /// `levee config: …` error line from Envoy's log (panics if Envoy started, or no such line).
    pub fn refused_config_line(opts: EnvoyOptions) -> String {
        let log = match Envoy::try_start(opts) {
            Ok(_) => panic!("Envoy accepted a config levee must refuse"),
            Err(log) => log,
        };
        log.lines()
            .find(|l| l.contains("levee config"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no levee config error line; log:\n{log}"))
    }

    /// Swaps in a new plugin JSON through LDS, as a control plane would; waits until Envoy
    /// applied it. `Err` (with the log) if Envoy rejected it.
    pub fn reload(&mut self, plugin_config: &str) -> Result<(), String> {
        self.opts.plugin_config = plugin_config.to_string();
        let success = self.stat("listener_manager.lds.update_success");
        let rejected = self.stat("listener_manager.lds.update_rejected");
        // Write beside the watched dir, then move in: Envoy reacts to the move, never to a half-written file.
        let tmp = self.dir.join("lds.json.tmp");
        write_json(&tmp, &envoy_config::lds(&self.opts))?;
        fs::rename(&tmp, self.dir.join("lds/lds.json"))
            .map_err(|e| format!("rename LDS file: {e}"))?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if self.stat("listener_manager.lds.update_rejected") > rejected {
                return Err(format!(
                    "Envoy rejected the new config\n--- envoy log ---\n{}",
                    self.log()
                ));
            }
            if self.stat("listener_manager.lds.update_success") > success
                && self.stat("listener_manager.total_listeners_warming") == 0
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "reload not applied within {READY_TIMEOUT:?}\n{}",
                    self.log()
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// Kills Envoy with SIGKILL, as a crashed or evicted pod: no drain, no goodbye to its
    /// upstreams or backends. The temp dir stays until the [`Envoy`] is dropped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes Envoy (SIGSTOP), as a long pause of the whole process (a stalled node, a
    /// frozen container): its timers and callbacks wait; the kernel still accepts connections.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// Lets a [`Envoy::pause`]d Envoy run again (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    /// The listener port on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin port on `127.0.0.1`.
    pub fn admin_port(&self) -> u16 {
        self.admin_port
    }

    /// Envoy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The options this Envoy runs with (after any [`Envoy::reload`]).
    pub fn options(&self) -> &EnvoyOptions {
        &self.opts
    }

    /// The temp dir holding the bootstrap, the LDS file and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Everything Envoy logged so far.
    pub fn log(&self) -> String {
        fs::read(self.dir.join("envoy.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `GET` an admin path (e.g. `/stats/prometheus`); the body as text.
    pub fn admin(&self, path: &str) -> Result<String, String> {
        admin_get(self.admin_port, path).map_err(|e| format!("admin {path}: {e}"))
    }

    /// Counters and gauges by full name (histograms and text readouts are left out).
    pub fn stats(&self) -> HashMap<String, u64> {
        self.admin("/stats")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(": ")?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect()
    }

    /// One counter or gauge; 0 when absent. levee's own metrics (`levee_*`) are looked up
    /// under Envoy's `wasmcustom.` prefix and must exist (levee defines every metric at
    /// configure time), so a misspelt name fails the test instead of reading as 0.
    pub fn stat(&self, name: &str) -> u64 {
        let full = if name.starts_with("levee_") {
            format!("wasmcustom.{name}")
        } else {
            name.to_string()
        };
        let filter = percent_encode(&format!("^{}$", regex_escape(&full)));
        let body = self
            .admin(&format!("/stats?filter={filter}"))
            .unwrap_or_default();
        let value = body
            .lines()
            .filter_map(|l| l.rsplit_once(": "))
            .find(|(n, _)| *n == full)
            .and_then(|(_, v)| v.trim().parse().ok());
        match value {
            Some(v) => v,
            None if name.starts_with("levee_") => {
                panic!("levee metric {name} is not defined; /stats says:\n{body}")
            }
            None => 0,
        }
    }

    /// Waits until stat `name` is at least `at_least`; returns its last value.
    pub fn wait_for_stat(&self, name: &str, at_least: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.stat(name);
            if v >= at_least || Instant::now() > deadline {
                return v;
            }
            thread::sleep(POLL);
        }
    }

    /// Resident memory of the Envoy process (VmRSS), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kb * 1024)
            })
            .unwrap_or(0)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last Envoy log lines (full log and config kept in {}) ---",
                self.dir.display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else if !self.keep_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid` with `kill(1)`.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .unwrap_or_else(|e| panic!("cannot run kill ({e})"));
    assert!(status.success(), "kill {signal} {pid} failed");
}

fn admin_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut reader = std::io::BufReader::new(body.as_bytes());
        let decoded = super::wire::read_body(&mut reader, super::wire::BodyFraming::Chunked)?;
        return Ok(String::from_utf8_lossy(&decoded).into_owned());
    }
    Ok(body.to_string())
}

fn unique_dir() -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::env::temp_dir().join(format!(
        "levee-envoy-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}
