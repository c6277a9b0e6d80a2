//! Plugin configuration: parse the raw JSON, then validate it into [`types::LeveeConfig`].
//!
//! Every error names the JSON path and the fix, e.g.
//! `rate_limits[1].window: "10 parsecs" is not a duration (use e.g. "500ms", "1m")`, because
//! the one line Envoy logs when it refuses a config is all an operator will see.

pub mod types;

pub use types::*;

/// A config that cannot be used, with the JSON path of the offending field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// e.g. `rate_limits[1].window`; empty for the document itself.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "levee config: {}", self.message)
        } else {
            write!(f, "levee config: {}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses and validates a plugin configuration. Empty input is the same as `{}`.
pub fn parse(json: &[u8]) -> Result<LeveeConfig, ConfigError> {
    let _ = json;
    Err(ConfigError { path: String::new(), message: "not implemented yet".into() })
}
