//! The `levee` binary as an operator runs it: `check` on a good and a bad file, `schema`,
//! `--help`, and the exit codes scripts rely on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Output};

fn levee(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(args)
        .output()
        .unwrap()
}

/// Writes `text` to a file unique to this test and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("levee-cli-{}-{name}.json", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_prints_ok_and_the_effective_config_with_defaults() {
    let path = config_file(
        "good",
        r#"{"rate_limits": [{"name": "per-ip", "key": ["client_ip"], "limit": 5, "window": "1s"}]}"#,
    );
    let out = levee(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let (first, rest) = text.split_once('\n').unwrap();
    // 16384 buckets of 5.7 MiB, the hash secret, the CAS probe key and the provisioned marker.
    assert_eq!(
        first,
        "ok: shared-data bound 5.7 MiB (5996544 bytes) of the 512 MiB ceiling \
         (limits.max_memory_bytes); configure creates 16387 shared-data keys (~0.0 s at ~250000 keys/s)"
    );
    let effective: serde_json::Value = serde_json::from_str(rest).unwrap();
    assert_eq!(effective["rate_limits"][0]["algorithm"], "token_bucket");
    assert_eq!(effective["rate_limits"][0]["burst"], 5);
    assert_eq!(effective["client_ip"]["ipv6_prefix"], 64);
    std::fs::remove_file(path).ok();
}

#[test]
fn check_prints_the_line_envoy_would_log_and_exits_1() {
    let doc = r#"{"rate_limits": [{"name": "a", "limit": 1, "window": "1s"}, {"name": "b", "limit": 1, "window": "10 parsecs"}]}"#;
    let path = config_file("bad", doc);
    let out = levee(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "levee config: rate_limits[1].window: \"10 parsecs\" is not a duration (use e.g. \"500ms\", \"1m\")\n"
    );
    assert_eq!(stdout(&out), "");
    // The very line the filter returns from `on_configure`.
    assert_eq!(
        stderr(&out).trim_end(),
        levee::config::parse(doc.as_bytes())
            .unwrap_err()
            .to_string()
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn check_refuses_a_config_whose_memory_bound_exceeds_the_ceiling() {
    let doc = r#"{"limits": {"max_tracked_keys": 16777216}, "idempotency": {}}"#;
    let path = config_file("huge", doc);
    let out = levee(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("levee config: limits.max_memory_bytes: this config's shared-data tables can take 5.1 GiB (5582618624 bytes), over the ceiling of 512 MiB (536870912 bytes)"),
        "{err}"
    );
    assert!(
        err.contains("raise limits.max_memory_bytes to at least 5582618624"),
        "{err}"
    );
    std::fs::remove_file(path).ok();

    let raised = r#"{"limits": {"max_tracked_keys": 16777216, "max_memory_bytes": 5582618624}, "idempotency": {}}"#;
    let path = config_file("huge-raised", raised);
    let out = levee(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("ok: shared-data bound 5.1 GiB (5582618624 bytes) of the 5.1 GiB ceiling (limits.max_memory_bytes); configure creates 20971524 shared-data keys"),
        "{}",
        stdout(&out)
    );
    std::fs::remove_file(path).ok();
}

#[test]
fn check_of_a_missing_file_is_a_usage_error() {
    let out = levee(&["check", "/nonexistent/levee.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("levee: cannot read /nonexistent/levee.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = levee(&["schema"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), levee::config::schema::json_schema_pretty());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
}

#[test]
fn reference_prints_the_committed_config_reference_page() {
    let out = levee(&["reference"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert_eq!(page, levee::config::reference::reference_markdown());
    assert!(page.starts_with("# Configuration fields\n"));
    assert!(page.contains("| `max_tracked_keys` | integer | `65536` |"));
}

#[test]
fn help_and_bad_usage() {
    let help = levee(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("levee check <config.json>"));
    assert!(stdout(&help).contains("levee reference"));
    let none = levee(&[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("USAGE"));
}

/// `levee check cfg.json | head -1`: the reader leaves before levee writes. levee must neither
/// panic nor complain: it exits with the code of the check, stderr empty.
#[test]
fn check_into_a_closed_pipe_exits_quietly() {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_levee"))
        .args(["check", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the read end of stdout first; levee reads all of stdin before it writes a byte.
    drop(child.stdout.take());
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(br#"{"rate_limits": [{"name": "a", "limit": 5, "window": "1s"}]}"#)
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(stderr(&out), "");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn rls_key_prints_what_a_rate_limit_service_receives() {
    let out = levee(&["rls-key", "partner-42"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "partner-42\n");
    let out = levee(&["rls-key", "a key with spaces"]);
    let sent = stdout(&out);
    assert!(
        sent.starts_with("h:") && sent.trim_end().len() == 34,
        "{sent}"
    );
    assert_eq!(
        sent.trim_end(),
        levee::backend::rls::bounded_value(b"a key with spaces")
    );
}
