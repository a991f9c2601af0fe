//! The requests running in this host, for the two things only the host can do about them: name
//! the one a crashing thread was running, and answer the ones whose handler is stuck (a thread
//! blocked in a system call never sees the SDK's own 503) when the drain timeout has passed.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// One running request. Its address is the token the library passes back.
#[derive(Debug)]
pub(crate) struct RequestRecord {
    /// The connection's socket, owned by the library.
    socket: i64,
    /// `METHOD /target`, cut to a readable length.
    pub(crate) text: String,
    state: AtomicU8,
}

const RUNNING: u8 = 0;
const RESPONDED: u8 = 1;
const CUT: u8 = 2;

/// The longest request target kept for reports.
const TEXT_LIMIT: usize = 400;

/// Every running request, by token.
#[derive(Debug, Default)]
pub(crate) struct Requests {
    running: Mutex<HashMap<u64, Arc<RequestRecord>>>,
}

impl Requests {
    /// Records a request; the token is the record's address (stable while it runs).
    pub(crate) fn start(&self, socket: i64, method: &[u8], target: &[u8]) -> u64 {
        let mut text = String::from_utf8_lossy(method).into_owned();
        text.push(' ');
        let target = String::from_utf8_lossy(target);
        if target.len() > TEXT_LIMIT {
            let mut end = TEXT_LIMIT;
            while !target.is_char_boundary(end) {
                end -= 1;
            }
            text.push_str(&target[..end]);
            text.push('…');
        } else {
            text.push_str(&target);
        }
        let record = Arc::new(RequestRecord { socket, text, state: AtomicU8::new(RUNNING) });
        let token = Arc::as_ptr(&record) as u64;
        self.running.lock().expect("requests").insert(token, record);
        token
    }

    /// The record behind a token, for the thread that polls its handler.
    pub(crate) fn record(&self, token: u64) -> *const RequestRecord {
        token as *const RequestRecord
    }

    /// The handler returned its response: false when the host already answered it.
    pub(crate) fn respond(&self, token: u64) -> bool {
        let running = self.running.lock().expect("requests");
        match running.get(&token) {
            Some(record) => record
                .state
                .compare_exchange(RUNNING, RESPONDED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok(),
            None => true,
        }
    }

    /// The request ended; true when the host had cut it (and counted it) already.
    pub(crate) fn finish(&self, token: u64) -> bool {
        let record = self.running.lock().expect("requests").remove(&token);
        record.is_some_and(|record| record.state.load(Ordering::SeqCst) == CUT)
    }

    /// Answers 503 to every request whose handler has not returned, and shuts its connection
    /// down. Returns how many.
    pub(crate) fn cut_stuck(&self, generation: u64) -> u64 {
        let body = "this request outlived its generation's drain timeout while its handler was \
                    blocked; retry it\n";
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\nretry-after: 1\r\nhotswap-generation: \
             {generation}\r\n\r\n{body}",
            body.len()
        );
        let running = self.running.lock().expect("requests");
        let mut cut = 0;
        for record in running.values() {
            if record
                .state
                .compare_exchange(RUNNING, CUT, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            // SAFETY: the socket belongs to a request still running, so the library has not
            // closed it; writing and shutting it down is all the host does with it.
            let socket = unsafe { BorrowedFd::borrow_raw(record.socket as i32) };
            let _ = rustix::io::write(socket, response.as_bytes());
            let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
            cut += 1;
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_stuck_request_gets_a_503_and_a_responded_one_is_left_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut stuck_client =
            std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (stuck_server, _) = listener.accept().unwrap();
        let mut answered_client =
            std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (answered_server, _) = listener.accept().unwrap();

        let requests = Requests::default();
        let stuck = requests.start(i64::from(stuck_server.as_raw_fd()), b"GET", b"/block");
        let answered = requests.start(i64::from(answered_server.as_raw_fd()), b"POST", b"/ok");
        assert!(requests.respond(answered));
        assert_eq!(requests.cut_stuck(7), 1);
        // The handler of the cut request returns later: its response must not go out.
        assert!(!requests.respond(stuck));
        requests.finish(stuck);
        requests.finish(answered);

        let mut text = String::new();
        stuck_client.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains("hotswap-generation: 7"), "{text}");
        assert!(text.ends_with("retry it\n"), "{text}");
        answered_client.set_nonblocking(true).unwrap();
        let mut buffer = [0u8; 16];
        assert!(answered_client.read(&mut buffer).is_err(), "nothing written to the other one");
        drop((stuck_server, answered_server));
    }

    #[test]
    fn long_targets_are_cut_for_reports() {
        let requests = Requests::default();
        let token = requests.start(-1, b"GET", "/é".repeat(1000).as_bytes());
        // SAFETY: the record lives until `finish`.
        let text = unsafe { (*requests.record(token)).text.clone() };
        assert!(text.len() < 420 && text.ends_with('…'), "{text}");
        requests.finish(token);
    }
}
