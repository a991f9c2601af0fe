//! A small HTTP/1.1 client for tests, on hyper's connection API: keep-alive connections that a
//! test drives request by request, and one-shot helpers.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A response, read completely.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl HttpResponse {
    /// The generation that answered (the `hotswap-generation` header).
    pub fn generation(&self) -> Option<u64> {
        self.headers.get("hotswap-generation")?.to_str().ok()?.parse().ok()
    }

    /// True when the server will close the connection after this response.
    pub fn closes_connection(&self) -> bool {
        self.headers
            .get(http::header::CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
    }
}

/// A keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpConnection {
    sender: SendRequest<Full<Bytes>>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

pub type HttpError = Box<dyn std::error::Error + Send + Sync>;

impl HttpConnection {
    pub async fn connect(address: SocketAddr) -> Result<Self, HttpError> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender, driver })
    }

    /// True while the server keeps the connection open for another request.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<HttpResponse, HttpError> {
        self.sender.ready().await?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))?;
        let response = self.sender.send_request(request).await?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<HttpResponse, HttpError> {
        self.request("GET", path, "").await
    }
}

/// One request on a new connection.
pub async fn request(
    address: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<HttpResponse, HttpError> {
    HttpConnection::connect(address).await?.request(method, path, body).await
}

pub async fn get(address: SocketAddr, path: &str) -> Result<HttpResponse, HttpError> {
    request(address, "GET", path, "").await
}
