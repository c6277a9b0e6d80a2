//! Administering a test etcd through its JSON gateway, as an operator would with `etcdctl`:
//! the database size against the quota, the alarms, the records under a prefix with their
//! sizes, compaction and defragmentation, disarming NOSPACE.
//!
//! Why: proving what levee does when etcd is full needs etcd's view too (the alarm is raised,
//! what a record weighs, that freeing space brings service back), without an `etcdctl` binary.

use super::etcd::Etcd;

impl Etcd {
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
