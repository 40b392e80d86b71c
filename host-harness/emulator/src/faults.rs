//! Injected faults: per-key FIFO queues and what each fault answers.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use super::Fault;
use super::errors::{ApiError, title_for};

/// Pending faults per API key; each is consumed by one request.
#[derive(Default)]
pub(crate) struct FaultQueues {
    queues: Mutex<HashMap<String, VecDeque<Fault>>>,
}

impl FaultQueues {
    /// Queue a fault for the next request made with `key`.
    pub fn push(&self, key: &str, fault: Fault) {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.entry(key.to_string()).or_default().push_back(fault);
    }

    /// Take the oldest pending fault of `key`, if any.
    pub fn pop(&self, key: &str) -> Option<Fault> {
        let mut q = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        q.get_mut(key).and_then(VecDeque::pop_front)
    }
}

/// A short label for `RecordedRequest::fault`, e.g. `status 429 throttled`.
pub(crate) fn label(fault: &Fault) -> String {
    match fault {
        Fault::Status { status, code, .. } => format!("status {status} {code}"),
        Fault::Html { status } => format!("html {status}"),
        Fault::Delay(d) => format!("delay {}ms", d.as_millis()),
        Fault::SlowBody(d) => format!("slow body {}ms", d.as_millis()),
        Fault::DropConnection => "drop connection".into(),
        Fault::MalformedJson => "malformed json".into(),
        Fault::Padded(n) => format!("padded to {n} bytes"),
    }
}

/// The error a `Fault::Status` answers with: the verbatim throttled body for 429
/// `throttled` (notes §4), otherwise the real envelope with a title matching the status.
pub(crate) fn status_error(status: u16, code: &str, retry_after: Option<u32>) -> ApiError {
    let mut e = if status == 429 && code == "throttled" {
        ApiError::throttled(retry_after.unwrap_or(1))
    } else {
        ApiError::new(
            status,
            code,
            title_for(status),
            format!("Injected fault: {} ({code}).", title_for(status)),
        )
    };
    e.headers.retain(|(name, _)| *name != "retry-after");
    if let Some(secs) = retry_after {
        e.headers.push(("retry-after", secs.to_string()));
    }
    e
}

/// An HTML error page like the ones Cloudflare serves in front of Klaviyo (python#84).
pub(crate) fn html_page(status: u16) -> String {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

/// A JSON:API document cut off mid-way.
pub(crate) const MALFORMED_JSON: &str = r#"{"data":[{"type":"profile","id":"01GDDKASAP8TKDDA2GRZDSVP4H","attributes":{"email":"sarah.mason@klaviyo-de"#;

/// The body of a `Fault::SlowBody` answer: its first half at once, the rest after a pause.
/// The length is declared up front (`Content-Length`), so the client knows more is due.
pub(crate) struct SlowBody {
    first: Option<Bytes>,
    rest: Option<Bytes>,
    pause: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SlowBody {
    pub(crate) fn new(mut bytes: Bytes, pause: Duration) -> Self {
        let rest = bytes.split_off(bytes.len() / 2);
        SlowBody {
            first: (!bytes.is_empty()).then_some(bytes),
            rest: (!rest.is_empty()).then_some(rest),
            pause,
            sleep: None,
        }
    }
}

impl Body for SlowBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if self.rest.is_none() {
            return Poll::Ready(None);
        }
        let pause = self.pause;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(self.rest.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len() as u64);
        SizeHint::with_exact(len(&self.first) + len(&self.rest))
    }
}
