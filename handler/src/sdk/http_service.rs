//! Serving HTTP/1.1 on a connection the host handed over, and answering each request with the
//! app: body limit, panics, drain and purge.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::instance::{Phase, Shared};
use super::panics::CatchUnwind;
use super::{Body, Handler, Request, Response};
use crate::abi::request_outcome;

/// How long a purged connection gets to write its 503s before it is closed.
const PURGE_GRACE: Duration = Duration::from_secs(1);

/// Serves one connection until the client closes it, or until the generation drains.
pub(crate) async fn serve_connection<A: Handler>(
    socket: std::net::TcpStream,
    app: Arc<A>,
    shared: Arc<Shared>,
) {
    let _connection = shared.host.connection();
    let stream = match tokio::net::TcpStream::from_std(socket) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(target: "hotswap", "cannot adopt a connection: {error}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let service = {
        let shared = shared.clone();
        service_fn(move |request| respond(app.clone(), shared.clone(), request))
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut phase = shared.phase.clone();
    let mut graceful = false;
    loop {
        let current = *phase.borrow_and_update();
        if current != Phase::Serving && !graceful {
            // Idle: closes now. Busy: the response in flight goes out with `connection: close`.
            connection.as_mut().graceful_shutdown();
            graceful = true;
        }
        if current == Phase::Purging {
            let _ = tokio::time::timeout(PURGE_GRACE, connection.as_mut()).await;
            return;
        }
        tokio::select! {
            _ = connection.as_mut() => return,
            changed = phase.changed() => if changed.is_err() { return },
        }
    }
}

async fn respond<A: Handler>(
    app: Arc<A>,
    shared: Arc<Shared>,
    request: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let mut tracker = shared.host.request();
    let mut response = match read_body(request, shared.max_body_bytes).await {
        Err(refusal) => {
            tracker.outcome = request_outcome::REFUSED;
            refusal
        }
        Ok(request) => {
            let mut phase = shared.phase.clone();
            tokio::select! {
                biased;
                result = CatchUnwind::new(app.handle(request)) => match result {
                    Ok(response) => response,
                    Err(()) => {
                        tracker.outcome = request_outcome::PANICKED;
                        plain(StatusCode::INTERNAL_SERVER_ERROR, "the handler panicked; the hotswap daemon reported the panic\n")
                    }
                },
                _ = phase.wait_for(|phase| *phase == Phase::Purging) => {
                    tracker.outcome = request_outcome::CUT;
                    let mut response = plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this request outlived its generation's drain timeout; retry it\n",
                    );
                    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    response
                }
            }
        }
    };
    response.headers_mut().insert("hotswap-generation", shared.generation_header.clone());
    Ok(response)
}

/// Reads the whole body, up to `limit` bytes; beyond that, a 413 response.
async fn read_body(request: http::Request<Incoming>, limit: u64) -> Result<Request, Response> {
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the limit of {limit} bytes\n"),
        )
    };
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_bytes).collect().await {
        Ok(collected) => Ok(http::Request::from_parts(parts, collected.to_bytes())),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(error) => {
            Err(plain(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}\n")))
        }
    }
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(Body::from(text.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
