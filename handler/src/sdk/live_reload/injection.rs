//! Putting the page script into HTML responses: which requests and responses qualify, and the
//! rewrite itself (before the last `</body>`, or at the end; `Content-Length` fixed).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, StatusCode, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use crate::sdk::{Body, BoxError, Response};

/// The path the tag loads; a page that already has it (added by hand) is left alone.
pub(crate) const SCRIPT_PATH: &str = "/__hotswap/live.js";

/// Bodies up to this size are read whole so that the tag goes before `</body>`; larger (and
/// streamed) ones get it at the end.
const WHOLE_BODY_LIMIT: u64 = 8 * 1024 * 1024;

/// The tag, naming the generation that rendered the page.
pub(crate) fn script_tag(generation: u64) -> String {
    format!("<script src=\"{SCRIPT_PATH}\" data-hotswap-generation=\"{generation}\"></script>")
}

/// A request for a page the browser shows: a GET for a document (`Sec-Fetch-Dest: document` or
/// `iframe`), or, from clients that do not send `Sec-Fetch-Dest`, a GET that accepts
/// `text/html`. `fetch()` calls (htmx fragments among them) and HEAD are not.
pub(crate) fn is_navigation(method: &Method, headers: &http::HeaderMap) -> bool {
    if method != Method::GET {
        return false;
    }
    match headers.get("sec-fetch-dest") {
        Some(destination) => {
            let destination = destination.as_bytes();
            destination.eq_ignore_ascii_case(b"document")
                || destination.eq_ignore_ascii_case(b"iframe")
        }
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|accept| accept.to_ascii_lowercase().contains("text/html")),
    }
}

/// Whether the app's answer to a navigation can take the script: HTML, not compressed, with a
/// body.
pub(crate) fn is_injectable(response: &Response) -> bool {
    let status = response.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return false;
    }
    let headers = response.headers();
    let html = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).is_some_and(
        |value| value.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("text/html"),
    );
    let encoded = headers.get_all(header::CONTENT_ENCODING).iter().any(|value| {
        !value.as_bytes().eq_ignore_ascii_case(b"identity") && !value.as_bytes().is_empty()
    });
    html && !encoded
}

/// The response with the script in it, or as it was when it does not qualify.
pub(crate) async fn inject(response: Response, generation: u64) -> Response {
    if !is_injectable(&response) {
        return response;
    }
    let tag = script_tag(generation);
    let (mut parts, body) = response.into_parts();
    use http_body::Body as _;
    let exact = body.size_hint().exact();
    match exact {
        Some(length) if length <= WHOLE_BODY_LIMIT => {
            let page = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    // The app's body failed: pass the failure on, as it would have gone.
                    return http::Response::from_parts(parts, Body::new(Failing(Some(error))));
                }
            };
            let page = if contains(&page, SCRIPT_PATH.as_bytes()) {
                page
            } else {
                insert_before_body_end(&page, tag.as_bytes())
            };
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(page.len()));
            http::Response::from_parts(parts, Body::from(page))
        }
        Some(length) => {
            let total = length + tag.len() as u64;
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(total));
            http::Response::from_parts(parts, Body::new(Appended::new(body, tag)))
        }
        None => {
            // Streamed: the tag follows the last chunk (browsers run a script after `</html>`).
            parts.headers.remove(header::CONTENT_LENGTH);
            http::Response::from_parts(parts, Body::new(Appended::new(body, tag)))
        }
    }
}

/// `page` with `tag` before its last `</body>` (any case), or at its end.
pub(crate) fn insert_before_body_end(page: &[u8], tag: &[u8]) -> Bytes {
    let position = rfind_ignore_case(page, b"</body").unwrap_or(page.len());
    let mut rewritten = BytesMut::with_capacity(page.len() + tag.len());
    rewritten.extend_from_slice(&page[..position]);
    rewritten.extend_from_slice(tag);
    rewritten.extend_from_slice(&page[position..]);
    rewritten.freeze()
}

fn rfind_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len())
        .rev()
        .find(|&start| haystack[start..start + needle.len()].eq_ignore_ascii_case(needle))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// A body followed by one more chunk.
struct Appended {
    inner: Body,
    tail: Option<Bytes>,
}

impl Appended {
    fn new(inner: Body, tail: String) -> Self {
        Self { inner, tail: Some(Bytes::from(tail)) }
    }
}

impl http_body::Body for Appended {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.tail.is_some() {
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Ready(None) => {}
                Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => {
                    // Trailers end the body: the tag goes before them.
                    let tail = self.tail.take().expect("checked");
                    self.inner = Body::new(TrailersOnly(Some(frame)));
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
                other => return other,
            }
        }
        match self.tail.take() {
            Some(tail) => Poll::Ready(Some(Ok(Frame::data(tail)))),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.tail.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let extra = self.tail.as_ref().map_or(0, |tail| tail.len() as u64);
        if let Some(exact) = hint.exact() {
            hint.set_exact(exact + extra);
        } else {
            hint.set_lower(hint.lower() + extra);
        }
        hint
    }
}

/// The trailers frame a body ended with, sent after the tag.
struct TrailersOnly(Option<Frame<Bytes>>);

