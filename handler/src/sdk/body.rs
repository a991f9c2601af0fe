//! The body type of requests and responses: anything that is an `http_body::Body` of `Bytes`,
//! boxed. It is `Sync` (so a handler may keep `&request` across an `.await`) without asking the
//! bodies it wraps to be: they are only reached through `&mut`, and what `&self` asks (the size,
//! the end) is kept beside them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use sync_wrapper::SyncWrapper;

/// The error type of bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body. Build it from a `String`, `&'static str`, `Vec<u8>` or `Bytes`,
/// or wrap a streaming body with [`Body::new`].
pub struct Body {
    inner: SyncWrapper<UnsyncBoxBody<Bytes, BoxError>>,
    /// What is left to come, as the wrapped body said before any frame, less the data polled.
    size: SizeHint,
    ended: bool,
}

impl Body {
    /// Wraps any body whose chunks are `Bytes`.
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (size, ended) = (body.size_hint(), body.is_end_stream());
        Self { inner: SyncWrapper::new(body.map_err(Into::into).boxed_unsync()), size, ended }
    }

    /// A body with no bytes.
    pub fn empty() -> Self {
        Self::new(http_body_util::Empty::<Bytes>::new())
    }

    /// Reads the whole body. A request body past the daemon's `max_body_bytes` ends in an error
    /// that [`is_too_large`] recognises (axum's extractors answer it with 413 by themselves).
    pub async fn to_bytes(self) -> Result<Bytes, BoxError> {
        Ok(self.collect().await?.to_bytes())
    }
}

/// Whether a body error is the daemon's `max_body_bytes` limit being passed: answer it with
/// `413 Payload Too Large`.
pub fn is_too_large(error: &BoxError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(error) = source {
        if error.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = error.source();
    }
    false
}

impl Default for Body {
    fn default() -> Self {
        Self::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Self::new(http_body_util::Full::new(bytes))
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(self.inner.get_mut()).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let length = data.len() as u64;
                    let lower = self.size.lower().saturating_sub(length);
                    let upper = self.size.upper().map(|upper| upper.saturating_sub(length));
                    let mut size = SizeHint::new();
                    size.set_lower(lower);
                    if let Some(upper) = upper {
                        size.set_upper(upper.max(lower));
                    }
                    self.size = size;
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}
