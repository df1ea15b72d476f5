//! Reading a request body into memory: exactly `Content-Length` bytes, or chunked encoding
//! decoded, never more than `max_body`, each byte reserved in the body budget before it is read.

use std::io;
use std::time::Instant;

use super::Body;
use super::budget::Reservation;
use super::connection::{Connection, ReadFail};
use super::parse::{Framing, Head, chunk_size};
use super::write::write_all_by;

enum ChunkFail {
    Read(ReadFail),
    Malformed,
    OverBudget,
}

impl From<ReadFail> for ChunkFail {
    fn from(fail: ReadFail) -> ChunkFail {
        ChunkFail::Read(fail)
    }
}

fn body_failure(fail: impl Into<ChunkFail>) -> Body {
    match fail.into() {
        ChunkFail::Read(ReadFail::TimedOut) => Body::TimedOut,
        ChunkFail::Read(ReadFail::TooLarge) => Body::TooLarge,
        ChunkFail::Read(ReadFail::Eof) => Body::Malformed("the body ended early"),
        ChunkFail::Read(ReadFail::Io) => Body::Malformed("connection failed"),
        ChunkFail::Malformed => Body::Malformed("malformed chunked encoding"),
        ChunkFail::OverBudget => Body::OverBudget,
    }
}

impl Connection<'_> {
    /// Reads the body `head` announces by `deadline`, reserving its bytes in `reservation`.
    pub(super) fn read_body(
        &mut self,
        head: &Head,
        reservation: &mut Reservation<'_>,
        deadline: Instant,
    ) -> Body {
        let max = self.limits().max_body;
        match head.framing {
            Framing::Invalid(ref body) => body.clone(),
            Framing::Length(length) if length > max as u64 => Body::TooLarge,
            Framing::Length(0) => Body::Complete(Vec::new()),
            Framing::Length(length) => {
                // Before `100 Continue`: a client told to go on is not then refused.
                if !reservation.grow(length) {
                    return Body::OverBudget;
                }
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
                match self.take_chunked(max, reservation, deadline) {
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
        // Room for the whole body at once: growing by doubling would hold up to twice what
        // the budget reserved.
        self.pending
            .reserve_exact(length.saturating_sub(self.pending.len()));
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

    /// Decodes a chunked body of at most `max` bytes (chunk extensions and trailers ignored),
    /// reserving each chunk in the budget before reading it.
    fn take_chunked(
        &mut self,
        max: usize,
        reservation: &mut Reservation<'_>,
        deadline: Instant,
    ) -> Result<Vec<u8>, ChunkFail> {
        // A line longer than its bound is broken framing, not a large body.
        let framing = |fail: ReadFail| match fail {
            ReadFail::TooLarge => ChunkFail::Malformed,
            other => ChunkFail::Read(other),
        };
        let mut body = Vec::new();
        loop {
            let line = self.take_line(1024, deadline).map_err(framing)?;
            let size = chunk_size(&line).ok_or(ChunkFail::Malformed)?;
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
            if !reservation.grow(size) {
                return Err(ChunkFail::OverBudget);
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
}
