//! The operator files shipped in `envoy/` — the Grafana dashboard and the Prometheus alert
//! rules — read as data: their PromQL expressions and the metric names those name, and the
//! Prometheus names levee defines. Shared by `tests/ops.rs` (names levee defines) and the
//! demo test in `tests/configs.rs` (names a real Envoy exports).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use ::levee::metrics::*;

/// Envoy's own series the files use (its cluster stats, tagged by Envoy's default tags).
pub const ENVOY_NAMES: &[&str] = &["envoy_cluster_upstream_rq_xx"];

/// etcd's own series the backend alert rules use (from scraping etcd's /metrics, 3.4+).
pub const ETCD_NAMES: &[&str] = &[
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_server_quota_backend_bytes",
];

pub fn dashboard_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/grafana/levee-dashboard.json")
}

pub fn alerts_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/prometheus/levee-alerts.yaml")
}

/// Every `expr` of every panel target (rows included) and every query variable.
pub fn dashboard_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(dashboard_path()).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dash["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p["panels"].as_array() {
            panels.extend(inner);
        }
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        // Grafana's `label_values(metric, label)`: the metric is the query.
        if let Some(q) = v["query"]["query"].as_str() {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next());
            out.push(inner.unwrap_or(q).trim().to_string());
        }
    }
    out
}

/// The alert rules for levee's backends (etcd, a rate limit service).
pub fn backend_alerts_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("envoy/prometheus/levee-backend-alerts.yaml")
}

/// `(alert name, expr)` for every rule of levee-alerts.yaml.
pub fn alert_exprs() -> Vec<(String, String)> {
    alert_exprs_in(&alerts_path())
}

/// `(alert name, expr)` for every rule of levee-backend-alerts.yaml.
pub fn backend_alert_exprs() -> Vec<(String, String)> {
    alert_exprs_in(&backend_alerts_path())
}

/// `(alert name, expr)` for every rule of an alerts file. A small reader for the files' own
/// shape: `- alert: X` then `expr: <one line>` or `expr: |` with an indented block.
pub fn alert_exprs_in(path: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut alert = None;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("- alert:") {
            alert = Some(name.trim().to_string());
        } else if let Some(expr) = t.strip_prefix("expr:") {
            let expr = expr.trim();
            let expr = if expr == "|" || expr == ">" || expr == "|-" || expr == ">-" {
                let indent = line.len() - line.trim_start().len();
                lines[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                expr.to_string()
            };
            out.push((alert.take().expect("expr before alert"), expr));
        }
    }
    out
}

/// The metric names a PromQL expression selects: what is left once strings, label
/// matchers, range selectors and grouping clauses are cut out, and functions, aggregations
/// and keywords are skipped.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut cut = String::new();
    let mut depth = 0;
    let mut quote = None;
    for c in expr.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{' | '[') => depth += 1,
            (None, '}' | ']') => depth -= 1,
            (None, c) if depth == 0 => cut.push(c),
            _ => {}
        }
    }
    let tokens = tokenize(&cut);
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < tokens.len() {
        let tok = tokens[i].as_str();
        let next = tokens.get(i + 1).map(String::as_str);
        let grouping = [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ];
        if grouping.contains(&tok) && next == Some("(") {
            // Skip the label list.
            while i < tokens.len() && tokens[i] != ")" {
                i += 1;
            }
        } else if is_ident(tok) && next != Some("(") && !KEYWORDS.contains(&tok) {
            names.insert(tok.to_string());
        }
        i += 1;
    }
    names
}

/// Aggregation operators (they may be followed by `by`, not `(`) and binary keywords.
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "group_left",
    "group_right",
];

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.' || c == '$' {
            word.push(c);
        } else {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Every metric name of the dashboard and of levee-alerts.yaml (not the backend rules, whose
/// etcd series no Envoy exports).
pub fn names_in_ops_files() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in dashboard_exprs() {
        names.extend(metric_names(&e));
    }
    for (_, e) in alert_exprs() {
        names.extend(metric_names(&e));
    }
    names
}

/// A levee stat name as Envoy's /stats/prometheus shows it: the `stats_tags` of
/// envoy/envoy.yaml take the `<name>.` segment out as a label, dots become underscores.
fn family(dotted: &str, name: &str) -> String {
    dotted.replace(&format!(".{name}."), ".").replace('.', "_")
}

/// The Prometheus families of a backend's metrics (only defined when `backends` names one):
/// the `stats_tags` of envoy/envoy.yaml take the backend's name out as `levee_backend` and,
/// for calls and decisions, the result as `levee_result`.
pub fn backend_families() -> BTreeSet<String> {
    let n = "x";
    let mut out: BTreeSet<String> = BackendEvent::ALL
        .iter()
        .map(|e| {
            let name = family(&backend_metric(n, *e), n);
            match name
                .split_once("_calls_")
                .or(name.split_once("_decisions_"))
            {
                Some((head, _)) if name.contains("_calls_") => format!("{head}_calls"),
                Some((head, _)) => format!("{head}_decisions"),
                None => name,
            }
        })
        .collect();
    out.insert(family(&backend_breaker_state_metric(n), n));
    let histogram = family(&backend_latency_metric(n), n);
    for suffix in ["_bucket", "_count", "_sum"] {
        out.insert(format!("{histogram}{suffix}"));
    }
    out
}

/// Every Prometheus family levee defines (histograms as their `_bucket`, `_count`, `_sum`).
pub fn levee_families() -> BTreeSet<String> {
    let n = "x";
    let mut out = BTreeSet::new();
    out.extend(GlobalEvent::ALL.iter().map(|e| e.name().to_string()));
    out.extend(IdempotencyEvent::ALL.iter().map(|e| e.name().to_string()));
    out.extend(
        RateLimitEvent::ALL
            .iter()
            .map(|e| family(&rate_limit_metric(n, *e), n)),
    );
    out.extend(
        BreakerEvent::ALL
            .iter()
            .map(|e| family(&breaker_metric(n, *e), n)),
    );
    out.insert(family(&breaker_state_metric(n), n));
    out.extend(
        UpstreamEvent::ALL
            .iter()
            .map(|e| family(&upstream_metric(n, *e), n)),
    );
    out.extend(
        FallbackEvent::ALL
            .iter()
            .map(|e| family(&fallback_metric(n, *e), n)),
    );
    let histogram = family(&upstream_attempts_histogram_metric(n), n);
    for suffix in ["_bucket", "_count", "_sum"] {
        out.insert(format!("{histogram}{suffix}"));
    }
    out.insert(MEMORY_BOUND_METRIC.to_string());
    out.insert(HELD_REQUESTS_METRIC.to_string());
    out.extend(backend_families());
    out
}
