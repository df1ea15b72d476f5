//! The suite's one raw HTTP/1.1 client. Tests write exact bytes (unencoded `+`, odd framing,
//! hostile heads) and read exact answers, so it is a socket and a buffer, not a library client.
//!
//! One framing rule for every reader: a response ends after its head for `1xx`, `204` and `304`,
//! after the terminating chunk when `chunked`, else after `Content-Length` bytes (0 when absent;
//! hookbox always sends one); when the server closes after a whole head, at the close. Every wait is bounded by a deadline, so a server that hangs fails
//! the test instead of hanging the suite.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a client waits at most when a test names no deadline of its own.
pub const BOUND: Duration = Duration::from_secs(5);

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The answer says the server closes the connection after it.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"))
    }
}

/// What a client saw while waiting for the next response.
#[derive(Debug)]
pub enum Seen {
    /// A complete response.
    Answered(Resp),
    /// EOF or reset before a whole response head.
    Closed,
    /// Neither within the deadline: the connection is open and silent.
    Silent,
}

impl Seen {
    pub fn status(&self) -> Option<u16> {
        match self {
            Seen::Answered(resp) => Some(resp.status),
            _ => None,
        }
    }

    /// The response, if one came.
    pub fn answered(self) -> Option<Resp> {
        match self {
            Seen::Answered(resp) => Some(resp),
            _ => None,
        }
    }

    /// The response, or a panic naming `what` and what was seen instead.
    pub fn resp(self, what: &str) -> Resp {
        match self {
            Seen::Answered(resp) => resp,
            other => panic!("{what}: no answer ({other:?})"),
        }
    }
}

/// One client connection: bounded reads and writes, and the bytes received but not yet taken
/// as a response (pipelined answers stay for the next call).
pub struct Conn {
    pub stream: TcpStream,
    raw: Vec<u8>,
}

impl Conn {
    /// Connects within `BOUND`; panics if the server refuses.
    pub fn open(addr: SocketAddr) -> Conn {
        Conn::try_open(addr, BOUND).expect("connect")
    }

    /// Connects within `within`, reporting a refused connection instead of panicking.
    pub fn try_open(addr: SocketAddr, within: Duration) -> std::io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&addr, within)?;
        Ok(Conn::from_stream(stream))
    }

    pub fn from_stream(stream: TcpStream) -> Conn {
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream.set_write_timeout(Some(BOUND)).unwrap();
        Conn {
            stream,
            raw: Vec::new(),
        }
    }

    /// Writes all of `bytes`; false if the server closed first (it may refuse before reading
    /// everything, and what it answers still counts).
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next final response (interim `1xx` ones are skipped), waiting at most `within`.
    pub fn next(&mut self, within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            match self.next_any(deadline) {
                Seen::Answered(resp) if resp.status < 200 => continue,
                seen => return seen,
            }
        }
    }

    /// The next response, interim `1xx` included: `100 Continue` is the server saying it has
    /// started on the body, a handshake tests wait on instead of sleeping.
    pub fn next_interim(&mut self, within: Duration) -> Seen {
        self.next_any(Instant::now() + within)
    }

    /// Waits for `100 Continue`, panicking with what came instead.
    pub fn expect_continue(&mut self) {
        let seen = self.next_interim(BOUND);
        assert_eq!(seen.status(), Some(100), "expected 100 Continue: {seen:?}");
    }

    fn next_any(&mut self, deadline: Instant) -> Seen {
        loop {
            if let Some(resp) = take_response(&mut self.raw) {
                return Seen::Answered(resp);
            }
            match self.read_some(deadline) {
                Got::Data => {}
                // Closed after a whole head: the response ran to the close (a `HEAD` answer
                // carries the `Content-Length` of a body it does not send).
                Got::Closed | Got::Reset if self.raw.windows(4).any(|w| w == b"\r\n\r\n") => {
                    let resp = parse_response(&self.raw);
                    self.raw.clear();
                    return Seen::Answered(resp);
                }
                Got::Closed | Got::Reset => return Seen::Closed,
                Got::Silent => return Seen::Silent,
            }
        }
    }

    /// True if the server closes the connection (EOF or reset) within `within`; bytes that
    /// arrive meanwhile are kept (see `received`).
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.ending(within).ended()
    }

    /// Reads until the server ends the connection or `within` passes, telling an orderly close
    /// (EOF) from a reset; bytes that arrive meanwhile are kept (see `received`).
    pub fn ending(&mut self, within: Duration) -> Ending {
        let deadline = Instant::now() + within;
        loop {
            match self.read_some(deadline) {
                Got::Data => {}
                Got::Closed => return Ending::Closed,
                Got::Reset => return Ending::Reset,
                Got::Silent => return Ending::Open,
            }
        }
    }

    /// The head of the next response, and nothing after it: the answer to a `HEAD` request,
    /// whose `Content-Length` is that of a body it does not send (the framing rule cannot tell
    /// from the response alone).
    pub fn next_head(&mut self, within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            if let Some(split) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.raw.drain(..split + 4).collect();
                let mut resp = parse_response(&head);
                resp.body.clear();
                return Seen::Answered(resp);
            }
            match self.read_some(deadline) {
                Got::Data => {}
                Got::Closed | Got::Reset => return Seen::Closed,
                Got::Silent => return Seen::Silent,
            }
        }
    }

    /// Everything received and not yet taken as a response, as text.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }

    fn read_some(&mut self, deadline: Instant) -> Got {
        let mut buf = [0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Silent;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut buf) {
                Ok(0) => return Got::Closed,
                Ok(n) => {
                    self.raw.extend_from_slice(&buf[..n]);
                    return Got::Data;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error)
                    if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                // A reset is the server closing with our bytes unread.
                Err(_) => return Got::Reset,
            }
        }
    }
}

