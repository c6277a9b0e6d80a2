//! Real etcd members on loopback for the idempotency backend: one member, or a three-member
//! cluster whose members can be killed and restarted, with "who is the leader".
//!
//! Why a real etcd: what levee relies on (an atomic create-if-absent Txn, revisions as fencing
//! tokens, no acknowledged write lost when the leader dies) is etcd's behaviour, not a fake's.
//! Members run Debian's `etcd` (3.4, installed by `make peers`) with short heartbeat and
//! election timeouts so a leader loss is repaired in about a second, data in RAM
//! (`/dev/shm` when present) so fsync costs nothing, and ports picked free on 127.0.0.1.
//! Status comes from each member's JSON gateway (`POST /v3/maintenance/status`), so no
//! `etcdctl` is needed. Dropping an [`Etcd`] kills its members and removes their data.

use super::client::{try_send, Request};
use super::peers::{free_port, kill_child, peer_dir_in, peer_program};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster (one or more members).
pub struct Etcd {
    members: Vec<Member>,
    initial_cluster: String,
    dir: PathBuf,
    extra_args: Vec<String>,
}

impl Etcd {
    /// One member, ready to serve.
    pub fn single() -> Etcd {
        Etcd::cluster(1)
    }

    /// `n` members that elected a leader.
    pub fn cluster(n: usize) -> Etcd {
        Etcd::cluster_with(n, &[])
    }

    /// One member whose database may grow to `bytes` (`--quota-backend-bytes`); past it etcd
    /// raises its NOSPACE alarm and refuses every write with "database space exceeded".
    pub fn single_with_quota(bytes: u64) -> Etcd {
        Etcd::cluster_with(1, &[&format!("--quota-backend-bytes={bytes}")])
    }

    /// `n` members started with extra `etcd` flags (e.g. `--quota-backend-bytes=...`).
    pub fn cluster_with(n: usize, extra_args: &[&str]) -> Etcd {
        let base = if PathBuf::from("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = peer_dir_in(&base, "etcd");
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.join(format!("m{i}.data")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            initial_cluster,
            dir,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        for i in 0..n {
            etcd.spawn(i);
        }
        etcd.wait_for_leader(READY_TIMEOUT);
        etcd
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", m.log.display()));
        let child = Command::new(peer_program("etcd"))
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &self.initial_cluster])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "levee-test",
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run etcd ({e}); run `make peers`"));
        self.members[i].child = Some(child);
    }

