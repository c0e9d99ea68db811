//! The one HTTP request a `builtin: metrics` connection carries: parsed
//! here, answered with the exposition or an error status.

use super::CONTENT_TYPE;

/// The most of a request superd reads: its request line and headers. A
/// scraper's request is a few hundred bytes.
pub const MAX_REQUEST: usize = 8 * 1024;

/// What the request in `buf` asks for, once it is complete: `None` while
/// its head (up to the empty line) has not all arrived and `buf` is below
/// [`MAX_REQUEST`]. `eof`: the peer will send nothing more.
pub fn parse_request(buf: &[u8], eof: bool) -> Option<Request> {
    let end = head_end(buf);
    let Some(end) = end else {
        if buf.len() >= MAX_REQUEST {
            return Some(Request::TooLarge);
        }
        return eof.then_some(Request::Bad { http11: false });
    };
    let head = &buf[..end];
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let Ok(line) = std::str::from_utf8(line) else {
        return Some(Request::Bad { http11: false });
    };
    let mut words = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Some(Request::Bad { http11: false });
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Some(Request::Bad { http11: false }),
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || target.is_empty() {
        return Some(Request::Bad { http11 });
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Some(Request::MethodNotAllowed { http11 }),
    };
    // The path, without a query string; an absolute-form target
    // (`http://host/metrics`, RFC 9112 3.2.2) names its path after the
    // authority.
    let path = target.split(['?', '#']).next().unwrap_or("");
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => path,
    };
    if path != "/metrics" {
        return Some(Request::NotFound { http11, head_only });
    }
    Some(Request::Metrics { http11, head_only })
}

/// Where the head of a request ends (just past its empty line).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// A parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// `GET /metrics` (or `HEAD`).
    Metrics { http11: bool, head_only: bool },
    /// Another path: 404.
    NotFound { http11: bool, head_only: bool },
    /// A method other than GET and HEAD: 405.
    MethodNotAllowed { http11: bool },
    /// Not an HTTP/1.0 or 1.1 request line: 400.
    Bad { http11: bool },
    /// No end of the head within [`MAX_REQUEST`]: 431.
    TooLarge,
}

/// The whole response to `req`; `body` renders the metrics (called only
/// for a request that gets them). Every response closes the connection.
pub fn respond(req: Request, body: impl FnOnce() -> String) -> Vec<u8> {
    let (http11, status, head_only) = match req {
        Request::Metrics { http11, head_only } => (http11, "200 OK", head_only),
        Request::NotFound { http11, head_only } => (http11, "404 Not Found", head_only),
        Request::MethodNotAllowed { http11 } => (http11, "405 Method Not Allowed", false),
        Request::Bad { http11 } => (http11, "400 Bad Request", false),
        Request::TooLarge => (false, "431 Request Header Fields Too Large", false),
    };
    let (content_type, text) = match req {
        Request::Metrics { .. } => (CONTENT_TYPE, body()),
        _ => (
            "text/plain; charset=utf-8",
            format!("{status}\nsuperd serves its metrics at GET /metrics\n"),
        ),
    };
    let mut out = format!(
        "HTTP/1.{} {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        u8::from(http11),
        text.len()
    );
    if matches!(req, Request::MethodNotAllowed { .. }) {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(text.as_bytes());
    }
    out
}
