//! The request head and body reader (`conn::replay`, the same `read_head`/`read_body` a
//! connection runs), over bytes in memory delivered in pieces the input chooses.
//!
//! Checked, besides "no panic":
//! - the outcome does not depend on how the bytes were split into reads (what a client sends
//!   means one thing, however TCP cuts it);
//! - an accepted head has a token method, a version of 1.0 or 1.1, at most `max_headers` headers,
//!   token names, and no CR, LF or NUL anywhere in its target, names or values;
//! - a body read whole under `Content-Length` had only digit-only lengths that agree, no
//!   `Transfer-Encoding`, and is exactly that long; a refused status is one we send;
//! - a chunked body read whole had exactly one `Transfer-Encoding: chunked`, no length, never
//!   exceeds `max_body`, and is what an independent decoder makes of the same bytes, ending at
//!   the same byte (so the next request starts where both agree);
//! - every byte of a body was reserved in the budget, and the budget is whole again afterwards;
//! - `100 Continue` goes only to an HTTP/1.1 request that asked, never before a refusal by length;
//! - generated chunked bodies (any chunk sizes, hex case, extensions, trailers) decode to their
//!   data, or are `TooLarge` exactly when the data is over `max_body`.
#![no_main]

use hookbox::conn::{Body, BodyBudget, Incoming, Limits, Replayed, replay};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = if data.first().is_some_and(|b| b & 1 == 0) {
        raw(&mut u)
    } else {
        generated(&mut u)
    };
});

fn limits(u: &mut Unstructured<'_>) -> Result<Limits> {
    Ok(Limits {
        max_body: u.int_in_range(0..=2048)?,
        max_head_bytes: u.int_in_range(64..=2048)?,
        max_headers: u.int_in_range(1..=12)?,
        ..Limits::default()
    })
}

/// Bytes as a client might send them: requests one after another on one connection.
fn raw(u: &mut Unstructured<'_>) -> Result<()> {
    let _mode: u8 = u.arbitrary()?;
    let limits = limits(u)?;
    let budget_bytes: u64 = u.int_in_range(0..=4096)?;
    let piece_count = u.int_in_range(1..=4)?;
    let pieces: Vec<usize> = (0..piece_count)
        .map(|_| u.int_in_range(1..=40))
        .collect::<Result<_>>()?;
    let input = u.bytes(u.len())?;
    let mut at = 0;
    // At most a few requests: the loop must end even if a request took no bytes (checked below).
    for _ in 0..8 {
        let rest = &input[at..];
        let budget = BodyBudget::new(budget_bytes);
        let split = replay(rest, &pieces, &limits, &budget);
        assert_eq!(budget.used(), 0, "the budget is whole again");
        let whole = replay(rest, &[], &limits, &BodyBudget::new(budget_bytes));
        assert_eq!(
            summary(&split),
            summary(&whole),
            "the outcome depends on how the bytes were cut (pieces {pieces:?})"
        );
        assert!(split.consumed <= rest.len());
        let request = match &split.request {
            Ok(request) => request,
            Err(status) => {
                if let Some(status) = status {
                    assert!([400, 417, 431, 505].contains(status), "status {status}");
                }
                return Ok(());
            }
        };
        assert!(split.consumed > 0, "a request took no bytes");
        check_head(request, &limits);
        let body_bytes = &rest[head_end(rest).expect("an accepted head ended")..split.consumed];
        check_body(request, &split, &limits, body_bytes);
        if !matches!(request.body, Body::Complete(_)) || !split.keep_alive {
            return Ok(());
        }
        at += split.consumed;
    }
    Ok(())
}

/// What must not depend on how the input was cut into reads.
fn summary(replayed: &Replayed) -> String {
    match &replayed.request {
        // Refused: the connection closes, whatever was left unread.
        Err(status) => format!("refused {status:?}"),
        // A body not read whole closes the connection too: where reading stopped is moot.
        Ok(r) => format!(
            "{:?} keep_alive={} continued={} reserved={} consumed={:?}",
            (&r.method, &r.url, r.version, &r.headers, &r.body),
            replayed.keep_alive,
            replayed.continued,
            replayed.reserved,
            matches!(r.body, Body::Complete(_)).then_some(replayed.consumed)
        ),
    }
}

fn is_token(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn check_head(request: &Incoming, limits: &Limits) {
    assert!(!request.method.is_empty() && request.method.bytes().all(is_token));
    assert!(matches!(request.version, (1, 0) | (1, 1)));
    assert!(!request.url.is_empty() && !request.url.contains(' '));
    assert!(request.headers.len() <= limits.max_headers);
    let dangerous = |text: &str| text.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    assert!(
        !dangerous(&request.url),
        "CR, LF or NUL in the target {:?}",
        request.url
    );
    for (name, value) in &request.headers {
        assert!(
            !name.is_empty() && name.bytes().all(is_token),
            "name {name:?}"
        );
        assert!(
            !dangerous(value),
            "CR, LF or NUL in a header value {value:?}"
        );
        assert_eq!(value.trim_matches([' ', '\t']), value);
    }
}

fn values<'r>(request: &'r Incoming, name: &str) -> Vec<&'r str> {
    request
        .headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .collect()
}

