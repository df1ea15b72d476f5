//! hookbox fork: a server in which each connection's own thread does all of its socket I/O.
//!
//! Upstream tiny_http hands a request to the application while its body is still on the socket
//! and lets the application write the answer to the socket itself: an application thread then
//! waits on the client (a slow body, a client that never reads), and pipelined requests are
//! queued while the first one's answer waits to be written. Here the connection thread reads the
//! whole head within a total deadline, the whole body within another, calls the handler with
//! both in memory, writes the answer the handler returns within a third deadline, and only then
//! reads the next request. So the handler never touches a socket, one connection has at most one
//! request in the handler at a time, and pipelined requests are answered in order.
//!
//! Every deadline is total: each read or write is armed with what is left of it, so a byte that
//! arrives does not restart the clock.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::TaskPool;
use crate::StatusCode;

/// The bounds every connection is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// How long an open connection may wait for the first byte of its next request.
    pub idle_timeout: Duration,
    /// From its first byte, the whole request head must arrive within this.
    pub header_timeout: Duration,
    /// From the end of the head, the whole body must arrive within this (else 408 and close).
    pub body_timeout: Duration,
    /// The whole answer must be taken by the client within this (else the connection closes).
    pub write_timeout: Duration,
    /// Largest body read into memory; a larger one is not read (`Body::TooLarge`).
    pub max_body: usize,
    /// Largest request head (request line and headers) in bytes, else 431.
    pub max_head_bytes: usize,
    /// Most header lines in one request, else 431.
    pub max_headers: usize,
    /// Open connections at most; beyond this a new connection gets a canned 503 and is closed.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            idle_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_body: 64 * 1024,
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 1024,
        }
    }
}

/// A request with its head and body in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub method: String,
    /// The request target as sent (path and query).
    pub url: String,
    /// (major, minor): 1.0 or 1.1.
    pub version: (u8, u8),
    /// Header names and values as sent, in order.
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub remote_addr: Option<SocketAddr>,
}

impl Incoming {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What became of a request's body. Anything but `Complete` closes the connection after the
/// answer: the rest of the bytes on it cannot be trusted to start a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The whole body (empty when none was announced).
    Complete(Vec<u8>),
    /// More than `max_body` bytes were announced or sent; the rest was not read.
    TooLarge,
    /// The whole body did not arrive within `body_timeout`.
    TimedOut,
    /// The body's end cannot be known: a `Content-Length` that is not all digits, several that
    /// disagree, one beside `Transfer-Encoding`, broken chunked encoding, or the peer closed early.
    Malformed(&'static str),
    /// A `Transfer-Encoding` other than `chunked`.
    UnsupportedEncoding,
}

/// An answer to write: the connection thread adds `Content-Length`, `Date` and, when the
/// connection is closing, `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this answer.
    pub close: bool,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client closed it, or asked to (`Connection: close`, HTTP/1.0).
    Client,
    /// No request started within `idle_timeout`.
    Idle,
    /// A request head did not complete within `header_timeout`.
    HeaderTimeout,
    /// A body did not complete within `body_timeout` (answered 408).
    BodyTimeout,
    /// The client did not take an answer within `write_timeout`.
    WriteTimeout,
    /// A malformed or oversized head, or a body whose end is unknown or that was not read.
    Refused,
    /// The server is shutting down.
    Shutdown,
    /// A socket error.
    Error,
}

impl CloseReason {
    /// A stable label, e.g. for a metric.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::WriteTimeout => "write_timeout",
            CloseReason::Refused => "refused",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Error => "error",
        }
    }
}

/// What the server tells the application about its connections (for metrics and logs).
pub trait Observer: Send + Sync {
    /// A connection was accepted and given a thread.
    fn opened(&self) {}
    /// A connection was refused: `max_connections` were open.
    fn refused(&self) {}
    /// A connection ended.
    fn closed(&self, _reason: CloseReason) {}
    /// `accept` failed; the loop backs off and goes on.
    fn accept_failed(&self, _error: &io::Error) {}
    /// The handler's answer with a body of `body_bytes` was written, or failed to be: the
    /// connection no longer holds it.
    fn answered(&self, _body_bytes: usize) {}
    /// The accept loop ended unexpectedly (a panic): no more connections will be accepted.
    fn stopped_accepting(&self, _why: &str) {}
}

