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
    /// A second client port serving TLS (with `--cert-file` and co. among the extra flags).
    tls_port: Option<u16>,
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

    /// One member that also serves clients over TLS on [`Etcd::tls_port`], with
    /// `tls_args` (`--cert-file`, `--key-file`, `--trusted-ca-file`, `--client-cert-auth`).
    /// Its plain port stays for the harness's own status calls.
    pub fn single_tls(tls_args: &[&str]) -> Etcd {
        Etcd::start(1, tls_args, true)
    }

    /// `n` members started with extra `etcd` flags (e.g. `--quota-backend-bytes=...`).
    pub fn cluster_with(n: usize, extra_args: &[&str]) -> Etcd {
        Etcd::start(n, extra_args, false)
    }

    fn start(n: usize, extra_args: &[&str], tls: bool) -> Etcd {
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
                tls_port: tls.then(free_port),
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
        let mut client = format!("http://127.0.0.1:{}", m.client_port);
        if let Some(port) = m.tls_port {
            client.push_str(&format!(",https://127.0.0.1:{port}"));
        }
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

    /// The TLS client port of member `i` (started with [`Etcd::single_tls`]).
    pub fn tls_port(&self, i: usize) -> u16 {
        self.members[i].tls_port.expect("started with TLS")
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
