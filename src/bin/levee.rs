//! `levee`: the offline companion of the filter, built by the same crate so it runs the very
//! validator `on_configure` runs.
//!
//! - `levee check CONFIG.json` — prints `ok: ` and what the config costs Envoy (the
//!   shared-data bound against its ceiling, the keys configure creates and the time that
//!   takes), then the effective config (every default filled in), and exits 0; or prints the
//!   one line Envoy would log when refusing the config (`levee config: <json path>: <what is
//!   wrong and how to fix it>`) and exits 1.
//! - `levee schema` — prints the JSON Schema of the config (committed as `schema/levee.schema.json`).
//! - `levee reference` — prints the book's configuration reference page, generated from the same
//!   tables (committed as `docs/src/reference/config.md`).
//! - `levee rls-key VALUE` — prints the `key` entry levee sends a rate limit service for a key
//!   value (itself, or its `h:` hash when long, binary or spaced), for service-side rules.
//!
//! Exit codes: 0 valid, 1 invalid config, 2 usage error or unreadable file.
//!
//! Native only. Built for `wasm32-wasip1` this binary would be written to
//! `target/wasm32-wasip1/release/levee.wasm` — the very path of the filter (cargo warns
//! "output filename collision" and the WASI command wins), so a wasm build without `--lib` is
//! refused here instead of silently shipping a CLI to Envoy.

#[cfg(target_arch = "wasm32")]
compile_error!(
    "the `levee` CLI is native-only and its wasm output would overwrite levee.wasm: \
     build the filter with `cargo build --release --target wasm32-wasip1 --lib`"
);

use levee::footprint::{human, Footprint, KEYS_CREATED_PER_SECOND};
use std::io::Write;
use std::process::ExitCode;

const USAGE: &str = "\
levee — offline tools for the levee Envoy filter

USAGE:
    levee check <config.json>   validate a plugin config as Envoy would; print the effective config
    levee schema                print the JSON Schema (draft 2020-12) of the plugin config
    levee reference             print the configuration reference (Markdown) of the docs
    levee rls-key <value>       print the key entry a rate limit service receives for a key value
    levee --help                print this help

`check` exits 0 if the config is valid, printing `ok: ` with the shared-data bound the config
implies (against limits.max_memory_bytes) and the keys configure creates, then the effective
config; 1 if Envoy would refuse it (printing the same error line Envoy would log); 2 on a
usage error or an unreadable file. Use `-` to read stdin.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["check", file] => check(file),
        ["schema"] => print_out(
            &levee::config::schema::json_schema_pretty(),
            ExitCode::SUCCESS,
        ),
        ["reference"] => print_out(
            &levee::config::reference::reference_markdown(),
            ExitCode::SUCCESS,
        ),
        ["rls-key", value] => print_out(
            &format!("{}\n", levee::backend::rls::bounded_value(value.as_bytes())),
            ExitCode::SUCCESS,
        ),
        ["--help" | "-h" | "help"] => print_out(&format!("{USAGE}\n"), ExitCode::SUCCESS),
        _ => {
            print_err(USAGE);
            ExitCode::from(2)
        }
    }
}

fn check(file: &str) -> ExitCode {
    let read = if file == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
    } else {
        std::fs::read(file)
    };
    let bytes = match read {
        Ok(b) => b,
        Err(e) => {
            print_err(&format!("levee: cannot read {file}: {e}"));
            return ExitCode::from(2);
        }
    };
    match levee::footprint::validate(&bytes) {
        Ok((cfg, footprint)) => {
            let effective = levee::config::to_effective_json(&cfg);
            let text = serde_json::to_string_pretty(&effective).unwrap_or_default();
            let cost = cost_line(&footprint, cfg.limits.max_memory_bytes);
            print_out(&format!("ok: {cost}\n{text}\n"), ExitCode::SUCCESS)
        }
        Err(e) => {
            print_err(&e.to_string());
            ExitCode::from(1)
        }
    }
}

/// What the config costs Envoy: the shared-data bound against its ceiling, and the keys
/// `on_configure` creates with the time that takes.
fn cost_line(footprint: &Footprint, ceiling: u64) -> String {
    let (bytes, keys, ms) = (
        footprint.bytes(),
        footprint.keys(),
        footprint.configure_millis(),
    );
    format!(
        "shared-data bound {} ({bytes} bytes) of the {} ceiling (limits.max_memory_bytes); \
         configure creates {keys} shared-data keys (~{}.{} s at ~{} keys/s)",
        human(bytes),
        human(ceiling),
        ms / 1000,
        ms % 1000 / 100,
        KEYS_CREATED_PER_SECOND,
    )
}

/// Writes `text` to stdout and returns `code`. A reader that went away (`levee check … | head
/// -1`) is not an error worth a word: the output was cut where the reader wanted it, so levee
/// exits quietly with the code it would have had. Any other write failure is reported (exit 2).
fn print_out(text: &str, code: ExitCode) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => code,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            print_err(&format!("levee: cannot write the output: {e}"));
            ExitCode::from(2)
        }
    }
}

/// One line to stderr; a closed stderr is ignored (the exit code still tells).
fn print_err(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
