//! Serving HTTP/1.1 on a connection the host handed over, and answering each request with the
//! app: body limit, panics, drain, purge, and the end of long-lived streams.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::Limited;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Notify, watch};

use super::connection_io::ConnectionIo;
use super::instance::{CountGuard, DynHandler, Host, Phase, Shared};
use super::panics::CatchUnwind;
use super::{Body, BoxError, ConnectionInfo, Request, Response};
use crate::abi::request_outcome;

/// The client of a request that a replaced generation forwarded (see `forward`).
const FORWARDED_PEER: &str = "hotswap-forwarded-peer";

/// How long a purged connection gets to write its 503s before it is closed.
const PURGE_GRACE: Duration = Duration::from_secs(1);

type BoxedResponse =
    Pin<Box<dyn Future<Output = Result<http::Response<TrackedBody>, Infallible>> + Send>>;

/// Requests of one connection whose response is not completely sent yet: while there are none,
/// the connection is at a request boundary.
#[derive(Default)]
struct Activity {
    responses: AtomicUsize,
    idle: Notify,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> ActivityGuard {
        self.responses.fetch_add(1, Ordering::SeqCst);
        ActivityGuard { activity: self.clone() }
    }

    fn is_idle(&self) -> bool {
        self.responses.load(Ordering::SeqCst) == 0
    }
}

struct ActivityGuard {
    activity: Arc<Activity>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        if self.activity.responses.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.activity.idle.notify_waiters();
        }
    }
}