/// What one bounded read brought.
enum Got {
    Data,
    Closed,
    Reset,
    Silent,
}

/// How a connection read to its end ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The server closed it (EOF).
    Closed,
    /// The server reset it (it closed with our bytes unread).
    Reset,
    /// Still open when the wait ran out.
    Open,
}

impl Ending {
    /// The server ended the connection (closed or reset) rather than leaving it open.
    pub fn ended(&self) -> bool {
        *self != Ending::Open
    }
}

/// One HTTP/1.1 request with `Content-Length` and `Connection: close`, as bytes.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One request (`request_bytes`) on a fresh connection to `addr`, answered within `BOUND`: for
/// servers that are not a `TestServer` (the built binary).
pub fn send_to(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut conn = Conn::open(addr);
    assert!(
        conn.send(&request_bytes(addr, method, target, headers, body)),
        "{method} {target}: the server closed before taking the request"
    );
    conn.next(BOUND).resp(&format!("{method} {target}"))
}

/// One keep-alive HTTP/1.1 request (no `Connection: close`) as bytes; `Content-Length` is added
/// for a POST or a body.
pub fn keep_alive_request(
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: hookbox\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" || !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Reads one response, bounded by 30 s.
pub fn read_response(stream: &mut TcpStream) -> Resp {
    read_one(stream, Duration::from_secs(30))
}

/// Reads one response by its framing, without waiting for the server to close the connection:
/// for requests whose body the server must answer without reading (or finishing).
pub fn read_response_by_length(stream: &mut TcpStream) -> Resp {
    read_one(stream, Duration::from_secs(30))
}

fn read_one(stream: &mut TcpStream, within: Duration) -> Resp {
    let mut conn = Conn::from_stream(stream.try_clone().unwrap());
    conn.next(within).resp("reading one response")
}

/// Removes and returns the first complete response in `raw`, if it is all there.
pub fn take_response(raw: &mut Vec<u8>) -> Option<Resp> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let body_start = split + 4;
    let head = parse_response(&raw[..body_start]);
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    let end = if head.status < 200 || head.status == 204 || head.status == 304 {
        body_start
    } else if chunked {
        body_start + chunked_length(&raw[body_start..])?
    } else {
        body_start
            + head
                .header("content-length")
                .map_or(0, |value| value.parse::<usize>().unwrap())
    };
    if raw.len() < end {
        return None;
    }
    let resp = parse_response(&raw[..end]);
    raw.drain(..end);
    Some(resp)
}

/// The length of a whole chunked body at the start of `data` (through its last chunk and empty
/// trailer), or `None` if it is not all there yet.
fn chunked_length(data: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let line_end = at + data[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[at..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size {size_text:?}"));
        at = line_end + 2;
        if size == 0 {
            return (data.len() >= at + 2).then_some(at + 2);
        }
        at += size + 2;
        if data.len() < at {
            return None;
        }
    }
}

/// Parses a head and whatever follows it as the body (de-chunked when `chunked`).
pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}

/// The value of one sample line of a Prometheus exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().unwrap())
    })
}
