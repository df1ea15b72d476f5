//! Reading a request body into memory: exactly `Content-Length` bytes, or chunked encoding
//! decoded, never more than `max_body`, each byte reserved in the body budget before it is read.

use std::time::Instant;

use super::Body;
use super::budget::Reservation;
use super::connection::{ReadFail, Wire};
use super::parse::{Framing, Head, chunk_size};

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

/// Reads the body `head` announces from `wire` by `deadline`, reserving its bytes in
/// `reservation`.
pub(super) fn read_body(
    wire: &mut impl Wire,
    head: &Head,
    reservation: &mut Reservation<'_>,
    deadline: Instant,
) -> Body {
    let max = wire.limits().max_body;
    match head.framing {
        Framing::Invalid(ref body) => body.clone(),
        Framing::Length(length) if length > max as u64 => Body::TooLarge,
        Framing::Length(0) => Body::Complete(Vec::new()),
        Framing::Length(length) => {
            // Before `100 Continue`: a client told to go on is not then refused.
            if !reservation.grow(length) {
                return Body::OverBudget;
            }
            if head.expect_continue && wire.send_continue().is_err() {
                return Body::Malformed("connection failed");
            }
            match take_exact(wire, length as usize, deadline) {
                Ok(body) => Body::Complete(body),
                Err(fail) => body_failure(fail),
            }
        }
        Framing::Chunked => {
            if head.expect_continue && wire.send_continue().is_err() {
                return Body::Malformed("connection failed");
            }
            match take_chunked(wire, max, reservation, deadline) {
                Ok(body) => Body::Complete(body),
                Err(fail) => body_failure(fail),
            }
        }
    }
}

/// Takes exactly `length` bytes from the pending bytes and the wire.
fn take_exact(wire: &mut impl Wire, length: usize, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
    // Room for the whole body at once: growing by doubling would hold up to twice what
    // the budget reserved.
    let pending = wire.pending();
    pending.reserve_exact(length.saturating_sub(pending.len()));
    while wire.pending().len() < length {
        let want = (length - wire.pending().len()).clamp(1, 16 * 1024);
        wire.read_more(deadline, want)?;
    }
    let pending = wire.pending();
    let rest = pending.split_off(length);
    Ok(std::mem::replace(pending, rest))
}

/// Takes one line (without its CRLF) of at most `max` bytes. Whether a line is too long
/// depends on the line alone, not on how much of what follows was already read (found by
/// fuzzing: a long trailer line was refused when it came in pieces, taken when in one read).
fn take_line(wire: &mut impl Wire, max: usize, deadline: Instant) -> Result<Vec<u8>, ReadFail> {
    let mut searched = 0;
    loop {
        let pending = wire.pending();
        if let Some(at) = pending[searched..].iter().position(|&b| b == b'\n') {
            let at = searched + at;
            let content = at - usize::from(at > 0 && pending[at - 1] == b'\r');
            if content > max {
                return Err(ReadFail::TooLarge);
            }
            let line: Vec<u8> = pending.drain(..=at).take(content).collect();
            return Ok(line);
        }
        // `max` bytes and the CR of a CRLF whose LF is still to come.
        if pending.len() > max + 1 {
            return Err(ReadFail::TooLarge);
        }
        searched = pending.len();
        wire.read_more(deadline, 512)?;
    }
}

/// Decodes a chunked body of at most `max` bytes (chunk extensions and trailers ignored),
/// reserving each chunk in the budget before reading it.
fn take_chunked(
    wire: &mut impl Wire,
    max: usize,
    reservation: &mut Reservation<'_>,
    deadline: Instant,
) -> Result<Vec<u8>, ChunkFail> {
    // A line longer than its bound is broken framing, not a large body.
    let framing = |fail: ReadFail| match fail {
        ReadFail::TooLarge => ChunkFail::Malformed,
        other => ChunkFail::Read(other),
    };
    let (max_headers, max_head_bytes) = (wire.limits().max_headers, wire.limits().max_head_bytes);
    let mut body = Vec::new();
    loop {
        let line = take_line(wire, 1024, deadline).map_err(framing)?;
        let size = chunk_size(&line).ok_or(ChunkFail::Malformed)?;
        if size == 0 {
            // Trailers, up to the empty line.
            for _ in 0..=max_headers {
                if take_line(wire, max_head_bytes, deadline)
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
        body.extend(take_exact(wire, size as usize, deadline).map_err(ChunkFail::Read)?);
        if !take_line(wire, 2, deadline).map_err(framing)?.is_empty() {
            return Err(ChunkFail::Malformed);
        }
    }
}
