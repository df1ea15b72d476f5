//! A connection's reading without a socket: one request's head and body read from bytes in
//! memory by the very functions that read them from a client (`read_head`, `read_body`), the
//! bytes handed over in pieces of given sizes as a socket might deliver them. The fuzz targets
//! (`fuzz/`) drive this; nothing in the server does.

use std::io;
use std::time::{Duration, Instant};

use super::body::read_body;
use super::budget::{BodyBudget, Reservation};
use super::connection::{ReadFail, Wire, read_head};
use super::parse::HeadFail;
use super::{Incoming, Limits, Observer};

/// What a connection made of the start of its input.
#[derive(Debug)]
pub struct Replayed {
    /// The request as the handler would get it; or the status the head was refused with, `None`
    /// when the connection ended without an answer (the input ended inside the head).
    pub request: Result<Incoming, Option<u16>>,
    /// The connection would stay open for another request (if the body was read whole).
    pub keep_alive: bool,
    /// `100 Continue` was sent.
    pub continued: bool,
    /// Budget bytes the body held while it was in hand (given back before this returns).
    pub reserved: u64,
    /// Bytes of the input this request took, head and body: the next request starts there.
    pub consumed: usize,
}

/// Reads one request from `input` as a connection would, each read taking at most the next of
/// `pieces` bytes (cycling; an empty list or a 0 means "as much as asked for"). The body's bytes
/// are reserved in `budget` and given back before this returns.
pub fn replay(input: &[u8], pieces: &[usize], limits: &Limits, budget: &BodyBudget) -> Replayed {
    let mut wire = Memory {
        input,
        read: 0,
        pieces,
        next_piece: 0,
        pending: Vec::new(),
        limits,
        continued: false,
    };
    // Memory never waits: the deadlines are never reached.
    let deadline = Instant::now() + Duration::from_secs(3600);
    let head = match read_head(&mut wire, deadline) {
        Ok(head) => head,
        Err(fail) => {
            return Replayed {
                request: Err(match fail {
                    HeadFail::Answer(status) => Some(status),
                    HeadFail::Closed(_) => None,
                }),
                keep_alive: false,
                continued: false,
                reserved: 0,
                consumed: wire.read - wire.pending.len(),
            };
        }
    };
    let mut reservation = Reservation::new(budget, &Quiet);
    let before = budget.used();
    let body = read_body(&mut wire, &head, &mut reservation, deadline);
    let reserved = budget.used() - before;
    drop(reservation);
    Replayed {
        request: Ok(Incoming {
            method: head.method,
            url: head.url,
            version: head.version,
            headers: head.headers,
            body,
            remote_addr: None,
            received: Instant::now(),
        }),
        keep_alive: head.keep_alive,
        continued: wire.continued,
        reserved,
        consumed: wire.read - wire.pending.len(),
    }
}

struct Quiet;

impl Observer for Quiet {}

/// Bytes in memory standing in for a socket.
struct Memory<'a> {
    input: &'a [u8],
    /// Bytes of `input` handed over so far.
    read: usize,
    pieces: &'a [usize],
    next_piece: usize,
    pending: Vec<u8>,
    limits: &'a Limits,
    continued: bool,
}

impl Wire for Memory<'_> {
    fn limits(&self) -> &Limits {
        self.limits
    }

    fn pending(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    fn read_more(&mut self, _deadline: Instant, chunk: usize) -> Result<(), ReadFail> {
        let left = self.input.len() - self.read;
        if left == 0 {
            return Err(ReadFail::Eof);
        }
        let piece = match self.pieces.get(self.next_piece % self.pieces.len().max(1)) {
            Some(&piece) if piece > 0 => piece,
            _ => chunk,
        };
        self.next_piece += 1;
        let take = piece.min(chunk).min(left).max(1);
        self.pending
            .extend_from_slice(&self.input[self.read..self.read + take]);
        self.read += take;
        Ok(())
    }

    fn send_continue(&mut self) -> io::Result<()> {
        self.continued = true;
        Ok(())
    }

    fn stopping(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::Body;

    #[test]
    fn pipelined_requests_are_read_one_after_another_in_any_pieces() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\n\
            Transfer-Encoding: chunked\r\n\r\n2;x=y\r\nde\r\n1\r\nf\r\n0\r\nT: v\r\n\r\nGET /c";
        for pieces in [&[][..], &[1], &[3, 1, 7]] {
            let budget = BodyBudget::new(1 << 20);
            let limits = Limits::default();
            let first = replay(input, pieces, &limits, &budget);
            let request = first.request.unwrap();
            assert_eq!(
                (request.url.as_str(), &request.body),
                ("/a", &Body::Complete(b"abc".to_vec()))
            );
            assert_eq!(first.reserved, 3);
            let rest = &input[first.consumed..];
            let second = replay(rest, pieces, &limits, &budget);
            let request = second.request.unwrap();
            assert_eq!(
                (request.url.as_str(), &request.body),
                ("/b", &Body::Complete(b"def".to_vec()))
            );
            assert_eq!(&rest[second.consumed..], b"GET /c");
            // The input ends inside the third head: closed without an answer.
            let third = replay(&rest[second.consumed..], pieces, &limits, &budget);
            assert_eq!(third.request.unwrap_err(), None);
            assert_eq!(budget.used(), 0);
        }
    }

    /// The refusal of a request must not depend on how its bytes were cut into reads.
    /// (Fuzzing found a long head starting with a control byte refused 431 when it came in one
    /// read, 400 when in several.)
    #[test]
    fn a_refused_head_gets_one_status_however_it_arrives() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let input = format!("\x10POST / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(70));
        for pieces in [&[][..], &[1], &[12]] {
            let replayed = replay(input.as_bytes(), pieces, &limits, &BodyBudget::new(1024));
            assert_eq!(
                replayed.request.unwrap_err(),
                Some(400),
                "pieces {pieces:?}"
            );
        }
    }

    /// A line of a chunked body is too long or not by its own length alone, however its bytes
    /// and the bytes after it arrive. (Fuzzing found a trailer line over `max_head_bytes` refused
    /// when it came in pieces, taken when it came in one read with the line after it.)
    #[test]
    fn a_chunked_line_is_too_long_by_its_own_length_alone() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let body = |trailer: usize| {
            format!(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX: {}\r\n\r\n",
                "t".repeat(trailer - 3)
            )
        };
        for pieces in [&[][..], &[1], &[7, 1], &[66]] {
            let read = |input: String| {
                replay(input.as_bytes(), pieces, &limits, &BodyBudget::new(1024))
                    .request
                    .unwrap()
                    .body
            };
            assert_eq!(read(body(64)), Body::Complete(b"a".to_vec()), "{pieces:?}");
            assert!(matches!(read(body(65)), Body::Malformed(_)), "{pieces:?}");
        }
    }
}