impl http_body::Body for TrailersOnly {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Ok))
    }
}

/// A body whose first frame is an error.
struct Failing(Option<BoxError>);

impl http_body::Body for Failing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.take().map(Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(content_type: &str, body: Body) -> Response {
        let mut response = http::Response::new(body);
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        response
    }

    async fn bytes_of(response: Response) -> (http::response::Parts, Bytes) {
        let (parts, body) = response.into_parts();
        (parts, body.collect().await.unwrap().to_bytes())
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (http::HeaderName::from_static(name), HeaderValue::from_static(value))
            })
            .collect()
    }

    #[test]
    fn navigations_are_gets_for_documents() {
        let browser = headers(&[("sec-fetch-dest", "document"), ("accept", "text/html,*/*")]);
        assert!(is_navigation(&Method::GET, &browser));
        assert!(!is_navigation(&Method::HEAD, &browser));
        assert!(!is_navigation(&Method::POST, &browser));
        assert!(is_navigation(&Method::GET, &headers(&[("sec-fetch-dest", "iframe")])));
        // fetch() (htmx) asks for HTML too, but it is not a page.
        let fetch = headers(&[("sec-fetch-dest", "empty"), ("accept", "text/html")]);
        assert!(!is_navigation(&Method::GET, &fetch));
        // Clients without Fetch Metadata: by Accept.
        assert!(is_navigation(&Method::GET, &headers(&[("accept", "Text/HTML")])));
        assert!(!is_navigation(&Method::GET, &headers(&[("accept", "application/json")])));
        assert!(!is_navigation(&Method::GET, &http::HeaderMap::new()));
    }

    #[test]
    fn the_tag_goes_before_the_last_body_end_or_at_the_end() {
        let tag = b"<script></script>";
        assert_eq!(
            insert_before_body_end(b"<html><body><p>hi</p></BODY></html>", tag),
            Bytes::from_static(b"<html><body><p>hi</p><script></script></BODY></html>")
        );
        assert_eq!(
            insert_before_body_end(b"<p>a</body> in text</body>", tag),
            Bytes::from_static(b"<p>a</body> in text<script></script></body>")
        );
        assert_eq!(
            insert_before_body_end(b"<p>no end", tag),
            Bytes::from_static(b"<p>no end<script></script>")
        );
        assert_eq!(insert_before_body_end(b"", tag), Bytes::from_static(tag));
    }

    #[test]
    fn html_gets_the_script_and_a_correct_length() {
        block_on(async {
            let mut page =
                response("text/html; charset=utf-8", Body::from("<body><h1>hi</h1></body>"));
            page.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(24));
            let (parts, body) = bytes_of(inject(page, 7).await).await;
            let expected = format!("<body><h1>hi</h1>{}</body>", script_tag(7));
            assert_eq!(body, expected.as_bytes());
            assert_eq!(parts.headers[header::CONTENT_LENGTH], expected.len().to_string());
            assert!(expected.contains("data-hotswap-generation=\"7\""));

            // A page that has the tag already (added by hand) keeps its bytes.
            let by_hand = "<body><script src=\"/__hotswap/live.js\"></script></body>";
            let (_, body) =
                bytes_of(inject(response("text/html", Body::from(by_hand)), 1).await).await;
            assert_eq!(body, by_hand.as_bytes());
        });
    }

    #[test]
    fn streamed_html_gets_the_script_after_its_last_chunk() {
        block_on(async {
            let chunks = Chunks(
                vec![Bytes::from_static(b"<p>one</p>"), Bytes::from_static(b"<p>two</p>")].into(),
            );
            let mut page = response("text/html", Body::new(chunks));
            page.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(20));
            let injected = inject(page, 2).await;
            assert!(injected.headers().get(header::CONTENT_LENGTH).is_none(), "chunked now");
            let (_, body) = bytes_of(injected).await;
            assert_eq!(body, format!("<p>one</p><p>two</p>{}", script_tag(2)).as_bytes());
        });
    }

    #[test]
    fn everything_else_is_passed_on_byte_for_byte() {
        block_on(async {
            let binary: Vec<u8> = (0..=255).collect();
            let cases = [
                response("application/json", Body::from("{\"a\":\"</body>\"}")),
                response("text/plain", Body::from("</body>")),
                response("application/octet-stream", Body::from(binary.clone())),
                response("text/htmlx", Body::from("</body>")),
                {
                    let mut compressed = response("text/html", Body::from(vec![0x1f, 0x8b, 8, 0]));
                    compressed
                        .headers_mut()
                        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                    compressed
                },
                {
                    let mut not_modified = response("text/html", Body::empty());
                    *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
                    not_modified
                },
            ];
            let expected: [&[u8]; 6] =
                [b"{\"a\":\"</body>\"}", b"</body>", &binary, b"</body>", &[0x1f, 0x8b, 8, 0], b""];
            for (case, expected) in cases.into_iter().zip(expected) {
                let headers_before = case.headers().clone();
                let (parts, body) = bytes_of(inject(case, 1).await).await;
                assert_eq!(body, expected);
                assert_eq!(parts.headers, headers_before);
            }
        });
    }

    /// A body of unknown length, in chunks.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
        }
    }
}
