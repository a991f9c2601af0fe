//! HTTP load from many keep-alive connections, with every failure counted by kind: the built-in
//! load generator of the "requests lost during a change" case (and of the dispatch case when
//! `wrk` is not available), and the probe that waits for the first response from new code.
//!
//! Each worker sends `GET path`, waits for the whole response, and sends the next; it keeps its
//! connection alive and opens a new one when the server closes it. It never resends a request:
//! every request that does not get a `200` counts, by kind.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotswap_tests::http::{HttpConnection, HttpError};

/// How long a worker waits after a refused connect before trying again (a browser's user would
/// wait longer; a health checker or a load balancer about this long).
pub(crate) const REFUSED_RETRY_DELAY: Duration = Duration::from_millis(1);

/// What a load run saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadReport {
    pub(crate) answered: u64,
    /// Connects refused: nothing listened on the port.
    pub(crate) refused_connects: u64,
    /// Connects that failed otherwise (timeouts, resets).
    pub(crate) failed_connects: u64,
    /// Requests sent on an open connection that got no response: the connection was reset or
    /// closed under them (in flight when the server died, or sent just as it closed an idle
    /// connection).
    pub(crate) broken_requests: u64,
    /// Of `broken_requests`, those on a reused connection that was closed or reset under them: a
    /// browser resends such a GET by itself (not a POST).
    pub(crate) broken_on_reused_connection: u64,
    /// Responses other than 200.
    pub(crate) bad_statuses: u64,
    pub(crate) elapsed: Duration,
    /// Latency of each answered request, in microseconds (when asked for).
    pub(crate) latencies_us: Vec<f64>,
}

impl LoadReport {
    /// Requests that did not get their answer, whatever the kind.
    pub(crate) fn lost(&self) -> u64 {
        self.refused_connects + self.failed_connects + self.broken_requests + self.bad_statuses
    }

    fn merge(&mut self, other: LoadReport) {
        self.answered += other.answered;
        self.refused_connects += other.refused_connects;
        self.failed_connects += other.failed_connects;
        self.broken_requests += other.broken_requests;
        self.broken_on_reused_connection += other.broken_on_reused_connection;
        self.bad_statuses += other.bad_statuses;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// Load running in the background.
#[derive(Debug)]
pub(crate) struct RunningLoad {
    stop: Arc<AtomicBool>,
    workers: tokio::task::JoinSet<LoadReport>,
    watch: Arc<BodyWatch>,
    started: Instant,
}

/// The text the load waits to see in a response body, and when it first did.
#[derive(Debug, Default)]
struct BodyWatch {
    marker: Mutex<Option<String>>,
    first_seen: Mutex<Option<Instant>>,
    seen: tokio::sync::Notify,
}

impl BodyWatch {
    fn check(&self, body: &str) {
        let marker = self.marker.lock().expect("marker").clone();
        if let Some(marker) = marker
            && body.contains(&marker)
        {
            let mut first = self.first_seen.lock().expect("first seen");
            if first.is_none() {
                *first = Some(Instant::now());
                self.seen.notify_waiters();
            }
        }
    }
}

/// Starts `connections` workers sending `GET path` to `address`.
pub(crate) fn start_load(
    address: SocketAddr,
    path: &str,
    connections: usize,
    record_latencies: bool,
) -> RunningLoad {
    let stop = Arc::new(AtomicBool::new(false));
    let watch = Arc::new(BodyWatch::default());
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (stop, watch, path) = (stop.clone(), watch.clone(), path.to_owned());
        workers.spawn(
            async move { run_worker(address, &path, record_latencies, &stop, &watch).await },
        );
    }
    RunningLoad { stop, workers, watch, started: Instant::now() }
}

impl RunningLoad {
    /// From now on, watch for responses that contain `marker`.
    pub(crate) fn watch_for(&self, marker: &str) {
        *self.watch.first_seen.lock().expect("first seen") = None;
        *self.watch.marker.lock().expect("marker") = Some(marker.to_owned());
    }

    /// Waits until a response contained the marker; its time, or `None` after `timeout`.
    pub(crate) async fn wait_for_marker(&self, timeout: Duration) -> Option<Instant> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.watch.seen.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(seen) = *self.watch.first_seen.lock().expect("first seen") {
                return Some(seen);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    pub(crate) async fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        let mut total = LoadReport::default();
        while let Some(report) = self.workers.join_next().await {
            if let Ok(report) = report {
                total.merge(report);
            }
        }
        total.elapsed = self.started.elapsed();
        total
    }
}

async fn run_worker(
    address: SocketAddr,
    path: &str,
    record_latencies: bool,
    stop: &AtomicBool,
    watch: &BodyWatch,
) -> LoadReport {
    let mut report = LoadReport::default();
    let mut connection: Option<(HttpConnection, u64)> = None;
    while !stop.load(Ordering::Relaxed) {
        if connection.as_ref().is_none_or(|(open, _)| !open.is_open()) {
            match HttpConnection::connect(address).await {
                Ok(open) => connection = Some((open, 0)),
                Err(error) => {
                    if is_refused(&*error) {
                        report.refused_connects += 1;
                    } else {
                        report.failed_connects += 1;
                    }
                    connection = None;
                    tokio::time::sleep(REFUSED_RETRY_DELAY).await;
                    continue;
                }
            }
        }
        let (open, used) = connection.as_mut().expect("connected above");
        let sent = Instant::now();
        match open.get(path).await {
            Ok(response) => {
                *used += 1;
                if record_latencies {
                    report.latencies_us.push(sent.elapsed().as_secs_f64() * 1e6);
                }
                if response.status == 200 {
                    report.answered += 1;
                    watch.check(&response.body);
                } else {
                    report.bad_statuses += 1;
                }
                if response.closes_connection() {
                    connection = None;
                }
            }
            Err(error) => {
                report.broken_requests += 1;
                if *used > 0 && is_closed_before_response(&*error) {
                    report.broken_on_reused_connection += 1;
                }
                connection = None;
            }
        }
    }
    report
}

fn is_refused(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error
        .downcast_ref::<std::io::Error>()
        .is_some_and(|error| error.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// The connection ended under the request: hyper saw it close before a complete response, or
/// the socket was reset.
fn is_closed_before_response(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    if let Some(error) = error.downcast_ref::<hyper::Error>()
        && (error.is_canceled() || error.is_incomplete_message() || error.is_closed())
    {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = current.source();
    }
    false
}

/// Polls `GET path` every `interval` (on a keep-alive connection, reconnecting as needed) until a
/// response body contains `marker`; returns when that response arrived.
pub(crate) async fn poll_until_body_contains(
    address: SocketAddr,
    path: &str,
    marker: &str,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut connection: Option<HttpConnection> = None;
    loop {
        if Instant::now() > deadline {
            anyhow::bail!("no response with {marker:?} from {address}{path} within {timeout:?}");
        }
        if connection.as_ref().is_none_or(|open| !open.is_open()) {
            connection = HttpConnection::connect(address).await.ok();
        }
        if let Some(open) = connection.as_mut() {
            let response: Result<_, HttpError> = open.get(path).await;
            match response {
                Ok(response) if response.status == 200 && response.body.contains(marker) => {
                    return Ok(Instant::now());
                }
                Ok(response) => {
                    if response.closes_connection() {
                        connection = None;
                    }
                }
                Err(_) => connection = None,
            }
        }
        tokio::time::sleep(interval).await;
    }
}
