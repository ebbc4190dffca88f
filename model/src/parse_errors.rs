//! JSON bodies for the answers hyper gives on its own, for the HTTP servers of this project
//! (netmaster's API, the agent's Docker plugin socket).
//!
//! A request hyper cannot parse (a request line or header that is not HTTP, a URL over its
//! 65534-byte limit, a head over its buffer or with over 100 headers) never reaches the router:
//! hyper writes a bare `400`, `414` or `431` with `content-length: 0` and closes the connection.
//! hyper offers no hook for that answer, so the connections of [`JsonParseErrors`] recognise it
//! as it is written and write a JSON error body of the server's [`Shape`] in its place. Nothing
//! else can look like it: every answer of the servers' routers with such a status has a body.

use axum::http::StatusCode;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The shape of a server's error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// The REST API's `{"error": "..."}` (netmaster).
    Error,
    /// libnetwork's `{"Err": "..."}` (the Docker plugin socket), with its content type.
    DockerErr,
}

impl Shape {
    fn body(self, message: &str) -> Vec<u8> {
        let v = match self {
            Shape::Error => serde_json::to_value(crate::agent::ErrorBody {
                error: message.into(),
            }),
            Shape::DockerErr => Ok(serde_json::json!({ "Err": message })),
        };
        serde_json::to_vec(&v.expect("serializable")).expect("serializable")
    }

    fn content_type(self) -> &'static str {
        match self {
            Shape::Error => "application/json",
            // What Docker's plugin client expects (docker_driver::CONTENT_TYPE).
            Shape::DockerErr => "application/vnd.docker.plugins.v1.2+json",
        }
    }
}

/// A listener whose connections give hyper's own error answers a JSON body of `shape`.
pub struct JsonParseErrors<L> {
    listener: L,
    shape: Shape,
}

impl<L> JsonParseErrors<L> {
    pub fn new(listener: L, shape: Shape) -> Self {
        JsonParseErrors { listener, shape }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for JsonParseErrors<L> {
    type Io = Conn<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.listener.accept().await;
        (
            Conn {
                io,
                shape: self.shape,
                replacing: None,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// One connection: reads pass through; a write of one of hyper's bare error heads is replaced.
pub struct Conn<T> {
    io: T,
    shape: Shape,
    /// The answer being written instead of a bare head: its bytes, how many are written, and
    /// the length of the head it stands for (reported as written once it is all out).
    replacing: Option<(Vec<u8>, usize, usize)>,
}

/// The answer to write instead of `head` when it is one of hyper's bare error heads.
fn replacement(head: &[u8], shape: Shape) -> Option<Vec<u8>> {
    if !head.starts_with(b"HTTP/1.") || !head.ends_with(b"\r\n\r\n") || head.len() < 12 {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    if !text.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status: StatusCode = text.get(9..12)?.parse().ok()?;
    let message = match status {
        StatusCode::BAD_REQUEST => {
            "the request is not valid HTTP/1.1: its request line or a header does not parse"
        }
        StatusCode::URI_TOO_LONG => "the URL is longer than the limit of 65534 bytes",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request's headers are too large or too many (at most 100 headers, about 400 KiB)"
        }
        _ => return None,
    };
    let body = shape.body(message);
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        shape.content_type(),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Some(out)
}

impl<T: AsyncRead + Unpin> AsyncRead for Conn<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Conn<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replacing.is_none() {
            match replacement(buf, this.shape) {
                Some(r) => this.replacing = Some((r, 0, buf.len())),
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        // hyper hands the same head again until it is reported written.
        let (bytes, written, stands_for) = this.replacing.as_mut().expect("set above");
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let n = *stands_for;
        this.replacing = None;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    /// Vectored when the connection is: hyper then queues the body's `Bytes` as they are
    /// instead of copying them into a buffer of its own per connection (which kept up to
    /// ~400 KB per watch stream, each holding a copy of its listing). A head is one slice of
    /// its own in hyper's queue: a bare error head is recognised there.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first: &[u8] = bufs.iter().find(|b| !b.is_empty()).map_or(&[], |b| b);
        if self.replacing.is_some() || replacement(first, self.shape).is_some() {
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::{Shape, replacement};

    #[test]
    fn only_bare_error_heads_are_replaced() {
        let head =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        for (shape, field, ctype) in [
            (Shape::Error, "error", "application/json"),
            (
                Shape::DockerErr,
                "Err",
                "application/vnd.docker.plugins.v1.2+json",
            ),
        ] {
            let r = String::from_utf8(replacement(head, shape).unwrap()).unwrap();
            assert!(r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
            assert!(r.contains(&format!("\r\ncontent-type: {ctype}\r\n")), "{r}");
            let (_, body) = r.split_once("\r\n\r\n").unwrap();
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert!(v[field].as_str().unwrap().contains("headers"), "{v}");
            assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
            assert!(r.contains(&format!("content-length: {}\r\n", body.len())));
        }
        // An answer with a body, a success, a partial head: left alone.
        for other in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n",
            b"{\"error\":\"x\"}",
        ] {
            assert!(
                replacement(other, Shape::Error).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