/// Serves one connection until the client closes it, or until the generation drains.
///
/// On drain, the connection goes back to the host at its next request boundary (when no
/// response is being sent), with the bytes read from it but not yet processed, and the host
/// passes it on to the current generation: the client's next request meets the new code on the
/// same connection, nothing is closed under a request on the wire, and no response says
/// `connection: close` (so pipelined requests are each answered once, in order). Only at the
/// purge (the drain timeout) are connections closed. A connection that asked for an upgrade
/// (WebSocket) stays with this generation until it ends or the stream drain timeout passes.
pub(crate) async fn serve_connection(
    socket: std::net::TcpStream,
    unread: Bytes,
    app: Arc<dyn DynHandler>,
    shared: Arc<Shared>,
) {
    let _connection = shared.host.connection();
    let raw_socket = socket_number(&socket);
    let stream = match tokio::net::TcpStream::from_std(socket) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(target: "hotswap", "cannot adopt a connection: {error}");
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let addresses = match (stream.peer_addr(), stream.local_addr()) {
        (Ok(peer), Ok(local)) => Some(ConnectionInfo { peer, local }),
        _ => None,
    };
    let mut phase = shared.phase.clone();
    if unread.is_empty() {
        // Nothing read yet: until the client speaks, the connection can still move on whole.
        // The phase first: a connection of a draining generation moves on even if the
        // client has spoken meanwhile. One that stays silent past the first-byte timeout is
        // closed (browsers open spare connections; a flood of idle ones must not pile up).
        let silent_limit = async {
            match shared.first_byte_timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let first_bytes = tokio::select! {
            biased;
            _ = phase.wait_for(|phase| *phase != Phase::Serving) => false,
            ready = stream.readable() => ready.is_ok(),
            () = silent_limit => return,
        };
        if !first_bytes {
            if *phase.borrow() != Phase::Serving {
                give_back(stream, unread, &shared);
            }
            return;
        }
    }
    let upgrade = asks_for_upgrade(&unread, &stream).await;
    let activity = Arc::new(Activity::default());
    let service = {
        let (shared, activity) = (shared.clone(), activity.clone());
        service_fn(move |request| -> BoxedResponse {
            Box::pin(respond(
                app.clone(),
                shared.clone(),
                activity.clone(),
                raw_socket,
                addresses,
                request,
            ))
        })
    };
    if let Some(upgrade) = upgrade {
        let io = ConnectionIo::upgradeable(
            unread,
            stream,
            upgrade == Upgrade::WebSocket,
            shared.host,
            shared.streams_closing.clone(),
        );
        serve_upgradeable(io, service, shared, phase).await;
        return;
    }
    let io = TokioIo::new(ConnectionIo::plain(unread, stream));
    let mut connection =
        http1::Builder::new().timer(TokioTimer::new()).serve_connection(io, service);
    let mut graceful = false;
    loop {
        let current = *phase.borrow_and_update();
        if current == Phase::Purging {
            if !graceful {
                // What is in flight is answered (503 when its handler still runs) with
                // `connection: close`, and the connection ends.
                Pin::new(&mut connection).graceful_shutdown();
            }
            let mut streams_closing = shared.streams_closing.clone();
            let finish = poll_fn(|cx| connection.poll_without_shutdown(cx));
            // A response still streaming keeps the connection until the stream drain timeout.
            let limit = async {
                let _ = streams_closing.wait_for(|closing| *closing).await;
                tokio::time::sleep(PURGE_GRACE).await;
            };
            tokio::select! {
                _ = finish => {}
                () = limit => {}
            }
            return;
        }
        if current == Phase::Draining && !graceful && activity.is_idle() {
            // At a request boundary: hyper stops at once, writing nothing, and the connection is
            // given back below.
            Pin::new(&mut connection).graceful_shutdown();
            graceful = true;
        }
        let became_idle = activity.idle.notified();
        tokio::pin!(became_idle);
        became_idle.as_mut().enable();
        let waiting_for_boundary = current == Phase::Draining && !graceful;
        if waiting_for_boundary && activity.is_idle() {
            continue;
        }
        // The phase first: when a drain and a new request arrive together, the connection
        // stops before hyper reads the request, so the request moves with the connection to
        // the new generation instead of meeting the old code.
        let finished = tokio::select! {
            biased;
            changed = phase.changed() => if changed.is_err() { Some(false) } else { None },
            () = &mut became_idle, if waiting_for_boundary => None,
            result = poll_fn(|cx| connection.poll_without_shutdown(cx)) => Some(result.is_ok()),
        };
        match finished {
            None => continue,
            // Stopped because of the drain: the socket is at a request boundary.
            Some(true) if graceful => {
                let parts = connection.into_parts();
                let Some((stream, rest)) = parts.io.into_inner().into_parts() else { return };
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

/// A connection that upgraded (or asked to). Until the upgrade it is served like any other; the
/// upgraded stream then belongs to the app and ends with it, or at the stream drain timeout.
async fn serve_upgradeable<S>(
    io: ConnectionIo,
    service: S,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) where
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<TrackedBody>,
            Error = Infallible,
            Future = BoxedResponse,
        > + Send
        + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut streams_closing = shared.streams_closing.clone();
    tokio::select! {
        // Ended, or upgraded (the app has the stream now).
        _ = connection.as_mut() => return,
        _ = phase.wait_for(|phase| *phase == Phase::Purging) => {}
    }
    // Purged before the upgrade happened: the handshake request gets its 503 and the connection
    // ends.
    connection.as_mut().graceful_shutdown();
    let limit = async {
        let _ = streams_closing.wait_for(|closing| *closing).await;
        tokio::time::sleep(PURGE_GRACE).await;
    };
    tokio::select! {
        _ = connection.as_mut() => {}
        () = limit => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upgrade {
    WebSocket,
    Other,
}

/// Whether the first request's head (already read, or still in the socket) has an `Upgrade`
/// header, and for what. Looked at without consuming anything.
async fn asks_for_upgrade(unread: &[u8], stream: &tokio::net::TcpStream) -> Option<Upgrade> {
    let mut peeked = [0u8; 4096];
    let head: &[u8] = if unread.is_empty() {
        match stream.peek(&mut peeked).await {
            Ok(length) => &peeked[..length],
            Err(_) => return None,
        }
    } else {
        unread
    };
    let end = head.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(head.len());
    let line = head[..end]
        .split(|&byte| byte == b'\n')
        .skip(1)
        .find(|line| line.len() > 8 && line[..8].eq_ignore_ascii_case(b"upgrade:"))?;
    let value = String::from_utf8_lossy(&line[8..]).trim().to_ascii_lowercase();
    Some(if value.split(',').any(|protocol| protocol.trim() == "websocket") {
        Upgrade::WebSocket
    } else {
        Upgrade::Other
    })
}

/// Hands a connection back to the host, which owns it from now on.
fn give_back(stream: tokio::net::TcpStream, unread: Bytes, shared: &Shared) {
    match stream.into_std() {
        Ok(stream) => shared.host.return_connection(socket_handle(stream), &unread),
        Err(error) => tracing::warn!(target: "hotswap", "cannot give a connection back: {error}"),
    }
}

#[cfg(unix)]
fn socket_number(stream: &std::net::TcpStream) -> i64 {
    use std::os::fd::AsRawFd;
    i64::from(stream.as_raw_fd())
}

#[cfg(windows)]
fn socket_number(stream: &std::net::TcpStream) -> i64 {
    use std::os::windows::io::AsRawSocket;
    stream.as_raw_socket() as i64
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

async fn respond(
    app: Arc<dyn DynHandler>,
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    socket: i64,
    addresses: Option<ConnectionInfo>,
    request: http::Request<Incoming>,
) -> Result<http::Response<TrackedBody>, Infallible> {
    let activity = activity.begin();
    let mut request = request;
    let inject = match &shared.live_reload {
        Some(live) => {
            let (method, uri) = (request.method().clone(), request.uri().clone());
            let phase = shared.phase.clone();
            match live.before_app(&method, &uri, request.headers_mut(), phase).await {
                super::live_reload::BeforeApp::Answer(response) => {
                    let target = uri.path_and_query().map_or("/", |target| target.as_str());
                    let tracker = shared.host.request(socket, method.as_str(), target);
                    return Ok(finish(response, tracker, activity, &shared));
                }
                super::live_reload::BeforeApp::Serve { inject } => inject,
            }
        }
        None => false,
    };
    let writes = can_write(request.method());
    let method = request.method().clone();
    let target = request.uri().path_and_query().map_or("/", |target| target.as_str()).to_owned();
    let request = match streaming_body(request, shared.max_body_bytes, addresses) {
        Ok(request) => request,
        Err(refusal) => {
            let mut tracker = shared.host.request(socket, method.as_str(), &target);
            tracker.outcome = request_outcome::REFUSED;
            return Ok(finish(*refusal, tracker, activity, &shared));
        }
    };
    // While the state moves to the next generation, a request that can write waits here, before
    // its handler runs; if this generation is replaced meanwhile, the next one answers it.
    let _write = if writes {
        let mut phase = shared.phase.clone();
        if shared.writes.enter(&mut phase).await.is_err() {
            let mut response = forward(request, &shared).await;
            response.headers_mut().insert("hotswap-forwarded-by", shared.generation_header.clone());
            return Ok(response.map(|body| TrackedBody::new(body, activity, &shared)));
        }
        Some(WriteGuard(&shared.writes))
    } else {
        None
    };
    let mut tracker = shared.host.request(socket, method.as_str(), &target);
    let mut phase = shared.phase.clone();
    let handler =
        Polled { future: app.handle_boxed(request), host: shared.host, token: tracker.token };
    let response = tokio::select! {
        biased;
        result = CatchUnwind::new(handler) => match result {
            Ok(response) => response,
            Err(()) => {
                tracker.outcome = request_outcome::PANICKED;
                plain(StatusCode::INTERNAL_SERVER_ERROR, "the handler panicked; the hotswap daemon reported the panic\n")
            }
        },
        _ = phase.wait_for(|phase| *phase == Phase::Purging) => {
            tracker.outcome = request_outcome::CUT;
            purged()
        }
    };
    let response = match &shared.live_reload {
        Some(live) if inject => live.inject(response).await,
        _ => response,
    };
    Ok(finish(response, tracker, activity, &shared))
}

/// Methods whose requests may change the app's state (RFC 9110's unsafe methods).
fn can_write(method: &http::Method) -> bool {
    !matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE
    )
}

/// A writing request's handler runs until this is dropped.
struct WriteGuard<'a>(&'a super::instance::Writes);

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

fn finish(
    mut response: Response,
    mut tracker: super::instance::RequestGuard,
    activity: ActivityGuard,
    shared: &Shared,
) -> http::Response<TrackedBody> {
    if !shared.host.response_started(tracker.token) {
        // The host answered this request itself while its handler was stuck, and closed the
        // connection: this response goes nowhere.
        tracker.outcome = request_outcome::CUT;
        response = purged();
    }
    response.headers_mut().insert("hotswap-generation", shared.generation_header.clone());
    drop(tracker);
    response.map(|body| TrackedBody::new(body, activity, shared))
}

/// Sends a request that was held while the state moved to the daemon's own address, where the
/// generation that now has the state answers it, and returns that answer.
async fn forward(request: Request, shared: &Shared) -> Response {
    let failed = |why: String| {
        let mut response = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this request waited while the app's state moved to new code, and could not be handed to it ({why}); retry it\n"
            ),
        );
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    };
    let Some(address) = shared.forward_address else {
        return failed("no address to hand it to".to_owned());
    };
    let stream = match tokio::net::TcpStream::connect(address).await {
        Ok(stream) => stream,
        Err(error) => return failed(format!("connecting to {address}: {error}")),
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(handshake) => handshake,
            Err(error) => return failed(error.to_string()),
        };
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let (mut parts, body) = request.into_parts();
    // The body streams on; hyper frames it again (by its length when it had one).
    for hop_by_hop in [header::CONNECTION, header::TRANSFER_ENCODING] {
        parts.headers.remove(hop_by_hop);
    }
    if let Some(info) = parts.extensions.get::<ConnectionInfo>()
        && let Ok(peer) = HeaderValue::from_str(&info.peer.to_string())
    {
        parts.headers.insert(FORWARDED_PEER, peer);
    }
    let request = http::Request::from_parts(parts, body);
    match sender.send_request(request).await {
        Ok(response) => response.map(Body::new),
        Err(error) => failed(error.to_string()),
    }
}

fn purged() -> Response {
    let mut response = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "this request outlived its generation's drain timeout; retry it\n",
    );
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The handler's future, telling the host which thread runs it (so a crash names the request).
struct Polled<F> {
    future: F,
    host: Host,
    token: u64,
}

impl<F: Future> Future for Polled<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        struct Leave(Host, u64);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.polling(self.1, false);
            }
        }
        let (host, token) = (self.host, self.token);
        host.polling(token, true);
        let _leave = Leave(host, token);
        // SAFETY: `future` is structurally pinned: it is never moved out of `self`.
        unsafe { self.map_unchecked_mut(|this| &mut this.future) }.poll(cx)
    }
}

