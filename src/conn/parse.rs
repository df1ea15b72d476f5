//! The request head and its framing: pure functions over bytes, so they are tested here
//! without a socket. What a head may look like follows RFC 9112 strictly; anything that leaves
//! the body's end in doubt is refused (see `framing`).

use super::{Body, CloseReason};

/// A parsed request head and what it says about the body and the connection.
pub(super) struct Head {
    pub(super) method: String,
    pub(super) url: String,
    pub(super) version: (u8, u8),
    pub(super) headers: Vec<(String, String)>,
    pub(super) framing: Framing,
    pub(super) keep_alive: bool,
    pub(super) expect_continue: bool,
}

/// How the body's end is known.
pub(super) enum Framing {
    Length(u64),
    Chunked,
    /// The end cannot be known: the body is never read, and this is what the handler sees.
    Invalid(Body),
}

pub(super) enum HeadFail {
    /// The connection ends without an answer.
    Closed(CloseReason),
    /// Answer with this status (a bare error), then close.
    Answer(u16),
}

/// Where the head ends (just past its blank line), searching from `from`.
pub(super) fn find_head_end(bytes: &[u8], from: usize) -> Option<usize> {
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
pub(super) fn parse_head(raw: &[u8], max_headers: usize) -> Result<Head, HeadFail> {
    let text = std::str::from_utf8(raw).map_err(|_| HeadFail::Answer(400))?;
    // RFC 9110 §5.5, RFC 9112 §2.2: NUL, and CR anywhere but before LF, are refused, never passed
    // on inside a target or a header value (found by fuzzing: both reached the handler).
    let line_ends = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line));
    if text.contains('\0') || line_ends.clone().any(|line| line.contains('\r')) {
        return Err(HeadFail::Answer(400));
    }
    // RFC 9112 §2.2: empty lines before the request line are ignored.
    let mut lines = line_ends.skip_while(|line| line.is_empty());
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
pub(super) fn framing(lengths: Vec<&str>, encodings: Vec<&str>) -> Framing {
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

/// The size on a chunk-size line (`1a;ext=x` → 26), or None when the line is malformed.
pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
    std::str::from_utf8(size)
        .ok()
        .map(str::trim)
        .filter(|hex| !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
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
        assert!(
            head("GET / HTTP/1.0\r\n\r\n")
                .map(|h| !h.keep_alive)
                .unwrap()
        );
        assert_eq!(head("GET / HTTP/2.0\r\n\r\n").err(), Some(505));
        assert_eq!(head("GET /\r\n\r\n").err(), Some(400));
        assert_eq!(head("GET / HTTP/1.1\r\n folded\r\n\r\n").err(), Some(400));
        // Found by fuzzing: NUL and bare CR reached the handler inside values and targets.
        for smuggled in [
            "GET / HTTP/1.1\r\nConnection: keep\0alive\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\rX-B: b\r\n\r\n",
            "GET /a\rb HTTP/1.1\r\n\r\n",
            "GET /a\0 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(head(smuggled).err(), Some(400), "{smuggled:?}");
        }
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
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1a"), Some(26));
        assert_eq!(chunk_size(b"1A;name=value"), Some(26));
        assert_eq!(chunk_size(b" 5 "), Some(5));
        for bad in [&b""[..], b"g", b"-1", b"0x5", b";x", b"ffffffffffffffff0"] {
            assert_eq!(chunk_size(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn head_end_accepts_crlf_and_bare_lf() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest", 0), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nrest", 0), Some(16));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n", 0), None);
    }
}
