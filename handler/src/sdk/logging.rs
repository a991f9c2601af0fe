//! Forwards `tracing` records from handler code to the host, which logs them with the
//! generation's number.
//!
//! The subscriber is installed as the thread default on the generation's threads only (never as
//! the global default, which would live in a `static` of this library and outlive it).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

use super::instance::Host;
use crate::abi::log_level;

pub(crate) struct ForwardingSubscriber {
    host: Host,
    max_level: u32,
    next_span: AtomicU64,
}

impl ForwardingSubscriber {
    pub(crate) fn new(host: Host, max_level: u32) -> Self {
        Self { host, max_level, next_span: AtomicU64::new(1) }
    }
}

fn level_number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => log_level::ERROR,
        Level::WARN => log_level::WARN,
        Level::INFO => log_level::INFO,
        Level::DEBUG => log_level::DEBUG,
        Level::TRACE => log_level::TRACE,
    }
}

impl Subscriber for ForwardingSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        level_number(metadata.level()) <= self.max_level
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        use tracing::level_filters::LevelFilter;
        Some(match self.max_level {
            log_level::OFF => LevelFilter::OFF,
            log_level::ERROR => LevelFilter::ERROR,
            log_level::WARN => LevelFilter::WARN,
            log_level::INFO => LevelFilter::INFO,
            log_level::DEBUG => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        self.host.log(level_number(metadata.level()), metadata.target(), &visitor.text);
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Renders an event as `message key=value ...`.
#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            if self.text.is_empty() {
                let _ = write!(self.text, "{value:?}");
            } else {
                self.text = format!("{value:?} {}", self.text);
            }
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value}", field.name());
        }
    }
}
