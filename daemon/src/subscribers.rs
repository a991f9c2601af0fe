//! The clients that called `subscribe`, and sending them events.
//!
//! An event is encoded once and queued for each subscriber without waiting: a subscriber that
//! does not read loses events (and is told how many in the log), it never slows the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hotswap_protocol::events::Event;
use hotswap_protocol::jsonrpc::encode_event;
use tokio::sync::mpsc;

/// A line to write to a client (a response or an event), without its newline.
pub type OutgoingLine = Arc<[u8]>;

#[derive(Debug, Default)]
pub struct Subscribers {
    clients: Mutex<Vec<(u64, mpsc::Sender<OutgoingLine>)>>,
    dropped: AtomicU64,
}

impl Subscribers {
    pub fn add(&self, client: u64, sender: mpsc::Sender<OutgoingLine>) {
        let mut clients = self.clients.lock().expect("subscribers");
        if !clients.iter().any(|(id, _)| *id == client) {
            clients.push((client, sender));
        }
    }

    pub fn remove(&self, client: u64) {
        self.clients.lock().expect("subscribers").retain(|(id, _)| *id != client);
    }

    /// Sends `event` to every subscriber.
    pub fn send(&self, event: &Event) {
        let line: OutgoingLine = encode_event(event).into();
        let mut clients = self.clients.lock().expect("subscribers");
        clients.retain(|(_, sender)| match sender.try_send(line.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    pub fn count(&self) -> usize {
        self.clients.lock().expect("subscribers").len()
    }
}
