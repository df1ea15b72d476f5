//! One connection's loop: wait for a request, read its head and body, call the handler, write the
//! answer, and again — each step within its own total deadline.

use std::io::{self, ErrorKind, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::accept::{BUSY, Shared, WAITING};
use super::body::read_body;
use super::budget::Reservation;
use super::parse::{Head, HeadFail, find_head_end, parse_head};
use super::write::{self, write_all_by, write_answer};
use super::{Arrival, Body, CloseReason, Incoming, Limits, Outgoing};

/// Why reading stopped short.
pub(super) enum ReadFail {
    Eof,
    TimedOut,
    TooLarge,
    Io,
}

/// Where a request's bytes come from: a client's socket (`Connection`), or bytes in memory
/// (`replay`, which the fuzz targets drive). Reading a head and a body is written once against
/// this, so what is fuzzed is what serves.
pub(super) trait Wire {
    fn limits(&self) -> &Limits;
    /// Bytes read but not used yet: the rest of a head, a body, pipelined requests.
    fn pending(&mut self) -> &mut Vec<u8>;
    /// Reads at least one more byte into `pending`, at most `chunk`, before `deadline`.
    fn read_more(&mut self, deadline: Instant, chunk: usize) -> Result<(), ReadFail>;
    /// Tells the client to go on and send the body it announced (`100 Continue`).
    fn send_continue(&mut self) -> io::Result<()>;
    /// The server is shutting down: an end of input is then its doing, not the client's.
    fn stopping(&self) -> bool;
}

pub(super) struct Connection<'a> {
    pub(super) stream: &'a TcpStream,
    state: &'a AtomicU8,
    pub(super) shared: &'a Shared,
    /// Bytes read but not used yet: the rest of a head, a body, pipelined requests.
    pub(super) pending: Vec<u8>,
    remote_addr: Option<SocketAddr>,
}

impl<'a> Connection<'a> {
    pub(super) fn new(
        stream: &'a TcpStream,
        state: &'a AtomicU8,
        shared: &'a Shared,
    ) -> Connection<'a> {
        Connection {
            stream,
            state,
            shared,
            pending: Vec::new(),
            remote_addr: stream.peer_addr().ok(),
        }
    }

    pub(super) fn limits(&self) -> &'a Limits {
        &self.shared.limits
    }

    /// Serves requests one after another until the connection ends; returns why it ended.
    pub(super) fn run(&mut self) -> CloseReason {
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
            let mut received = Instant::now();
            if self.pending.is_empty() {
                let mut deadline = received + self.limits().idle_timeout;
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
                received = Instant::now();
            }
            let head_started = if first { accepted } else { Instant::now() };
            first = false;
            let head_deadline = head_started + self.limits().header_timeout;
            let head = match read_head(self, head_deadline) {
                Ok(head) => head,
                Err(HeadFail::Closed(reason)) => return reason,
                Err(HeadFail::Answer(status)) => {
                    let answer = (self.shared.handler)(Arrival::Refused { status, received });
                    let _ = self.write(&answer, false, true, false);
                    self.shared.observer.answered(answer.body.len());
                    self.linger();
                    return CloseReason::Refused;
                }
            };
            self.state.store(BUSY, Ordering::SeqCst);
            let body_deadline = Instant::now() + self.limits().body_timeout;
            // Held until the answer is written: the body's bytes count against the budget for
            // as long as this request is in hand.
            let mut reservation = Reservation::new(&self.shared.budget, &*self.shared.observer);
            let body = read_body(self, &head, &mut reservation, body_deadline);
            let complete = matches!(body, Body::Complete(_));
            let body_timed_out = matches!(body, Body::TimedOut);
            let head_only = head.method == "HEAD";
            let incoming = Incoming {
                method: head.method,
                url: head.url,
                version: head.version,
                headers: head.headers,
                body,
                remote_addr: self.remote_addr,
                received,
            };
            let answer = (self.shared.handler)(Arrival::Request(incoming));
            let close = answer.close || !complete || !head.keep_alive || self.stopping();
            let announce_keep_alive = !close && head.version == (1, 0);
            let written = self.write(&answer, head_only, close, announce_keep_alive);
            self.shared.observer.answered(answer.body.len());
            drop(answer);
            drop(reservation);
            if let Err(reason) = written {
                return reason;
            }
            if close {
                if !complete || !self.pending.is_empty() {
                    self.linger();
                }
                return if body_timed_out {
                    CloseReason::BodyTimeout
                } else if !complete {
                    CloseReason::Refused
                } else if self.stopping() {
                    CloseReason::Shutdown
                } else {
                    CloseReason::Client
                };
            }
        }
    }

    fn write(
        &self,
        answer: &Outgoing,
        head_only: bool,
        close: bool,
        announce_keep_alive: bool,
    ) -> Result<(), CloseReason> {
        let deadline = Instant::now() + self.limits().write_timeout;
        let framing = write::Framing {
            head_only,
            close,
            announce_keep_alive,
        };
        write_answer(self.stream, answer, framing, deadline)
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
        // What a lingering read held is not kept while the connection ends.
        self.pending = Vec::new();
    }
}

impl Wire for Connection<'_> {
    fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

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

    fn send_continue(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + self.limits().write_timeout;
        write_all_by(self.stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }
}

/// Reads a request head from `wire` by `deadline` and parses it.
pub(super) fn read_head(wire: &mut impl Wire, deadline: Instant) -> Result<Head, HeadFail> {
    let max = wire.limits().max_head_bytes;
    let mut searched = 0;
    let end = loop {
        let pending = wire.pending();
        // A request starts with a method: binary or TLS bytes are refused at once. Checked
        // before the head's end is looked for, so the answer is the same however the bytes
        // arrived (found by fuzzing: a long head starting with a control byte was a 431 when it
        // came in one read, a 400 when in several).
        if let Some(&first) = pending.first() {
            let leading_blank = first == b'\r' || first == b'\n';
            if !first.is_ascii_alphabetic() && !leading_blank {
                return Err(HeadFail::Answer(400));
            }
        }
        // Clients may end lines with a bare LF; only CRLF CRLF or LF LF ends the head.
        if let Some(end) = find_head_end(pending, searched) {
            break end;
        }
        searched = pending.len().saturating_sub(3);
        if pending.len() > max {
            return Err(HeadFail::Answer(431));
        }
        match wire.read_more(deadline, 1024) {
            Ok(()) => {}
            Err(ReadFail::TimedOut) => {
                return Err(HeadFail::Closed(CloseReason::HeaderTimeout));
            }
            Err(ReadFail::Eof) if wire.stopping() => {
                return Err(HeadFail::Closed(CloseReason::Shutdown));
            }
            Err(ReadFail::Eof) => return Err(HeadFail::Closed(CloseReason::Client)),
            Err(_) if wire.stopping() => return Err(HeadFail::Closed(CloseReason::Shutdown)),
            Err(_) => return Err(HeadFail::Closed(CloseReason::Error)),
        }
    };
    if end > max {
        return Err(HeadFail::Answer(431));
    }
    let raw: Vec<u8> = wire.pending().drain(..end).collect();
    parse_head(&raw, wire.limits().max_headers)
}
