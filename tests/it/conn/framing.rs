//! Heads and bodies: what the handler is given, and what is refused before it.

use super::*;

#[test]
fn pipelined_requests_are_answered_in_order() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    for expected in [
        "GET /1 complete 0",
        "POST /2 complete 3",
        "GET /3 complete 0",
    ] {
        let answer = next_answer(&mut client);
        assert_eq!((answer.status, answer.text().as_str()), (200, expected));
        assert_eq!(answer.header("connection"), None);
    }
    assert_eq!(h.next_seen().body, Body::Complete(Vec::new()));
    assert_eq!(h.next_seen().body, Body::Complete(b"abc".to_vec()));
    // Still open for more.
    assert!(client.send(b"GET /4 HTTP/1.1\r\nConnection: close\r\n\r\n"));
    let answer = next_answer(&mut client);
    assert_eq!(answer.text(), "GET /4 complete 0");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(client.ending(TIMEOUT), Ending::Closed);
}

#[test]
fn head_answer_has_content_length_but_no_body() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let head = client.next_head(TIMEOUT).resp("the answer to HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("18")); // "HEAD /h complete 0"
    // The very next bytes are the next answer: no body was written for HEAD.
    let next = next_answer(&mut client);
    assert_eq!(next.text(), "GET /g complete 0");
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let h = start(limits());
    let mut client = send(h.addr, b"GET /a HTTP/1.0\r\n\r\n");
    let answer = next_answer(&mut client);
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(client.ending(TIMEOUT), Ending::Closed);

    let mut client = send(h.addr, b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let answer = next_answer(&mut client);
    // An HTTP/1.0 client closes unless told otherwise.
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    assert!(client.send(b"GET /c HTTP/1.0\r\n\r\n"));
    assert_eq!(next_answer(&mut client).text(), "GET /c complete 0");
    assert_eq!(client.ending(TIMEOUT), Ending::Closed);
}

#[test]
fn expect_continue_gets_100_before_the_body_is_read() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let interim = next_answer(&mut client);
    assert_eq!(interim.status, 100);
    assert!(
        h.seen.try_recv().is_err(),
        "the handler ran before the body came"
    );
    assert!(client.send(b"hello"));
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "POST /c complete 5")
    );
    assert_eq!(h.next_seen().body, Body::Complete(b"hello".to_vec()));
}

#[test]
fn expect_continue_with_a_body_too_large_gets_no_100() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n",
    );
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "POST /big too_large")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(h.next_seen().body, Body::TooLarge);
    assert!(client.ending(TIMEOUT).ended());
    assert_eq!(h.next_close(), CloseReason::Refused);
}

#[test]
fn http_1_0_expect_continue_gets_no_100() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"POST /old HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "POST /old complete 5")
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_decode() {
    let h = start(limits());
    let mut client = send(
        h.addr,
        b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;name=value\r\nWiki\r\n5\r\npedia\r\nE ; a=\"b\"\r\n in\r\n\r\nchunks.\r\n\
          0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n\
          GET /next HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(next_answer(&mut client).text(), "POST /chunked complete 23");
    assert_eq!(
        h.next_seen().body,
        Body::Complete(b"Wikipedia in\r\n\r\nchunks.".to_vec())
    );
    // The trailers were consumed exactly: the pipelined request after them is served.
    assert_eq!(next_answer(&mut client).text(), "GET /next complete 0");
}

#[test]
fn malformed_chunked_body_is_reported_and_closes() {
    let h = start(limits());
    for body in ["zz\r\nabc\r\n0\r\n\r\n", "3\r\nabcXY\r\n0\r\n\r\n"] {
        let mut client = send(
            h.addr,
            format!(
                "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                body
            )
            .as_bytes(),
        );
        let answer = next_answer(&mut client);
        assert_eq!(answer.text(), "POST /m malformed", "{:?}", body);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(matches!(h.next_seen().body, Body::Malformed(_)));
        assert!(client.ending(TIMEOUT).ended());
    }
}

#[test]
fn chunked_body_over_max_body_is_too_large() {
    let h = start(Limits {
        max_body: 16,
        ..limits()
    });
    let mut client = send(
        h.addr,
        b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    );
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "POST /t too_large")
    );
    assert_eq!(h.next_seen().body, Body::TooLarge);
}

#[test]
fn chunk_size_that_would_overflow_is_too_large() {
    let h = start(Limits {
        max_body: 16,
        ..limits()
    });
    let mut client = send(
        h.addr,
        b"POST /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nxxxx",
    );
    let answer = next_answer(&mut client);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (413, "POST /o too_large")
    );
}

/// A body whose end is ambiguous is never parsed on: whatever hides in it is not served.
#[test]
fn ambiguous_framing_is_malformed_and_nothing_is_smuggled() {
    let h = start(limits());
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for (framing, expected) in [
        ("Content-Length: 5x\r\n".to_owned(), "malformed"),
        (
            format!(
                "Content-Length: 0\r\nContent-Length: {}\r\n",
                smuggled.len()
            ),
            "malformed",
        ),
        (
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                smuggled.len() + 5
            ),
            "malformed",
        ),
        (
            "Transfer-Encoding: gzip, chunked\r\n".to_owned(),
            "unsupported",
        ),
    ] {
        let request = format!(
            "POST /outer HTTP/1.1\r\n{}\r\n0\r\n\r\n{}",
            framing, smuggled
        );
        let mut client = send(h.addr, request.as_bytes());
        let answer = next_answer(&mut client);
        assert_eq!(
            answer.text(),
            format!("POST /outer {}", expected),
            "{:?}",
            framing
        );
        assert_eq!(answer.header("connection"), Some("close"));
        let ending = client.ending(TIMEOUT);
        let rest = client.received();
        assert!(
            ending.ended() && rest.is_empty(),
            "{:?}: {:?}",
            framing,
            rest
        );
        assert_eq!(h.next_seen().url, "/outer");
    }
    assert!(h.seen.try_recv().is_err(), "a smuggled request was served");
}

#[test]
fn head_over_max_head_bytes_gets_431() {
    let h = start(limits());
    let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(5000));
    let mut client = send(h.addr, request.as_bytes());
    let answer = next_answer(&mut client);
    assert_eq!(answer.status, 431);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(client.ending(TIMEOUT).ended());
    assert!(h.seen.try_recv().is_err());
    assert_eq!(h.next_close(), CloseReason::Refused);
}

#[test]
fn binary_garbage_gets_400_at_once() {
    // A long header timeout: the 400 must not wait for it.
    let h = start(Limits {
        header_timeout: Duration::from_secs(30),
        ..limits()
    });
    let started = Instant::now();
    // The start of a TLS ClientHello.
    let mut client = send(
        h.addr,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
    );
    let answer = next_answer(&mut client);
    assert_eq!(answer.status, 400);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(client.ending(TIMEOUT).ended());
    assert!(h.seen.try_recv().is_err());
}