    /// Client ports (gRPC and the JSON gateway) of every member, running or not.
    pub fn client_ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// The client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.members[i].client_port
    }

    /// Kills member `i` (SIGKILL: no clean shutdown, as a crash).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            kill_child(&mut child);
        }
    }

    /// Restarts member `i` on its data and ports; it rejoins the cluster.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// Whether member `i` runs.
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Member `i`'s status from its JSON gateway: `(its member id, the leader's id)`.
    pub fn status(&self, i: usize) -> Option<(String, String)> {
        let req = Request::post("/v3/maintenance/status", "{}").timeout(Duration::from_millis(500));
        let r = try_send(self.members[i].client_port, &req).ok()?;
        if r.status != 200 {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
        let me = v["header"]["member_id"].as_str()?.to_string();
        let leader = v["leader"].as_str()?.to_string();
        (leader != "0").then_some((me, leader))
    }

    /// A call to member `i`'s JSON gateway (`path` such as `/v3/kv/range`); its JSON answer.
    pub fn gateway(
        &self,
        i: usize,
        path: &str,
        body: serde_json::Value,
    ) -> Option<serde_json::Value> {
        let req = Request::post(path, body.to_string()).timeout(Duration::from_secs(5));
        let r = try_send(self.members[i].client_port, &req).ok()?;
        if r.status != 200 {
            return None;
        }
        serde_json::from_slice(&r.body).ok()
    }

    /// The size of member `i`'s database, as etcd measures it against its quota.
    pub fn db_size(&self, i: usize) -> Option<u64> {
        let v = self.gateway(i, "/v3/maintenance/status", serde_json::json!({}))?;
        v["dbSize"].as_str()?.parse().ok()
    }

    /// The alarms raised in the cluster (e.g. `"NOSPACE"`), as member `i` reports them.
    pub fn alarms(&self, i: usize) -> Vec<String> {
        let v = self.gateway(
            i,
            "/v3/maintenance/alarm",
            serde_json::json!({ "action": "GET" }),
        );
        v.and_then(|v| v["alarms"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|a| a["alarm"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every key under `prefix` with the size in bytes of its value, read from member `i`.
    pub fn sizes_under(&self, i: usize, prefix: &str) -> Vec<(String, usize)> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body =
            serde_json::json!({ "key": base64(prefix.as_bytes()), "range_end": base64(&end) });
        let v = self.gateway(i, "/v3/kv/range", body);
        v.and_then(|v| v["kvs"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|kv| {
                let key = kv["key"].as_str()?;
                let value = kv["value"].as_str().unwrap_or("");
                Some((
                    String::from_utf8_lossy(&unbase64(key)).into_owned(),
                    unbase64(value).len(),
                ))
            })
            .collect()
    }

    /// Compacts the history to the current revision and defragments member `i`: frees what
    /// old revisions held (not the records themselves).
    pub fn compact_and_defragment(&self, i: usize) {
        let status = self.gateway(i, "/v3/maintenance/status", serde_json::json!({}));
        let revision = status
            .as_ref()
            .and_then(|v| v["header"]["revision"].as_str())
            .unwrap_or_else(|| panic!("no status from member {i}"))
            .to_string();
        let compact = serde_json::json!({ "revision": revision, "physical": true });
        let compacted = self.gateway(i, "/v3/kv/compaction", compact);
        assert!(compacted.is_some(), "compaction");
        let defrag = self.gateway(i, "/v3/maintenance/defragment", serde_json::json!({}));
        assert!(defrag.is_some(), "defragment");
    }

    /// Disarms every alarm (NOSPACE), as `etcdctl alarm disarm` does.
    pub fn disarm(&self, i: usize) {
        let get = serde_json::json!({ "action": "GET" });
        let alarms = self.gateway(i, "/v3/maintenance/alarm", get);
        for alarm in alarms
            .and_then(|v| v["alarms"].as_array().cloned())
            .unwrap_or_default()
        {
            let disarm = serde_json::json!({
                "action": "DEACTIVATE", "memberID": alarm["memberID"], "alarm": alarm["alarm"],
            });
            let done = self.gateway(i, "/v3/maintenance/alarm", disarm);
            assert!(done.is_some(), "disarm");
        }
    }

    /// Restarts member `i` with other extra flags (say a larger `--quota-backend-bytes`), on
    /// its data and ports.
    pub fn restart_with(&mut self, i: usize, extra_args: &[&str]) {
        self.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        self.restart(i);
    }

    /// The index of the member every running member agrees is the leader, if any.
    pub fn leader(&self) -> Option<usize> {
        let statuses: Vec<(usize, (String, String))> = (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .filter_map(|i| Some((i, self.status(i)?)))
            .collect();
        let running = (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .count();
        let (_, (_, leader_id)) = statuses.first()?;
        let agreed = statuses.len() == running && statuses.iter().all(|(_, (_, l))| l == leader_id);
        if !agreed {
            return None;
        }
        statuses
            .iter()
            .find(|(_, (me, _))| me == leader_id)
            .map(|(i, _)| *i)
    }

    /// Waits until the running members agree on a leader; panics with their logs if not.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            if Instant::now() > deadline {
                panic!("etcd elected no leader within {timeout:?}\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every member's log.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                format!(
                    "--- {} ---\n{}",
                    m.name,
                    fs::read_to_string(&m.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (what etcd's JSON gateway takes for `bytes` fields).
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, b)| n | u32::from(*b) << (16 - 8 * k));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes of standard base64 text (padding and unknown characters ignored).
fn unbase64(text: &str) -> Vec<u8> {
    let sextets: Vec<u32> = text
        .bytes()
        .filter_map(|c| BASE64.iter().position(|b| *b == c).map(|p| p as u32))
        .collect();
    let mut out = Vec::new();
    for chunk in sextets.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (k, s)| n | s << (18 - 6 * k));
        for k in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * k)) as u8);
        }
    }
    out
}