/// A response body that tells the connection when it is completely sent (it is dropped), and,
/// for a streamed body (no known length, such as server-sent events), counts as a stream and
/// ends cleanly when the generation's stream drain timeout passes.
pub(crate) struct TrackedBody {
    inner: Body,
    _activity: ActivityGuard,
    stream: Option<StreamEnd>,
}

struct StreamEnd {
    _guard: CountGuard,
    closing: watch::Receiver<bool>,
    wait: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl TrackedBody {
    fn new(inner: Body, activity: ActivityGuard, shared: &Shared) -> Self {
        use http_body::Body as _;
        let streamed = inner.size_hint().exact().is_none() && !inner.is_end_stream();
        let stream = streamed.then(|| StreamEnd {
            _guard: shared.host.stream(),
            closing: shared.streams_closing.clone(),
            wait: None,
        });
        Self { inner, _activity: activity, stream }
    }
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(stream) = &mut self.stream {
            if *stream.closing.borrow() {
                // Between two frames: the stream ends here, with its last chunk.
                return Poll::Ready(None);
            }
            let wait = stream.wait.get_or_insert_with(|| {
                let mut closing = stream.closing.clone();
                Box::pin(async move {
                    let _ = closing.wait_for(|closing| *closing).await;
                })
            });
            if wait.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request as the app gets it: its body streams (through a limit of `limit` bytes when
/// the daemon sets one: a declared length beyond it is a 413 at once, a longer stream ends in an
/// error), with the connection's addresses in its extensions.
fn streaming_body(
    request: http::Request<Incoming>,
    limit: u64,
    addresses: Option<ConnectionInfo>,
) -> Result<Request, Box<Response>> {
    let (mut parts, body) = request.into_parts();
    if let Some(mut addresses) = addresses {
        // A request held while the state moved, forwarded by the replaced generation over
        // loopback: its client is the one that generation saw.
        if let Some(peer) = parts
            .headers
            .remove(FORWARDED_PEER)
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .filter(|_| addresses.peer.ip().is_loopback())
        {
            addresses.peer = peer;
        }
        parts.extensions.insert(addresses);
    }
    if limit == 0 {
        return Ok(http::Request::from_parts(parts, Body::new(body)));
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Box::new(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body larger than the limit of {limit} bytes (`max_body_bytes` in the \
                 [server] section of hotswap.toml)\n"
            ),
        )));
    }
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(http::Request::from_parts(parts, Body::new(Limited::new(body, limit_bytes))))
}

fn plain(status: StatusCode, text: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(Body::from(text.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
