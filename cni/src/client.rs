//! A tiny synchronous HTTP/1.1 client over a unix socket: one POST per connection, bounded by a
//! deadline. Just enough for the shim ↔ agent protocol ([`crate::wire`]); std only.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The largest response accepted. A CNI result is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// An HTTP response: status and body (de-chunked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// What went wrong talking to the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing accepted the connection (no socket, nobody listening, no permission).
    #[error("connect: {0}")]
    Connect(#[source] io::Error),
    /// The deadline passed.
    #[error("timed out after {after:?} while {phase}")]
    Timeout {
        /// The whole budget.
        after: Duration,
        /// What the client was doing: "connecting", "sending the request", "waiting for the
        /// answer".
        phase: &'static str,
    },
    /// Writing the request failed (the agent closed the connection).
    #[error("send request: {0}")]
    Send(#[source] io::Error),
    /// Reading the response failed.
    #[error("read response: {0}")]
    Receive(#[source] io::Error),
    /// The response is not HTTP/1.x as this client understands it.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Sends `POST <path>` with a JSON `body` to the HTTP server on the unix socket `socket` and
/// reads the response. Connecting, sending and receiving together take at most `timeout`.
pub fn post_json(
    socket: &Path,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Response, ClientError> {
    let deadline = Instant::now() + timeout;
    let remaining = || {
        // A zero timeout means "block forever" to set_read_timeout; never pass one.
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let timed_out = |phase| ClientError::Timeout {
        after: timeout,
        phase,
    };
    let mut stream = connect(socket, timeout)?;

    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: contiv-cni/{}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    stream
        .set_write_timeout(Some(remaining()))
        .map_err(ClientError::Send)?;
    stream.write_all(&request).map_err(|e| {
        if is_timeout(&e) {
            timed_out("sending the request")
        } else {
            ClientError::Send(e)
        }
    })?;

    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err(timed_out("waiting for the answer"));
        }
        stream
            .set_read_timeout(Some(remaining()))
            .map_err(ClientError::Receive)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_timeout(&e) => return Err(timed_out("waiting for the answer")),
            Err(e) => return Err(ClientError::Receive(e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::Malformed(format!(
                "response larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        if let Some(response) = parse_response(&buf, n == 0)? {
            return Ok(response);
        }
    }
}

/// Connects within `timeout`. A unix-socket connect blocks when the listener's backlog is full
/// (an agent that stopped accepting), and std has no connect timeout, so the connect runs on a
/// helper thread. On timeout the thread is left blocked; the shim exits right after.
fn connect(socket: &Path, timeout: Duration) -> Result<UnixStream, ClientError> {
    let (tx, rx) = mpsc::channel();
    let path = socket.to_path_buf();
    std::thread::Builder::new()
        .name("connect".into())
        .spawn(move || {
            let _ = tx.send(UnixStream::connect(path));
        })
        .map_err(ClientError::Connect)?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result.map_err(ClientError::Connect),
        Err(_) => Err(ClientError::Timeout {
            after: timeout,
            phase: "connecting",
        }),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Parses a response from the bytes read so far. `Ok(None)` when more bytes are needed;
/// `eof` says the peer has closed, so nothing more will come. Handles `Content-Length`,
/// `Transfer-Encoding: chunked` and read-until-close bodies, and skips 1xx interim responses.
pub fn parse_response(mut buf: &[u8], eof: bool) -> Result<Option<Response>, ClientError> {
    // A loop, not a recursive call per interim response: the agent may send any number of them.
    loop {
        match parse_one(buf, eof)? {
            Parsed::Interim { rest } => buf = rest,
            Parsed::Final(response) => return Ok(response),
        }
    }
}

/// One response at the start of `buf`.
enum Parsed<'a> {
    /// A 1xx interim response; the real one follows in `rest`.
    Interim { rest: &'a [u8] },
    /// The final response, or `None` when more bytes are needed.
    Final(Option<Response>),
}

fn parse_one(buf: &[u8], eof: bool) -> Result<Parsed<'_>, ClientError> {
    let malformed = |m: &str| Err(ClientError::Malformed(m.to_string()));
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if eof {
            malformed(if buf.is_empty() {
                "connection closed without a response"
            } else {
                "connection closed in the response headers"
            })
        } else {
            Ok(Parsed::Final(None))
        };
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let rest = &buf[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (version, code) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if !version.starts_with("HTTP/1.") {
        return Err(ClientError::Malformed(format!(
            "bad status line {status_line:?}"
        )));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| ClientError::Malformed(format!("bad status line {status_line:?}")))?;
    if (100..200).contains(&status) {
        return Ok(Parsed::Interim { rest });
    }
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ClientError::Malformed(format!("bad header line {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length =
                Some(value.parse::<usize>().map_err(|_| {
                    ClientError::Malformed(format!("bad Content-Length {value:?}"))
                })?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .split(',')
                .any(|v| v.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    if status == 204 || status == 304 {
        return Ok(Parsed::Final(Some(Response {
            status,
            body: Vec::new(),
        })));
    }
    let body = if chunked {
        match decode_chunked(rest)? {
            Some(body) => body,
            None if eof => return malformed("connection closed in a chunked body"),
            None => return Ok(Parsed::Final(None)),
        }
    } else if let Some(len) = content_length {
        if rest.len() >= len {
            rest[..len].to_vec()
        } else if eof {
            return Err(ClientError::Malformed(format!(
                "connection closed after {} of {len} body bytes",
                rest.len()
            )));
        } else {
            return Ok(Parsed::Final(None));
        }
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(Parsed::Final(None));
    };
    Ok(Parsed::Final(Some(Response { status, body })))
}

/// Decodes a complete chunked body; `Ok(None)` when it is not complete yet.
fn decode_chunked(data: &[u8]) -> Result<Option<Vec<u8>>, ClientError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(line_len) = find(&data[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&data[pos..pos + line_len]);
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|&s| s <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| ClientError::Malformed(format!("bad chunk size {size_text:?}")))?;
        pos += line_len + 2;
        if size == 0 {
            // Trailer lines, then an empty line.
            loop {
                let Some(len) = find(&data[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += len + 2;
                if len == 0 {
                    return Ok(Some(body));
                }
            }
        }
        if data.len() < pos + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[pos..pos + size]);
        if &data[pos + size..pos + size + 2] != b"\r\n" {
            return Err(ClientError::Malformed("chunk not followed by CRLF".into()));
        }
        pos += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn complete(raw: &str) -> Response {
        parse_response(raw.as_bytes(), false).unwrap().unwrap()
    }

    #[test]
    fn parses_content_length_bodies() {
        let raw =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(
            complete(raw),
            Response {
                status: 200,
                body: b"{}".to_vec()
            }
        );
        // Not all of it yet.
        assert_eq!(
            parse_response(&raw.as_bytes()[..raw.len() - 1], false).unwrap(),
            None
        );
        assert!(matches!(
            parse_response(&raw.as_bytes()[..raw.len() - 1], true),
            Err(ClientError::Malformed(m)) if m == "connection closed after 1 of 2 body bytes"
        ));
        // Extra bytes after the body are ignored.
        assert_eq!(complete(&format!("{raw}junk")).body, b"{}");
    }

    #[test]
    fn parses_chunked_bodies() {
        let raw = "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
                   4\r\n{\"co\r\na;ext=1\r\nde\":7,\"m\":\r\n3\r\n\"\"}\r\n0\r\nX-Trailer: 1\r\n\r\n";
        let resp = complete(raw);
        assert_eq!(resp.status, 400);
        assert_eq!(resp.body, b"{\"code\":7,\"m\":\"\"}");
        for cut in [raw.len() - 1, raw.len() - 20, 60] {
            assert_eq!(
                parse_response(&raw.as_bytes()[..cut], false).unwrap(),
                None,
                "{cut}"
            );
        }
        let bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad.as_bytes(), false).is_err());
    }

    #[test]
    fn parses_close_delimited_and_empty_bodies() {
        let raw = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(parse_response(raw, false).unwrap(), None);
        assert_eq!(parse_response(raw, true).unwrap().unwrap().body, b"hello");
        assert_eq!(complete("HTTP/1.1 204 No Content\r\n\r\n").body, b"");
        assert_eq!(
            complete("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .status,
            200
        );
    }

    #[test]
    fn many_interim_responses_do_not_exhaust_the_stack() {
        // Found by fuzzing (docs/fuzzing.md): each 1xx response was parsed by a recursive call,
        // so a response made of interim responses, within the size limit, overflowed the stack.
        let interim = "HTTP/1.1 100 Continue\r\n\r\n";
        let last = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let mut raw = interim.repeat((MAX_RESPONSE_BYTES - last.len()) / interim.len());
        raw.push_str(last);
        assert!(raw.len() <= MAX_RESPONSE_BYTES);
        // The shim parses on its main thread: 8 MiB of stack, as on Linux by default.
        let parsed = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || parse_response(raw.as_bytes(), false).map(|r| r.map(|r| r.status)))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(parsed.unwrap(), Some(200));
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 abc OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response(raw.as_bytes(), true),
                    Err(ClientError::Malformed(_))
                ),
                "{raw:?}"
            );
        }
        assert!(matches!(
            parse_response(b"", true),
            Err(ClientError::Malformed(m)) if m == "connection closed without a response"
        ));
    }

    #[test]
    fn connect_errors_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = post_json(
            &dir.path().join("none.sock"),
            "/x",
            b"{}",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ClientError::Connect(e) if e.kind() == io::ErrorKind::NotFound),
            "{err:?}"
        );
    }

    #[test]
    fn times_out_when_the_server_does_not_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("slow.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_millis(600));
            drop(conn);
        });
        let started = Instant::now();
        let err = post_json(&path, "/x", b"{}", Duration::from_millis(200)).unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    phase: "waiting for the answer",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(500));
        server.join().unwrap();
    }

    #[test]
    fn round_trip_against_a_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&got, b"\r\n\r\n{\"a\":1}").is_none() {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            // Answer in two writes, and keep the connection open: the client must stop at
            // Content-Length, not wait for the close.
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            conn.write_all(b"llo").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            String::from_utf8(got).unwrap()
        });
        let started = Instant::now();
        let resp = post_json(&path, "/cni/v1/add", b"{\"a\":1}", Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() < Duration::from_millis(250));
        assert_eq!(resp.body, b"hello");
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /cni/v1/add HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nContent-Length: 7\r\n"), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }
}