/// The application's side: turns a request into its answer. Runs on the connection's thread, so
/// it may block (for example waiting for a worker pool) without holding anyone else up.
pub type Handler = Arc<dyn Fn(Incoming) -> Outgoing + Send + Sync>;

/// Where a connection is, for shutdown: waiting connections are cut, busy ones finish.
const WAITING: u8 = 0;
const BUSY: u8 = 1;

/// An open connection's socket and where it is (`WAITING` or `BUSY`).
type OpenConnection = (Arc<TcpStream>, Arc<AtomicU8>);

struct Shared {
    limits: Limits,
    handler: Handler,
    observer: Arc<dyn Observer>,
    stopping: AtomicBool,
    next_id: AtomicU64,
    /// Every open connection's socket (shared with its thread: one descriptor) and state.
    open: Mutex<HashMap<u64, OpenConnection>>,
    /// Signalled whenever a connection ends.
    ended: Condvar,
}

/// A running server. `stop` ends accepting; dropping it stops too.
pub struct Serving {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_thread: Option<thread::JoinHandle<()>>,
}

/// Starts accepting on `listener`; each connection gets a thread of its own.
pub fn serve(
    listener: TcpListener,
    limits: Limits,
    handler: Handler,
    observer: Arc<dyn Observer>,
) -> io::Result<Serving> {
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        limits,
        handler,
        observer,
        stopping: AtomicBool::new(false),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
        ended: Condvar::new(),
    });
    let accept_thread = {
        let shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("accept".to_owned())
            .spawn(move || {
                let accepting = std::panic::AssertUnwindSafe(|| accept_loop(&listener, &shared));
                if std::panic::catch_unwind(accepting).is_err() {
                    shared
                        .observer
                        .stopped_accepting("the accept loop panicked");
                }
            })?
    };
    Ok(Serving {
        shared,
        addr,
        accept_thread: Some(accept_thread),
    })
}

impl Serving {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.lock().unwrap().len()
    }

    /// Stops accepting (the listening socket is closed before this returns) and cuts every
    /// connection that is waiting for a request; a connection busy with one finishes it, answers
    /// with `Connection: close`, and ends.
    pub fn stop(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wakes the accept thread from `accept`; it sees `stopping` and drops the listener.
        let _ = TcpStream::connect_timeout(&wake_addr(self.addr), Duration::from_secs(1));
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        for (stream, state) in self.shared.open.lock().unwrap().values() {
            if state.load(Ordering::SeqCst) == WAITING {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Waits until every connection has ended, or `timeout` passed; true when all ended.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut open = self.shared.open.lock().unwrap();
        while !open.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            open = self.shared.ended.wait_timeout(open, left).unwrap().0;
        }
        true
    }

    /// Cuts every connection still open, busy or not (the end of a shutdown grace period).
    pub fn cut_all(&self) {
        for (stream, _) in self.shared.open.lock().unwrap().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The address that reaches our own listener (an unspecified bind address is not connectable).
fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let mut target = addr;
    if target.ip().is_unspecified() {
        target.set_ip(match target {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    target
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let pool = TaskPool::new();
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                match error.kind() {
                    ErrorKind::WouldBlock
                    | ErrorKind::TimedOut
                    | ErrorKind::Interrupted
                    | ErrorKind::ConnectionAborted => {}
                    // Out of descriptors, say: they free up as connections close. Back off.
                    _ => {
                        shared.observer.accept_failed(&error);
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                continue;
            }
        };
        let stream = Arc::new(stream);
        let state = Arc::new(AtomicU8::new(WAITING));
        let id = {
            let mut open = shared.open.lock().unwrap();
            if open.len() >= shared.limits.max_connections {
                drop(open);
                refuse(&stream);
                shared.observer.refused();
                continue;
            }
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            open.insert(id, (Arc::clone(&stream), Arc::clone(&state)));
            id
        };
        shared.observer.opened();
        let shared = Arc::clone(shared);
        let mut task = Some((stream, state));
        pool.spawn(Box::new(move || {
            if let Some((stream, state)) = task.take() {
                let reason = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Connection::new(&stream, &state, &shared).run()
                }))
                .unwrap_or(CloseReason::Error);
                let _ = stream.shutdown(Shutdown::Both);
                let mut open = shared.open.lock().unwrap();
                open.remove(&id);
                drop(open);
                shared.ended.notify_all();
                shared.observer.closed(reason);
            }
        }));
    }
}

