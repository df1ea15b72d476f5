//! Writing an answer: the status line with its reason phrase, the `Date` header, framing headers
//! the connection decides (never the handler), and the body, all within a total deadline.

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{CloseReason, Outgoing};

/// Bodies up to this size are copied behind their head and written with it.
const COPY_BODY_BELOW: usize = 16 * 1024;

/// How one answer goes out.
pub(super) struct Framing {
    /// A HEAD answer keeps its `Content-Length` but sends no body.
    pub(super) head_only: bool,
    /// Say `Connection: close` (the connection closes after this answer).
    pub(super) close: bool,
    /// Say `Connection: keep-alive` (an HTTP/1.0 client closes unless told otherwise).
    pub(super) announce_keep_alive: bool,
}

/// Writes `answer` by `deadline`.
pub(super) fn write_answer(
    stream: &TcpStream,
    answer: &Outgoing,
    framing: Framing,
    deadline: Instant,
) -> Result<(), CloseReason> {
    let mut bytes = Vec::with_capacity(256 + answer.body.len().min(COPY_BODY_BELOW));
    let _ = write!(
        bytes,
        "HTTP/1.1 {} {}\r\nDate: ",
        answer.status,
        reason_phrase(answer.status)
    );
    http_date(&mut bytes, SystemTime::now());
    bytes.extend_from_slice(b"\r\n");
    for (name, value) in &answer.headers {
        let safe = |text: &str| !text.bytes().any(|b| b == b'\r' || b == b'\n');
        let framing_header = name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("connection")
            || name.eq_ignore_ascii_case("transfer-encoding");
        if safe(name) && safe(value) && !framing_header {
            let _ = write!(bytes, "{name}: {value}\r\n");
        }
    }
    if framing.close {
        bytes.extend_from_slice(b"Connection: close\r\n");
    } else if framing.announce_keep_alive {
        bytes.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    let _ = write!(bytes, "Content-Length: {}\r\n\r\n", answer.body.len());
    let body: &[u8] = if framing.head_only { &[] } else { &answer.body };
    // A small body goes out with its head in one write (one segment); a large one is written
    // from where it is, rather than copied, since a client that reads slowly keeps it here.
    let rest = if body.len() <= COPY_BODY_BELOW {
        bytes.extend_from_slice(body);
        &[][..]
    } else {
        body
    };
    write_all_by(stream, &bytes, deadline)
        .and_then(|()| write_all_by(stream, rest, deadline))
        .map_err(|error| match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => CloseReason::WriteTimeout,
            _ => CloseReason::Error,
        })
}

/// `write_all`, each write armed with what is left of `deadline`.
pub(super) fn write_all_by(
    stream: &TcpStream,
    mut bytes: &[u8],
    deadline: Instant,
) -> io::Result<()> {
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

/// A bare answer with the reason phrase as its `detail` (a refused head's).
pub fn plain(status: u16) -> Outgoing {
    Outgoing {
        status,
        headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
        body: format!("{{\"detail\":\"{}\"}}", reason_phrase(status)).into_bytes(),
        close: true,
    }
}

/// Appends `time` as an IMF-fixdate (RFC 9110 §5.6.7), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(out: &mut Vec<u8>, time: SystemTime) {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let (year, month, day) = crate::timestamp::civil_from_days(days as i64);
    let of_day = seconds % 86_400;
    let _ = write!(
        out,
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// The reason phrase for `status` (RFC 9110 §15), "Unknown" for codes it does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn date(seconds: u64) -> String {
        let mut out = Vec::new();
        http_date(&mut out, UNIX_EPOCH + Duration::from_secs(seconds));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110's own example.
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }

    #[test]
    fn every_status_hookbox_answers_has_its_phrase() {
        for (status, phrase) in [
            (200, "OK"),
            (401, "Unauthorized"),
            (408, "Request Timeout"),
            (413, "Payload Too Large"),
            (422, "Unprocessable Entity"),
            (431, "Request Header Fields Too Large"),
            (503, "Service Unavailable"),
            (505, "HTTP Version Not Supported"),
        ] {
            assert_eq!(reason_phrase(status), phrase);
        }
        assert_eq!(reason_phrase(299), "Unknown");
    }
}
