//! `tracing` for handler code, as a plain app's `tracing_subscriber::fmt()` would have it: the
//! level the user asks for (`RUST_LOG` or `[log] filter` in hotswap.toml, as the daemon passes it
//! in `HOTSWAP_LOG`; directives such as `info,tower_http=debug`), and spans with their fields
//! (`request{method=GET uri=/}: started processing request`). Each formatted line goes to the
//! host with its level and target, and the host logs it with the generation's number.
//!
//! The subscriber is the process's global default (each generation has a process of its own),
//! and the default of the generation's threads.

use std::io;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

use super::instance::Host;
use crate::abi::log_level;

/// The environment variable with the daemon's log directives for handler code.
pub(crate) const LOG_VARIABLE: &str = "HOTSWAP_LOG";

/// The subscriber for handler code, and a warning when the directives could not be read.
pub(crate) fn dispatch(host: Host, max_level: u32) -> (tracing::Dispatch, Option<String>) {
    let (filter, warning) = filter(std::env::var(LOG_VARIABLE).ok().as_deref(), max_level);
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_writer(HostWriter { host });
    let subscriber =
        tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(layer, filter));
    (tracing::Dispatch::new(subscriber), warning)
}

/// `directives` as a filter; without them, everything up to `max_level`.
fn filter(directives: Option<&str>, max_level: u32) -> (Targets, Option<String>) {
    let fallback = || Targets::new().with_default(level_filter(max_level));
    match directives.map(str::trim).filter(|directives| !directives.is_empty()) {
        None => (fallback(), None),
        Some(directives) => match directives.parse::<Targets>() {
            Ok(targets) => (targets, None),
            Err(error) => (
                fallback(),
                Some(format!(
                    "the log filter {directives:?} cannot be read ({error}); write it as \
                     `level` or `target=level` pairs separated by commas, e.g. \
                     `info,tower_http=debug`"
                )),
            ),
        },
    }
}

fn level_filter(level: u32) -> tracing::level_filters::LevelFilter {
    use tracing::level_filters::LevelFilter;
    match level {
        log_level::OFF => LevelFilter::OFF,
        log_level::ERROR => LevelFilter::ERROR,
        log_level::WARN => LevelFilter::WARN,
        log_level::INFO => LevelFilter::INFO,
        log_level::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

fn level_number(level: &tracing::Level) -> u32 {
    match *level {
        tracing::Level::ERROR => log_level::ERROR,
        tracing::Level::WARN => log_level::WARN,
        tracing::Level::INFO => log_level::INFO,
        tracing::Level::DEBUG => log_level::DEBUG,
        tracing::Level::TRACE => log_level::TRACE,
    }
}

/// Hands each formatted event to the host.
struct HostWriter {
    host: Host,
}

impl<'a> MakeWriter<'a> for HostWriter {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { host: self.host, level: log_level::INFO, target: String::new(), text: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            host: self.host,
            level: level_number(meta.level()),
            target: meta.target().to_owned(),
            text: Vec::new(),
        }
    }
}

/// One event's text, sent to the host when the formatter is done with it.
struct Line {
    host: Host,
    level: u32,
    target: String,
    text: Vec<u8>,
}

impl io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        let text = text.trim_end();
        if !text.is_empty() {
            self.host.log(self.level, &self.target, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_choose_levels_per_target() {
        let (filter, warning) = filter(Some("warn,tower_http=debug"), log_level::INFO);
        assert!(warning.is_none());
        assert!(filter.would_enable("tower_http::trace", &tracing::Level::DEBUG));
        assert!(!filter.would_enable("my_app", &tracing::Level::INFO));
        assert!(filter.would_enable("my_app", &tracing::Level::WARN));
    }

    #[test]
    fn no_directives_means_the_hosts_level_and_a_bad_one_says_how_to_write_it() {
        let (filter, warning) = filter(None, log_level::INFO);
        assert!(warning.is_none());
        assert!(filter.would_enable("anything", &tracing::Level::INFO));
        assert!(!filter.would_enable("anything", &tracing::Level::DEBUG));
        let (filter, warning) = filter_of("my_app=loud");
        assert!(warning.unwrap().contains("`info,tower_http=debug`"));
        assert!(filter.would_enable("my_app", &tracing::Level::INFO));
    }

    fn filter_of(directives: &str) -> (Targets, Option<String>) {
        filter(Some(directives), log_level::INFO)
    }
}
