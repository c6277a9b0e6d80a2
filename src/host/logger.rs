//! The `log` crate's backend: `log::warn!` and friends, anywhere in levee, go to Envoy's log.
//!
//! Why not the SDK's logger (`proxy_wasm::set_log_level`): it `unwrap`s the host's answer to
//! every log line, so a refused line would trap the VM. This one logs through
//! [`abi::log`] and drops a refused line. Do not call `proxy_wasm::set_log_level` once this
//! is installed: it would try to install the SDK's logger and panic on finding this one.

use proxy_wasm::types::LogLevel;

use super::abi;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

/// Installs the logger (once per VM) at `level`.
pub(crate) fn install(level: LogLevel) {
    // Err only if a logger is already installed: then it is this one.
    let _ = log::set_logger(&LOGGER);
    set_level(level);
}

/// Forwards only records Envoy will print: formatting a dropped line costs per request.
/// Envoy's `critical` has no `log` level: it turns `log` records off, as the SDK did.
pub(crate) fn set_level(level: LogLevel) {
    log::set_max_level(match level {
        LogLevel::Trace => log::LevelFilter::Trace,
        LogLevel::Debug => log::LevelFilter::Debug,
        LogLevel::Info => log::LevelFilter::Info,
        LogLevel::Warn => log::LevelFilter::Warn,
        LogLevel::Error => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    });
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let _ = match record.args().as_str() {
            Some(message) => abi::log(level, message),
            None => abi::log(level, &record.args().to_string()),
        };
    }

    fn flush(&self) {}
}
