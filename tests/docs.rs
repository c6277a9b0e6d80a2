//! The docs' code blocks work as printed (the book's links: `tests/docs_links.rs`).
//!
//! Operators copy snippets: a plugin JSON that levee refuses or an Envoy YAML that Envoy
//! refuses is a bug in the docs. So every fenced block of `README.md` and `docs/src/**/*.md` is
//! read by its info string (the table is in the book's Development chapter):
//!
//! - `json` / `jsonc`: a plugin config, or the members of one (wrapped in `{}`), through
//!   levee's own validator (`levee::footprint::validate`, what `levee check` and `on_configure`
//!   run: the fields, then the shared-data bound against `limits.max_memory_bytes`);
//! - `yaml`: a complete Envoy bootstrap; `yaml,http_filters`: an `http_filters:` list, put into
//!   a listener whose clusters include every `cluster:` it names; `yaml,bootstrap`: top-level
//!   bootstrap fields. Each goes through `envoy --mode validate` (which also runs levee's
//!   `on_configure`), with `/etc/envoy/levee.wasm` replaced by the built module;
//! - `yaml,k8s`: a Kubernetes manifest; the levee plugin JSONs inside it are validated;
//! - `…,ignore`: deliberately partial, counted as skipped.
//!
//! Envoy comes from `ENVOY_BIN` (else `.venv/bin/envoy`), levee.wasm from `LEVEE_WASM` (else
//! `target/wasm32-wasip1/release/levee.wasm`), as in every integration test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod markdown;

use markdown::{doc_files, root};
use std::path::{Path, PathBuf};
use std::process::Command;

fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map_or_else(|| root().join(".venv/bin/envoy"), PathBuf::from)
}

fn levee_wasm() -> PathBuf {
    std::env::var_os("LEVEE_WASM").map_or_else(
        || root().join("target/wasm32-wasip1/release/levee.wasm"),
        PathBuf::from,
    )
}

/// One fenced code block: where it starts, its info string split at commas, its text.
struct Block {
    at: String,
    lang: String,
    attrs: Vec<String>,
    text: String,
}

/// The fenced blocks of a Markdown text, including those indented inside list items.
fn blocks(file: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let indent = line.len() - line.trim_start().len();
        let Some(info) = line.trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let mut parts = info.trim().split(',').map(|s| s.trim().to_owned());
        let lang = parts.next().unwrap_or_default();
        let attrs = parts.collect();
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && lines[end].trim() != "```" {
            end += 1;
        }
        assert!(end < lines.len(), "{name}:{start}: unclosed code block");
        let body: Vec<&str> = lines[start..end]
            .iter()
            .map(|l| {
                l.get(indent.min(l.len() - l.trim_start().len())..)
                    .unwrap_or("")
            })
            .collect();
        found.push(Block {
            at: format!("{name}:{start}"),
            lang,
            attrs,
            text: body.join("\n") + "\n",
        });
        i = end + 1;
    }
    found
}

fn all_blocks() -> Vec<Block> {
    doc_files().iter().flat_map(|f| blocks(f)).collect()
}

impl Block {
    fn ignored(&self) -> bool {
        self.attrs.iter().any(|a| a == "ignore")
    }
    fn has(&self, attr: &str) -> bool {
        self.attrs.iter().any(|a| a == attr)
    }
}

/// `// …` comments removed, outside strings (for `jsonc`).
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let (mut in_string, mut escaped, mut cut) = (false, false, line.len());
        let bytes = line.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                _ if escaped => escaped = false,
                b'\\' if in_string => escaped = true,
                b'"' => in_string = !in_string,
                b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => {
                    cut = i;
                    break;
                }
                _ => {}
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// A plugin JSON (or the members of one) through levee's validator.
fn check_plugin_json(text: &str) -> Result<(), String> {
    let trimmed = text.trim();
    let doc = if trimmed.starts_with('{') {
        trimmed.to_owned()
    } else {
        format!("{{{trimmed}}}")
    };
    levee::footprint::validate(doc.as_bytes())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[test]
fn every_plugin_json_snippet_passes_levee_check() {
    let (mut checked, mut skipped, mut failures) = (0, 0, Vec::new());
    for b in all_blocks()
        .into_iter()
        .filter(|b| b.lang == "json" || b.lang == "jsonc")
    {
        if b.ignored() {
            skipped += 1;
            continue;
        }
        let text = if b.lang == "jsonc" {
            strip_comments(&b.text)
        } else {
            b.text.clone()
        };
        checked += 1;
        if let Err(e) = check_plugin_json(&text) {
            failures.push(format!("{}: {e}", b.at));
        }
    }
    println!("plugin JSON snippets: {checked} checked, {skipped} skipped (ignore)");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 5,
        "only {checked} JSON snippets found: is the extraction broken?"
    );
}

