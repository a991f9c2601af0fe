//! Continuous HTTP load from many keep-alive connections while something else (swaps) happens,
//! with the bookkeeping the reliability tests assert on.
//!
//! Each worker behaves like a browser or an HTTP library: it keeps its connection alive, opens a
//! new one when the server says `connection: close`, and retries a request once when a reused
//! idle connection turns out to be closed before any response byte came (the inherent HTTP/1.1
//! keep-alive race; the request never reached the application). Any other error, and any
//! response other than 200 with one of the expected bodies, is a failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::http::{HttpConnection, HttpResponse};

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub responses: u64,
    pub failures: Vec<String>,
    /// Requests retried on a new connection after a reused one was closed under them.
    pub retries: u64,
    /// Responses from the generation before the one current when the request was sent: the
    /// request reached the old code in the instant of the swap.
    pub swap_window: u64,
    pub generations_seen: std::collections::BTreeSet<u64>,
}

/// The generation serving now, as the test knows it, with the time it became current.
#[derive(Debug, Default)]
pub struct CurrentGeneration {
    generation: AtomicU64,
    published_at: std::sync::Mutex<Option<Instant>>,
}

impl CurrentGeneration {
    pub fn set(&self, generation: u64) {
        *self.published_at.lock().unwrap() = Some(Instant::now());
        self.generation.store(generation, Ordering::SeqCst);
    }

    fn get(&self) -> (u64, Option<Instant>) {
        (self.generation.load(Ordering::SeqCst), *self.published_at.lock().unwrap())
    }
}

/// Decides whether a response is right; `Err` says what is wrong with it.
pub type ResponseCheck = Arc<dyn Fn(&HttpResponse) -> Result<(), String> + Send + Sync>;

/// Runs `connections` workers sending `GET path` to `address` until `stop` is set.
pub async fn run_load(
    address: SocketAddr,
    path: &'static str,
    connections: usize,
    expected_bodies: &'static [&'static str],
    current: Arc<CurrentGeneration>,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let check: ResponseCheck = Arc::new(move |response: &HttpResponse| {
        if response.status != 200 || !expected_bodies.contains(&response.body.as_str()) {
            return Err(format!("status {} body {:?}", response.status, response.body));
        }
        Ok(())
    });
    run_checked_load(address, path, connections, check, current, stop).await
}

/// Like [`run_load`], with `check` deciding whether each response is right (it may compare the
/// body with the generation that answered).
pub async fn run_checked_load(
    address: SocketAddr,
    path: &'static str,
    connections: usize,
    check: ResponseCheck,
    current: Arc<CurrentGeneration>,
    stop: Arc<AtomicBool>,
) -> LoadReport {
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (current, stop, check) = (current.clone(), stop.clone(), check.clone());
        workers.spawn(async move {
            let mut report = LoadReport::default();
            let mut connection: Option<(HttpConnection, u64)> = None;
            while !stop.load(Ordering::SeqCst) {
                let (before, published_at) = current.get();
                let mut attempt = 0;
                let response = loop {
                    attempt += 1;
                    if connection.as_ref().is_none_or(|(open, _)| !open.is_open()) {
                        match HttpConnection::connect(address).await {
                            Ok(open) => connection = Some((open, 0)),
                            Err(error) => break Err(format!("connect: {error}")),
                        }
                    }
                    let (open, used) = connection.as_mut().expect("connected");
                    match open.get(path).await {
                        Ok(response) => {
                            *used += 1;
                            break Ok(response);
                        }
                        Err(error) => {
                            let reused = *used > 0;
                            connection = None;
                            if reused && attempt == 1 && is_closed_before_response(&*error) {
                                report.retries += 1;
                                continue;
                            }
                            break Err(format!("request: {error} ({error:?})"));
                        }
                    }
                };
                let response = match response {
                    Ok(response) => response,
                    Err(failure) => {
                        report.failures.push(failure);
                        continue;
                    }
                };
                report.responses += 1;
                if response.closes_connection() {
                    connection = None;
                }
                if let Err(failure) = check(&response) {
                    report.failures.push(failure);
                    continue;
                }
                let Some(generation) = response.generation() else {
                    report.failures.push("no hotswap-generation header".to_owned());
                    continue;
                };
                report.generations_seen.insert(generation);
                let (after, _) = current.get();
                if generation > after.max(before) + 1 {
                    report.failures.push(format!("generation {generation} answered before it was published"));
                } else if generation + 1 == before
                    && published_at.is_some_and(|at| at.elapsed().as_millis() < 1000)
                {
                    report.swap_window += 1;
                } else if generation < before {
                    report.failures.push(format!(
                        "generation {generation} answered a request sent while generation {before} was current"
                    ));
                }
            }
            report
        });
    }
    let mut total = LoadReport::default();
    while let Some(report) = workers.join_next().await {
        let report = report.expect("load workers do not panic");
        total.responses += report.responses;
        total.retries += report.retries;
        total.swap_window += report.swap_window;
        total.failures.extend(report.failures);
        total.generations_seen.extend(report.generations_seen);
    }
    total
}

/// True when hyper says the connection closed before a response started: the request was
/// never processed, so a client may resend it (what browsers and HTTP libraries do).
fn is_closed_before_response(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    match error.downcast_ref::<hyper::Error>() {
        Some(error) => error.is_canceled() || error.is_incomplete_message() || error.is_closed(),
        None => false,
    }
}