fn check_body(request: &Incoming, replayed: &Replayed, limits: &Limits, body_bytes: &[u8]) {
    let lengths = values(request, "content-length");
    let encodings = values(request, "transfer-encoding");
    let asked_continue = request.version == (1, 1)
        && values(request, "expect")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("100-continue"));
    if replayed.continued {
        assert!(asked_continue, "100 Continue to a request that did not ask");
    }
    match &request.body {
        Body::Complete(body) => {
            assert!(body.len() <= limits.max_body, "a body over max_body");
            assert_eq!(
                replayed.reserved,
                body.len() as u64,
                "bytes held unreserved"
            );
            if encodings.is_empty() {
                let digits = |v: &&str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
                assert!(
                    lengths.iter().all(digits),
                    "a non-digit Content-Length: {lengths:?}"
                );
                assert!(
                    lengths.windows(2).all(|w| w[0] == w[1]),
                    "lengths differ: {lengths:?}"
                );
                let announced = lengths.first().map_or(0, |v| v.parse::<u64>().unwrap());
                assert_eq!(body.len() as u64, announced);
                assert_eq!(body_bytes, &body[..]);
            } else {
                assert!(lengths.is_empty(), "a length beside Transfer-Encoding");
                assert_eq!(encodings.len(), 1);
                assert!(encodings[0].eq_ignore_ascii_case("chunked"));
                let (decoded, used) = decode_chunked(body_bytes)
                    .expect("the decoder accepted what an independent one refuses");
                assert_eq!(&decoded, body, "the decoders disagree on the body");
                assert_eq!(
                    used,
                    body_bytes.len(),
                    "the decoders disagree on where it ends"
                );
            }
        }
        Body::TooLarge => {
            if encodings.is_empty() {
                // Announced too large: refused before any `100 Continue`.
                assert!(!replayed.continued);
                let announced: u128 = lengths[0].parse().unwrap_or(u128::MAX);
                assert!(announced > limits.max_body as u128);
            }
        }
        Body::OverBudget => {
            if encodings.is_empty() {
                assert!(!replayed.continued);
            }
        }
        Body::Malformed(_) | Body::UnsupportedEncoding | Body::TimedOut => {}
    }
}

/// Where the head ends: the first empty line (LF LF or LF CR LF).
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len()).find_map(|i| {
        if bytes[i] != b'\n' {
            None
        } else if bytes.get(i + 1) == Some(&b'\n') {
            Some(i + 2)
        } else if bytes[i + 1..].starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// An independent, lenient reading of RFC 9112 §7.1: the body, and how many bytes it took.
fn decode_chunked(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut at = 0;
    let line = |at: &mut usize| -> Option<Vec<u8>> {
        let end = bytes[*at..].iter().position(|&b| b == b'\n')? + *at;
        let mut line = bytes[*at..end].to_vec();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        *at = end + 1;
        Some(line)
    };
    let mut body = Vec::new();
    loop {
        let size_line = line(&mut at)?;
        let size = size_line.split(|&b| b == b';').next()?;
        let size = std::str::from_utf8(size).ok()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        if size == 0 {
            while !line(&mut at)?.is_empty() {}
            return Some((body, at));
        }
        body.extend_from_slice(bytes.get(at..at.checked_add(size)?)?);
        at += size;
        if !line(&mut at)?.is_empty() {
            return None;
        }
    }
}

/// A chunked request built from parts: it must decode to its data, and the request after it
/// must be found intact.
fn generated(u: &mut Unstructured<'_>) -> Result<()> {
    let _mode: u8 = u.arbitrary()?;
    let limits = Limits {
        max_headers: 8,
        ..limits(u)?
    };
    let piece_count = u.int_in_range(1..=4)?;
    let pieces: Vec<usize> = (0..piece_count)
        .map(|_| u.int_in_range(1..=40))
        .collect::<Result<_>>()?;
    let crlf: bool = u.arbitrary()?;
    let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
    let mut input = b"POST /webhook HTTP/1.1".to_vec();
    input.extend_from_slice(eol);
    input.extend_from_slice(b"Transfer-Encoding: chunked");
    input.extend_from_slice(eol);
    input.extend_from_slice(eol);
    let mut data = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        let chunk: Vec<u8> = u.arbitrary()?;
        if chunk.is_empty() {
            continue;
        }
        let zeros = "0".repeat(u.int_in_range(0..=3)?);
        let size = if u.arbitrary()? {
            format!("{zeros}{:X}", chunk.len())
        } else {
            format!("{zeros}{:x}", chunk.len())
        };
        input.extend_from_slice(size.as_bytes());
        if u.arbitrary()? {
            input.extend_from_slice(b";name=\"value\"");
        }
        input.extend_from_slice(eol);
        input.extend_from_slice(&chunk);
        input.extend_from_slice(eol);
        data.extend_from_slice(&chunk);
    }
    input.push(b'0');
    input.extend_from_slice(eol);
    for i in 0..u.int_in_range(0..=3)? {
        input.extend_from_slice(format!("X-Trailer-{i}: v").as_bytes());
        input.extend_from_slice(eol);
    }
    input.extend_from_slice(eol);
    let next = b"GET /next HTTP/1.1\r\n\r\n";
    input.extend_from_slice(next);

    let budget = BodyBudget::new(1 << 20);
    let replayed = replay(&input, &pieces, &limits, &budget);
    let request = replayed.request.expect("a well-formed head");
    if data.len() <= limits.max_body {
        assert_eq!(
            request.body,
            Body::Complete(data),
            "{:?}",
            String::from_utf8_lossy(&input)
        );
        assert_eq!(&input[replayed.consumed..], next);
    } else {
        assert_eq!(request.body, Body::TooLarge);
    }
    assert_eq!(budget.used(), 0);
    Ok(())
}