/// Over the connection limit: a canned answer, written without waiting, then close. No thread is
/// started for it, so a flood of connections costs only the accept loop's time.
fn refuse(stream: &TcpStream) {
    const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
        Content-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\n\
        Content-Length: 51\r\n\r\n{\"detail\":\"too many open connections, retry later\"}";
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write(REFUSAL);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Bodies up to this size are copied behind their head and written with it.
const COPY_BODY_BELOW: usize = 16 * 1024;

/// Why reading stopped short.
enum ReadFail {
    Eof,
    TimedOut,
    TooLarge,
    Io,
}

struct Connection<'a> {
    stream: &'a TcpStream,
    state: &'a AtomicU8,
    shared: &'a Shared,
    /// Bytes read but not used yet: the rest of a head, a body, pipelined requests.
    pending: Vec<u8>,
    remote_addr: Option<SocketAddr>,
}

/// A parsed request head and what it says about the body and the connection.
struct Head {
    method: String,
    url: String,
    version: (u8, u8),
    headers: Vec<(String, String)>,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
}

enum Framing {
    Length(u64),
    Chunked,
    Invalid(Body),
}

impl<'a> Connection<'a> {
    fn new(stream: &'a TcpStream, state: &'a AtomicU8, shared: &'a Shared) -> Connection<'a> {
        Connection {
            stream,
            state,
            shared,
            pending: Vec::new(),
            remote_addr: stream.peer_addr().ok(),
        }
    }

    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    /// Serves requests one after another until the connection ends; returns why it ended.
    fn run(&mut self) -> CloseReason {
        // A new connection must deliver its first head within `header_timeout` of being
        // accepted: a client that connects and then dribbles is cut as soon as one that
        // dribbles from its first byte. Later heads are timed from their first byte, since the
        // wait between requests is the idle timeout's.
        let accepted = Instant::now();
        let mut first = true;
        loop {
            self.state.store(WAITING, Ordering::SeqCst);
            if self.stopping() {
                return CloseReason::Shutdown;
            }
            if self.pending.is_empty() {
                let mut deadline = Instant::now() + self.limits().idle_timeout;
                if first {
                    deadline = deadline.min(accepted + self.limits().header_timeout);
                }
                match self.read_more(deadline, 1024) {
                    Ok(()) => {}
                    // `stop` shuts a waiting connection's socket: its read ends as if at EOF.
                    Err(ReadFail::Eof) if self.stopping() => return CloseReason::Shutdown,
                    Err(ReadFail::Eof) => return CloseReason::Client,
                    Err(ReadFail::TimedOut) => return CloseReason::Idle,
                    Err(_) if self.stopping() => return CloseReason::Shutdown,
                    Err(_) => return CloseReason::Error,
                }
            }
            let head_started = if first { accepted } else { Instant::now() };
            first = false;
            let head_deadline = head_started + self.limits().header_timeout;
            let head = match self.read_head(head_deadline) {
                Ok(head) => head,
                Err(HeadFail::Closed(reason)) => return reason,
                Err(HeadFail::Answer(status)) => {
                    let answer = plain(status);
                    let _ = self.write_answer(&answer, false, true, false);
                    self.linger();
                    return CloseReason::Refused;
                }
            };
            self.state.store(BUSY, Ordering::SeqCst);
            let body_deadline = Instant::now() + self.limits().body_timeout;
            let body = self.read_body(&head, body_deadline);
            let complete = matches!(body, Body::Complete(_));
            let head_only = head.method == "HEAD";
            let incoming = Incoming {
                method: head.method,
                url: head.url,
                version: head.version,
                headers: head.headers,
                body,
                remote_addr: self.remote_addr,
            };
            let body_state = incoming.body.clone_state();
            let answer = (self.shared.handler)(incoming);
            let close = answer.close || !complete || !head.keep_alive || self.stopping();
            let announce_keep_alive = !close && head.version == (1, 0);
            let written = self.write_answer(&answer, head_only, close, announce_keep_alive);
            self.shared.observer.answered(answer.body.len());
            drop(answer);
            if let Err(reason) = written {
                return reason;
            }
            if close {
                if !complete || !self.pending.is_empty() {
                    self.linger();
                }
                return match body_state {
                    BodyState::TimedOut => CloseReason::BodyTimeout,
                    BodyState::Unread => CloseReason::Refused,
                    BodyState::Complete if self.stopping() => CloseReason::Shutdown,
                    BodyState::Complete => CloseReason::Client,
                };
            }
        }
    }

    /// Reads at least one more byte into `pending`, at most `chunk`, before `deadline`.
    fn read_more(&mut self, deadline: Instant, chunk: usize) -> Result<(), ReadFail> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadFail::TimedOut);
        }
        if self.stream.set_read_timeout(Some(left)).is_err() {
            return Err(ReadFail::Io);
        }
        let start = self.pending.len();
        self.pending.resize(start + chunk, 0);
        let result = loop {
            match (&*self.stream).read(&mut self.pending[start..]) {
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => {
                self.pending.truncate(start);
                Err(ReadFail::Eof)
            }
            Ok(read) => {
                self.pending.truncate(start + read);
                Ok(())
            }
            Err(error) => {
                self.pending.truncate(start);
                match error.kind() {
                    ErrorKind::WouldBlock | ErrorKind::TimedOut => Err(ReadFail::TimedOut),
                    _ => Err(ReadFail::Io),
                }
            }
        }
    }

    fn read_head(&mut self, deadline: Instant) -> Result<Head, HeadFail> {
        let max = self.limits().max_head_bytes;
        let mut searched = 0;
        let end = loop {
            // Clients may end lines with a bare LF; only CRLF CRLF or LF LF ends the head.
            if let Some(end) = find_head_end(&self.pending, searched) {
                break end;
            }
            // A request starts with a method: binary or TLS bytes are refused at once.
            if !self.pending.is_empty() && !self.pending[0].is_ascii_alphabetic() {
                let leading_blank = self.pending[0] == b'\r' || self.pending[0] == b'\n';
                if !leading_blank {
                    return Err(HeadFail::Answer(400));
                }
            }
            searched = self.pending.len().saturating_sub(3);
            if self.pending.len() > max {
                return Err(HeadFail::Answer(431));
            }
            match self.read_more(deadline, 1024) {
                Ok(()) => {}
                Err(ReadFail::TimedOut) => {
                    return Err(HeadFail::Closed(CloseReason::HeaderTimeout))
                }
                Err(ReadFail::Eof) if self.stopping() => {
                    return Err(HeadFail::Closed(CloseReason::Shutdown))
                }
                Err(ReadFail::Eof) => return Err(HeadFail::Closed(CloseReason::Client)),
                Err(_) if self.stopping() => return Err(HeadFail::Closed(CloseReason::Shutdown)),
                Err(_) => return Err(HeadFail::Closed(CloseReason::Error)),
            }
        };
        if end > max {
            return Err(HeadFail::Answer(431));
        }
        let raw: Vec<u8> = self.pending.drain(..end).collect();
        parse_head(&raw, self.limits().max_headers)
    }

    fn read_body(&mut self, head: &Head, deadline: Instant) -> Body {
        let max = self.limits().max_body;
        match head.framing {
            Framing::Invalid(ref body) => body.clone(),
            Framing::Length(length) if length > max as u64 => Body::TooLarge,
            Framing::Length(0) => Body::Complete(Vec::new()),
            Framing::Length(length) => {
                if head.expect_continue && self.send_continue().is_err() {
                    return Body::Malformed("connection failed");
                }
                match self.take_exact(length as usize, deadline) {
                    Ok(body) => Body::Complete(body),
                    Err(fail) => body_failure(fail),
                }
            }
            Framing::Chunked => {
                if head.expect_continue && self.send_continue().is_err() {
                    return Body::Malformed("connection failed");
                }
                match self.take_chunked(max, deadline) {
                    Ok(body) => Body::Complete(body),
                    Err(fail) => body_failure(fail),
                }
            }
        }
    }

    fn send_continue(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.limits().write_timeout;
        write_all_by(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
    }

    /// Takes exactly `length` bytes from `pending` and the socket.
    fn take_exact(&mut self, length: usize, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
        while self.pending.len() < length {
            let want = (length - self.pending.len()).clamp(1, 16 * 1024);
            self.read_more(deadline, want)?;
        }
        let rest = self.pending.split_off(length);
        Ok(std::mem::replace(&mut self.pending, rest))
    }

    /// Takes one line (without its CRLF) of at most `max` bytes.
    fn take_line(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
        let mut searched = 0;
        loop {
            if let Some(at) = self.pending[searched..].iter().position(|&b| b == b'\n') {
                let at = searched + at;
                let mut line: Vec<u8> = self.pending.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.pending.len() > max {
                return Err(ReadFail::TooLarge);
            }
            searched = self.pending.len();
            self.read_more(deadline, 512)?;
        }
    }

    /// Decodes a chunked body of at most `max` bytes (chunk extensions and trailers ignored).
    fn take_chunked(&mut self, max: usize, deadline: Instant) -> Result<Vec<u8>, ChunkFail> {
        // A line longer than its bound is broken framing, not a large body.
        let framing = |fail: ReadFail| match fail {
            ReadFail::TooLarge => ChunkFail::Malformed,
            other => ChunkFail::Read(other),
        };
        let mut body = Vec::new();
        loop {
            let line = self.take_line(1024, deadline).map_err(framing)?;
            let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
            let size = std::str::from_utf8(size)
                .ok()
                .map(str::trim)
                .filter(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                .ok_or(ChunkFail::Malformed)?;
            if size == 0 {
                // Trailers, up to the empty line.
                for _ in 0..=self.limits().max_headers {
                    if self
                        .take_line(self.limits().max_head_bytes, deadline)
                        .map_err(framing)?
                        .is_empty()
                    {
                        return Ok(body);
                    }
                }
                return Err(ChunkFail::Malformed);
            }
            // Saturating: a size near 2^64 must not wrap the total back under `max`.
            if (body.len() as u64).saturating_add(size) > max as u64 {
                return Err(ChunkFail::Read(ReadFail::TooLarge));
            }
            body.extend(
                self.take_exact(size as usize, deadline)
                    .map_err(ChunkFail::Read)?,
            );
            if !self.take_line(2, deadline).map_err(framing)?.is_empty() {
                return Err(ChunkFail::Malformed);
            }
        }
    }

    /// Writes `answer` within `write_timeout`. A HEAD answer keeps its `Content-Length` but no body.
    fn write_answer(
        &mut self,
        answer: &Outgoing,
        head_only: bool,
        close: bool,
        announce_keep_alive: bool,
    ) -> Result<(), CloseReason> {
        let mut bytes = Vec::with_capacity(256 + answer.body.len().min(COPY_BODY_BELOW));
        let reason = StatusCode(answer.status).default_reason_phrase();
        let _ = write!(bytes, "HTTP/1.1 {} {}\r\n", answer.status, reason);
        let _ = write!(
            bytes,
            "Date: {}\r\n",
            httpdate::fmt_http_date(std::time::SystemTime::now())
        );
        for (name, value) in &answer.headers {
            let safe = |text: &str| !text.bytes().any(|b| b == b'\r' || b == b'\n');
            let framing = name.eq_ignore_ascii_case("content-length")
                || name.eq_ignore_ascii_case("connection")
                || name.eq_ignore_ascii_case("transfer-encoding");
            if safe(name) && safe(value) && !framing {
                let _ = write!(bytes, "{name}: {value}\r\n");
            }
        }
        if close {
            bytes.extend_from_slice(b"Connection: close\r\n");
        } else if announce_keep_alive {
            // An HTTP/1.0 client closes unless told the connection stays open.
            bytes.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        let _ = write!(bytes, "Content-Length: {}\r\n\r\n", answer.body.len());
        let body: &[u8] = if head_only { &[] } else { &answer.body };
        // A small body goes out with its head in one write (one segment); a large one is written
        // from where it is, rather than copied, since a client that reads slowly keeps it here.
        let rest = if body.len() <= COPY_BODY_BELOW {
            bytes.extend_from_slice(body);
            &[][..]
        } else {
            body
        };
        let deadline = Instant::now() + self.limits().write_timeout;
        write_all_by(self.stream, &bytes, deadline)
            .and_then(|()| write_all_by(self.stream, rest, deadline))
            .map_err(|error| match error.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => CloseReason::WriteTimeout,
                _ => CloseReason::Error,
            })
    }

    /// Closes gracefully when the peer may still be sending (an unread body, pipelined requests):
    /// closing a socket with unread input makes the kernel send a reset, which can destroy the
    /// answer before the client reads it. So: stop writing, and read what still comes for a moment.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut discarded = 0;
        self.pending.clear();
        while discarded < 256 * 1024 {
            match self.read_more(deadline, 8192) {
                Ok(()) => {
                    discarded += self.pending.len();
                    self.pending.clear();
                }
                Err(_) => break,
            }
        }
    }
}

enum HeadFail {
    /// The connection ends without an answer.
    Closed(CloseReason),
    /// Answer with this status (a bare error), then close.
    Answer(u16),
}

enum ChunkFail {
    Read(ReadFail),
    Malformed,
}

impl From<ReadFail> for ChunkFail {
    fn from(fail: ReadFail) -> ChunkFail {
        ChunkFail::Read(fail)
    }
}

/// What a request's body came to, for the reason its connection closes.
enum BodyState {
    Complete,
    TimedOut,
    Unread,
}

impl Body {
    fn clone_state(&self) -> BodyState {
        match self {
            Body::Complete(_) => BodyState::Complete,
            Body::TimedOut => BodyState::TimedOut,
            _ => BodyState::Unread,
        }
    }
}

fn body_failure(fail: impl Into<ChunkFail>) -> Body {
    match fail.into() {
        ChunkFail::Read(ReadFail::TimedOut) => Body::TimedOut,
        ChunkFail::Read(ReadFail::TooLarge) => Body::TooLarge,
        ChunkFail::Read(ReadFail::Eof) => Body::Malformed("the body ended early"),
        ChunkFail::Read(ReadFail::Io) => Body::Malformed("connection failed"),
        ChunkFail::Malformed => Body::Malformed("malformed chunked encoding"),
    }
}

/// Where the head ends (just past its blank line), searching from `from`.
fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            if bytes.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if bytes.get(i + 1) == Some(&b'\r') && bytes.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// Parses a request head (request line, headers, blank line) and decides the body's framing.
fn parse_head(raw: &[u8], max_headers: usize) -> Result<Head, HeadFail> {
    let text = std::str::from_utf8(raw).map_err(|_| HeadFail::Answer(400))?;
    let mut lines = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        // RFC 9112 §2.2: empty lines before the request line are ignored.
        .skip_while(|line| line.is_empty());
    let request_line = lines.next().ok_or(HeadFail::Answer(400))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(url), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadFail::Answer(400));
    };
    if method.is_empty() || !method.bytes().all(is_token) || url.is_empty() {
        return Err(HeadFail::Answer(400));
    }
    let version = match version {
        "HTTP/1.1" => (1, 1),
        "HTTP/1.0" => (1, 0),
        v if v.starts_with("HTTP/") && v.len() > 5 && v.as_bytes()[5] > b'1' => {
            return Err(HeadFail::Answer(505));
        }
        _ => return Err(HeadFail::Answer(400)),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if headers.len() >= max_headers {
            return Err(HeadFail::Answer(431));
        }
        // Obsolete line folding and names with spaces are refused (RFC 9112 §5.1, §5.2).
        let (name, value) = line.split_once(':').ok_or(HeadFail::Answer(400))?;
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(HeadFail::Answer(400));
        }
        headers.push((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()));
    }
    let all = |name: &'static str| values(&headers, name);
    let connection: Vec<String> = all("connection")
        .flat_map(|value| value.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let has = |token: &str| connection.iter().any(|t| t == token);
    let keep_alive = match version {
        (1, 0) => has("keep-alive") && !has("close"),
        _ => !has("close") && !has("upgrade"),
    };
    let expect: Vec<&str> = all("expect").collect();
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored (such a
    // client would take the `100 Continue` for the final answer).
    let expect_continue = version == (1, 1)
        && expect
            .iter()
            .any(|v| v.eq_ignore_ascii_case("100-continue"));
    if expect
        .iter()
        .any(|v| !v.eq_ignore_ascii_case("100-continue"))
    {
        return Err(HeadFail::Answer(417));
    }
    let framing = framing(
        all("content-length").collect(),
        all("transfer-encoding").collect(),
    );
    Ok(Head {
        method: method.to_owned(),
        url: url.to_owned(),
        version,
        headers,
        framing,
        keep_alive,
        expect_continue,
    })
}

/// RFC 9112 §6: `Transfer-Encoding` must be exactly `chunked` and never beside a
/// `Content-Length`; a `Content-Length` is digits only, and several must agree. Anything else
/// leaves the body's end unknown: the request is refused and the connection closed, so no
/// request can hide inside another (request smuggling behind a proxy).
fn framing(lengths: Vec<&str>, encodings: Vec<&str>) -> Framing {
    if !encodings.is_empty() {
        if !lengths.is_empty() {
            return Framing::Invalid(Body::Malformed(
                "Content-Length and Transfer-Encoding together",
            ));
        }
        let chunked = encodings.len() == 1 && encodings[0].eq_ignore_ascii_case("chunked");
        return if chunked {
            Framing::Chunked
        } else {
            Framing::Invalid(Body::UnsupportedEncoding)
        };
    }
    let Some(first) = lengths.first() else {
        return Framing::Length(0);
    };
    let digits = |value: &&str| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    if !lengths.iter().all(digits) || lengths.iter().any(|value| value != first) {
        return Framing::Invalid(Body::Malformed("invalid Content-Length"));
    }
    match first.parse::<u64>() {
        Ok(length) => Framing::Length(length),
        // More digits than fit in 64 bits: far over any limit.
        Err(_) => Framing::Invalid(Body::TooLarge),
    }
}

/// Every value of the headers named `name`.
fn values<'h>(
    headers: &'h [(String, String)],
    name: &'static str,
) -> impl Iterator<Item = &'h str> + 'h {
    headers
        .iter()
        .filter(move |(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// RFC 9110 §5.6.2 token characters.
fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A bare answer for a request that never reached the handler.
fn plain(status: u16) -> Outgoing {
    let reason = StatusCode(status).default_reason_phrase();
    Outgoing {
        status,
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: format!("{{\"detail\":\"{reason}\"}}").into_bytes(),
        close: true,
    }
}

/// `write_all`, each write armed with what is left of `deadline`.
fn write_all_by(stream: &TcpStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match (&*stream).write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Head, u16> {
        parse_head(raw.as_bytes(), 100).map_err(|fail| match fail {
            HeadFail::Answer(status) => status,
            HeadFail::Closed(_) => 0,
        })
    }

    #[test]
    fn content_length_is_digits_only_and_must_agree() {
        for bad in ["+5", "-1", "0x10", "5 5", "", "1e3"] {
            assert!(
                matches!(
                    framing(vec![bad], vec![]),
                    Framing::Invalid(Body::Malformed(_))
                ),
                "{:?}",
                bad
            );
        }
        assert!(matches!(
            framing(vec!["5", "5"], vec![]),
            Framing::Length(5)
        ));
        assert!(matches!(
            framing(vec!["5", "6"], vec![]),
            Framing::Invalid(_)
        ));
        assert!(matches!(
            framing(vec!["99999999999999999999999"], vec![]),
            Framing::Invalid(Body::TooLarge)
        ));
    }

    #[test]
    fn only_chunked_transfer_encoding_is_understood() {
        assert!(matches!(framing(vec![], vec!["chunked"]), Framing::Chunked));
        assert!(matches!(framing(vec![], vec!["Chunked"]), Framing::Chunked));
        for bad in [
            vec!["gzip"],
            vec!["gzip, chunked"],
            vec!["chunked", "chunked"],
        ] {
            assert!(matches!(
                framing(vec![], bad),
                Framing::Invalid(Body::UnsupportedEncoding)
            ));
        }
        assert!(matches!(
            framing(vec!["5"], vec!["chunked"]),
            Framing::Invalid(Body::Malformed(_))
        ));
    }

    #[test]
    fn heads_parse_and_bad_ones_get_their_status() {
        let parsed = head("GET /a?b=c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(
            (parsed.method.as_str(), parsed.url.as_str()),
            ("GET", "/a?b=c")
        );
        assert!(!parsed.keep_alive);
        assert!(head("GET / HTTP/1.0\r\n\r\n")
            .map(|h| !h.keep_alive)
            .unwrap());
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n").err(), Some(505));
        assert_eq!(head("GET /\r\n\r\n").err(), Some(400));
        assert_eq!(head("GET / HTTP/1.1\r\n folded\r\n\r\n").err(), Some(400));
        assert_eq!(
            head("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            head("GET / HTTP/1.1\r\nExpect: magic\r\n\r\n").err(),
            Some(417)
        );
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            head(&format!("GET / HTTP/1.1\r\n{many}\r\n")).err(),
            Some(431)
        );
    }

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }
}
