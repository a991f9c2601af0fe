//! Where the engine sends events: a bounded queue that drops (and counts) what a slow consumer
//! cannot take, so a handler logging in a loop cannot grow the daemon's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hotswap_protocol::events::Event;
use tokio::sync::mpsc;

#[derive(Debug, Clone)]
pub struct EventSink {
    sender: Option<mpsc::Sender<Event>>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink and the receiver of its events, holding at most `capacity` unread events.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Event>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self { sender: Some(sender), dropped: Arc::default() }, receiver)
    }

    /// A sink that discards everything (for embedders that do not want events).
    pub fn discard() -> Self {
        Self { sender: None, dropped: Arc::default() }
    }

    /// Queues `event` without waiting; callable from any thread.
    pub fn send(&self, event: Event) {
        if let Some(sender) = &self.sender
            && sender.try_send(event).is_err()
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