/// The plugin JSONs inside a Kubernetes manifest: the block under `value: |`, `pluginConfig:` or
/// `config:` when it starts with `{`.
fn embedded_plugin_jsons(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if !["value: |", "pluginConfig:", "config:"].contains(&line.trim()) {
            continue;
        }
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.trim().is_empty() || indent(l) > indent(line))
            .copied()
            .collect();
        let text = body.join("\n");
        if text.trim_start().starts_with('{') {
            found.push(text);
        }
    }
    found
}

const LISTENER: &str = r#"static_resources:
  listeners:
  - name: docs
    address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: docs
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: / }
                route: { cluster: backend }
"#;

/// A static cluster named `name` (for the clusters a fragment refers to).
fn cluster(name: &str) -> String {
    format!(
        "  - name: {name}\n    type: STATIC\n    load_assignment:\n      cluster_name: {name}\n      \
         endpoints:\n      - lb_endpoints:\n        - endpoint: {{ address: {{ socket_address: \
         {{ address: 127.0.0.1, port_value: 8080 }} }} }}\n"
    )
}

/// Every `cluster: NAME` a fragment names (NAME a plain word).
fn named_clusters(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split("cluster:")
        .skip(1)
        .filter_map(|rest| {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The Envoy bootstrap a `yaml` block stands for.
fn bootstrap_for(b: &Block) -> String {
    let text = b
        .text
        .replace("/etc/envoy/levee.wasm", levee_wasm().to_str().unwrap());
    if b.has("http_filters") {
        assert!(
            text.starts_with("http_filters:"),
            "{}: a yaml,http_filters block starts with `http_filters:`",
            b.at
        );
        let filters: String = text.lines().map(|l| format!("          {l}\n")).collect();
        let mut clusters = vec!["backend".to_owned()];
        clusters.extend(named_clusters(&text));
        clusters.sort();
        clusters.dedup();
        let defs: String = clusters.iter().map(|c| cluster(c)).collect();
        format!("{LISTENER}{filters}  clusters:\n{defs}")
    } else {
        text
    }
}

fn envoy_validate(yaml: &str, dir: &Path, n: usize) -> Result<(), String> {
    let file = dir.join(format!("snippet-{n}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(envoy_bin())
        .args(["--mode", "validate", "-c"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", envoy_bin().display()));
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && log.contains(" OK") {
        Ok(())
    } else {
        // levee's own refusal names the JSON path; else Envoy's last words.
        let levee_line = log.lines().find(|l| l.contains("levee config:"));
        Err(levee_line.map_or_else(
            || log.lines().rev().take(2).collect::<Vec<_>>().join(" / "),
            str::to_owned,
        ))
    }
}

#[test]
fn every_envoy_yaml_snippet_passes_envoy_validate() {
    assert!(
        levee_wasm().exists(),
        "{} is missing: `make build` first",
        levee_wasm().display()
    );
    let dir = std::env::temp_dir().join(format!("levee-docs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (mut validated, mut k8s, mut skipped, mut failures) = (0, 0, 0, Vec::new());
    for (n, b) in all_blocks()
        .into_iter()
        .filter(|b| b.lang == "yaml")
        .enumerate()
    {
        if b.ignored() {
            skipped += 1;
        } else if b.has("k8s") {
            let jsons = embedded_plugin_jsons(&b.text);
            if jsons.is_empty() {
                failures.push(format!("{}: a yaml,k8s block without a plugin JSON", b.at));
            }
            for json in jsons {
                if let Err(e) = check_plugin_json(&json) {
                    failures.push(format!("{}: {e}", b.at));
                }
            }
            k8s += 1;
        } else {
            validated += 1;
            if let Err(e) = envoy_validate(&bootstrap_for(&b), &dir, n) {
                failures.push(format!("{}: envoy --mode validate: {e}", b.at));
            }
        }
    }
    println!(
        "Envoy YAML snippets: {validated} validated by Envoy, {k8s} Kubernetes manifests \
         (plugin JSON checked), {skipped} skipped (ignore)"
    );
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(validated >= 5, "only {validated} Envoy snippets found");
}
