//! Serving HTTP/1.1 on a connection the host handed over, and answering each request with the
//! app: body limit, panics, drain and purge.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use tokio::sync::watch;

use super::instance::{DynHandler, Phase, Shared};
use super::panics::CatchUnwind;
use super::{Body, Request, Response};
use crate::abi::request_outcome;

/// How long a purged connection gets to write its 503s before it is closed.
const PURGE_GRACE: Duration = Duration::from_secs(1);

type BoxedResponse = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

/// Serves one connection until the client closes it, or until the generation drains.
///
/// On drain, a connection that is idle (between requests, or before its first one) is given back
/// to the host with the bytes read from it so far, and the host passes it on to the current
/// generation: the client's next request meets the new code on the same connection, and no
/// request can be lost to a close racing with it. A busy connection finishes its request, whose
/// response says `connection: close`. A connection that asked for an HTTP upgrade (WebSocket)
/// stays until the purge.
pub(crate) async fn serve_connection(
    socket: std::net::TcpStream,
    unread: Bytes,
    app: Arc<dyn DynHandler>,
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
    let mut phase = shared.phase.clone();
    if unread.is_empty() {
        // Nothing read yet: until the client speaks, the connection can still move on whole.
        // The phase first: a connection of a draining generation moves on even if the
        // client has spoken meanwhile.
        let first_bytes = tokio::select! {
            biased;
            _ = phase.wait_for(|phase| *phase != Phase::Serving) => false,
            ready = stream.readable() => ready.is_ok(),
        };
        if !first_bytes {
            if *phase.borrow() != Phase::Serving {
                give_back(stream, unread, &shared);
            }
            return;
        }
    }
    let upgrade = asks_for_upgrade(&unread, &stream).await;
    let io = TokioIo::new(PrefixedStream { unread, stream });
    if upgrade {
        serve_upgradeable(io, app, shared, phase).await;
        return;
    }
    let service = {
        let shared = shared.clone();
        service_fn(move |request| -> BoxedResponse {
            Box::pin(respond(app.clone(), shared.clone(), request))
        })
    };
    let mut connection =
        http1::Builder::new().timer(TokioTimer::new()).serve_connection(io, service);
    let mut graceful = false;
    loop {
        let current = *phase.borrow_and_update();
        if current != Phase::Serving && !graceful {
            // Idle: it stops at once (and is given back below). Busy: the response in flight
            // goes out with `connection: close`.
            Pin::new(&mut connection).graceful_shutdown();
            graceful = true;
        }
        if current == Phase::Purging {
            let _ = tokio::time::timeout(
                PURGE_GRACE,
                poll_fn(|cx| connection.poll_without_shutdown(cx)),
            )
            .await;
            return;
        }
        // The phase first: when a drain and a new request arrive together, the connection
        // stops keeping alive before hyper reads the request, so the request moves with the
        // connection to the new generation instead of meeting the old code.
        let finished = tokio::select! {
            biased;
            changed = phase.changed() => if changed.is_err() { Some(false) } else { None },
            result = poll_fn(|cx| connection.poll_without_shutdown(cx)) => Some(result.is_ok()),
        };
        match finished {
            None => continue,
            // Stopped because of the drain: the socket is at a request boundary.
            Some(true) if graceful => {
                let parts = connection.into_parts();
                let PrefixedStream { unread: rest, stream } = parts.io.into_inner();
                let mut unread = Vec::with_capacity(parts.read_buf.len() + rest.len());
                unread.extend_from_slice(&parts.read_buf);
                unread.extend_from_slice(&rest);
                give_back(stream, Bytes::from(unread), &shared);
                return;
            }
            // The client closed, asked to close, or broke the protocol.
            Some(_) => return,
        }
    }
}

/// A connection that upgraded (or asked to): served with upgrade support, drained by closing.
async fn serve_upgradeable(
    io: TokioIo<PrefixedStream>,
    app: Arc<dyn DynHandler>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    let service = {
        let shared = shared.clone();
        service_fn(move |request| respond(app.clone(), shared.clone(), request))
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut graceful = false;
    loop {
        let current = *phase.borrow_and_update();
        if current != Phase::Serving && !graceful {
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

/// True when the first request's head (already read, or still in the socket) has an `Upgrade`
/// header: a WebSocket handshake. Looked at without consuming anything.
async fn asks_for_upgrade(unread: &[u8], stream: &tokio::net::TcpStream) -> bool {
    let mut peeked = [0u8; 4096];
    let head: &[u8] = if unread.is_empty() {
        match stream.peek(&mut peeked).await {
            Ok(length) => &peeked[..length],
            Err(_) => return false,
        }
    } else {
        unread
    };
    let end = head.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(head.len());
    head[..end]
        .split(|&byte| byte == b'\n')
        .skip(1)
        .any(|line| line.len() > 8 && line[..8].eq_ignore_ascii_case(b"upgrade:"))
}

/// Hands a connection back to the host, which owns it from now on.
fn give_back(stream: tokio::net::TcpStream, unread: Bytes, shared: &Shared) {
    match stream.into_std() {
        Ok(stream) => shared.host.return_connection(socket_handle(stream), &unread),
        Err(error) => tracing::warn!(target: "hotswap", "cannot give a connection back: {error}"),
    }
}

#[cfg(unix)]
fn socket_handle(stream: std::net::TcpStream) -> i64 {
    use std::os::fd::IntoRawFd;
    i64::from(stream.into_raw_fd())
}

#[cfg(windows)]
fn socket_handle(stream: std::net::TcpStream) -> i64 {
    use std::os::windows::io::IntoRawSocket;
    stream.into_raw_socket() as i64
}

/// A socket with bytes in front that were read from it earlier.
struct PrefixedStream {
    unread: Bytes,
    stream: tokio::net::TcpStream,
}

impl tokio::io::AsyncRead for PrefixedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.unread.is_empty() {
            let length = self.unread.len().min(buffer.remaining());
            let chunk = self.unread.split_to(length);
            buffer.put_slice(&chunk);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buffer)
    }
}

impl tokio::io::AsyncWrite for PrefixedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

async fn respond(
    app: Arc<dyn DynHandler>,
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
                result = CatchUnwind::new(app.handle_boxed(request)) => match result {
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
