//! Tests of the fork's `tiny_http::serve` over real sockets, with a trivial handler that echoes
//! what it was given ("METHOD URL BODY"). Each test sets short limits, so a deadline that does
//! not hold fails the test in seconds instead of hanging it.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::serve::{self, Body, CloseReason, Incoming, Limits, Observer, Outgoing, Serving};

mod wire;
use wire::{connect, ended, read_answer, read_head, read_to_end, send, Ending, TIMEOUT};

/// What the observer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Opened,
    Refused,
    Closed(CloseReason),
}

struct Recorder(Mutex<Sender<Event>>);

impl Observer for Recorder {
    fn opened(&self) {
        let _ = self.0.lock().unwrap().send(Event::Opened);
    }
    fn refused(&self) {
        let _ = self.0.lock().unwrap().send(Event::Refused);
    }
    fn closed(&self, reason: CloseReason) {
        let _ = self.0.lock().unwrap().send(Event::Closed(reason));
    }
}

struct Harness {
    serving: Serving,
    addr: SocketAddr,
    events: Receiver<Event>,
    /// Every request the handler was called with, in order.
    seen: Receiver<Incoming>,
}

impl Harness {
    /// The next observer event of the kind `wanted` picks (others are skipped), within `TIMEOUT`.
    fn next_event(&self, wanted: impl Fn(&Event) -> bool) -> Event {
        let end = Instant::now() + TIMEOUT;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) if wanted(&event) => return event,
                Ok(_) => {}
                Err(_) => panic!("no such observer event within {:?}", TIMEOUT),
            }
        }
    }

    fn next_close(&self) -> CloseReason {
        match self.next_event(|event| matches!(event, Event::Closed(_))) {
            Event::Closed(reason) => reason,
            _ => unreachable!(),
        }
    }

    fn next_seen(&self) -> Incoming {
        self.seen
            .recv_timeout(TIMEOUT)
            .expect("the handler was not called")
    }
}

/// Short limits for tests.
fn limits() -> Limits {
    Limits {
        idle_timeout: Duration::from_secs(5),
        header_timeout: Duration::from_secs(2),
        body_timeout: Duration::from_secs(2),
        write_timeout: Duration::from_secs(2),
        max_body: 1024,
        max_head_bytes: 4096,
        max_headers: 100,
        max_connections: 64,
    }
}

fn describe(body: &Body) -> String {
    match body {
        Body::Complete(bytes) => format!("complete {}", bytes.len()),
        Body::TooLarge => "too_large".to_owned(),
        Body::TimedOut => "timed_out".to_owned(),
        Body::Malformed(_) => "malformed".to_owned(),
        Body::UnsupportedEncoding => "unsupported".to_owned(),
    }
}

/// Echoes "METHOD URL BODY", with a status that matches what became of the body.
fn echo(incoming: &Incoming) -> Outgoing {
    let status = match incoming.body {
        Body::Complete(_) => 200,
        Body::TooLarge => 413,
        Body::TimedOut => 408,
        Body::Malformed(_) => 400,
        Body::UnsupportedEncoding => 501,
    };
    Outgoing {
        status,
        headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
        body: format!(
            "{} {} {}",
            incoming.method,
            incoming.url,
            describe(&incoming.body)
        )
        .into_bytes(),
        close: false,
    }
}

fn start_with(
    limits: Limits,
    answer: impl Fn(&Incoming) -> Outgoing + Send + Sync + 'static,
) -> Harness {
    let (events_tx, events) = mpsc::channel();
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = Mutex::new(seen_tx);
    let handler: serve::Handler = Arc::new(move |incoming: Incoming| {
        let outgoing = answer(&incoming);
        let _ = seen_tx.lock().unwrap().send(incoming);
        outgoing
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let observer = Arc::new(Recorder(Mutex::new(events_tx)));
    let serving = serve::serve(listener, limits, handler, observer).unwrap();
    Harness {
        addr: serving.local_addr(),
        serving,
        events,
        seen,
    }
}

fn start(limits: Limits) -> Harness {
    start_with(limits, echo)
}

fn buffered(stream: &TcpStream) -> BufReader<TcpStream> {
    BufReader::new(stream.try_clone().unwrap())
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n\
          POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
          GET /3 HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let mut reader = buffered(&client);
    for expected in [
        "GET /1 complete 0",
        "POST /2 complete 3",
        "GET /3 complete 0",
    ] {
        let answer = read_answer(&mut reader).unwrap();
        assert_eq!(
            (answer.status, answer.body_text().as_str()),
            (200, expected)
        );
        assert_eq!(answer.header("connection"), None);
    }
    assert_eq!(h.next_seen().body, Body::Complete(Vec::new()));
    assert_eq!(h.next_seen().body, Body::Complete(b"abc".to_vec()));
    // Still open for more.
    (&client)
        .write_all(b"GET /4 HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(answer.body_text(), "GET /4 complete 0");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(read_to_end(&mut reader).1, Ending::Closed);
}

#[test]
fn head_answer_has_content_length_but_no_body() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"HEAD /h HTTP/1.1\r\n\r\nGET /g HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let mut reader = buffered(&client);
    let head = read_head(&mut reader).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("18")); // "HEAD /h complete 0"
                                                           // The very next bytes are the next answer: no body was written for HEAD.
    let next = read_answer(&mut reader).unwrap();
    assert_eq!(next.body_text(), "GET /g complete 0");
}

#[test]
fn http_1_0_closes_unless_keep_alive() {
    let h = start(limits());
    let client = send(h.addr, b"GET /a HTTP/1.0\r\n\r\n");
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(read_to_end(&mut reader).1, Ending::Closed);

    let client = send(h.addr, b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    // An HTTP/1.0 client closes unless told otherwise.
    assert_eq!(answer.header("connection"), Some("keep-alive"));
    (&client).write_all(b"GET /c HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(
        read_answer(&mut reader).unwrap().body_text(),
        "GET /c complete 0"
    );
    assert_eq!(read_to_end(&mut reader).1, Ending::Closed);
}

#[test]
fn expect_continue_gets_100_before_the_body_is_read() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"POST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
    );
    let mut reader = buffered(&client);
    let interim = read_answer(&mut reader).unwrap();
    assert_eq!(interim.status, 100);
    assert!(
        h.seen.try_recv().is_err(),
        "the handler ran before the body came"
    );
    (&client).write_all(b"hello").unwrap();
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (200, "POST /c complete 5")
    );
    assert_eq!(h.next_seen().body, Body::Complete(b"hello".to_vec()));
}

#[test]
fn expect_continue_with_a_body_too_large_gets_no_100() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"POST /big HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1025\r\n\r\n",
    );
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (413, "POST /big too_large")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(h.next_seen().body, Body::TooLarge);
    assert!(ended(&read_to_end(&mut reader).1));
    assert_eq!(h.next_close(), CloseReason::Refused);
}

/// RFC 9110 §10.1.1: a server MUST ignore a 100-continue expectation in an HTTP/1.0 request (an
/// HTTP/1.0 client takes a `100 Continue` for the final answer).
#[test]
fn http_1_0_expect_continue_gets_no_100() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"POST /old HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
    );
    let answer = read_answer(&mut buffered(&client)).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (200, "POST /old complete 5")
    );
}

#[test]
fn chunked_bodies_with_extensions_and_trailers_decode() {
    let h = start(limits());
    let client = send(
        h.addr,
        b"POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
          4;name=value\r\nWiki\r\n5\r\npedia\r\nE ; a=\"b\"\r\n in\r\n\r\nchunks.\r\n\
          0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n\
          GET /next HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    let mut reader = buffered(&client);
    assert_eq!(
        read_answer(&mut reader).unwrap().body_text(),
        "POST /chunked complete 23"
    );
    assert_eq!(
        h.next_seen().body,
        Body::Complete(b"Wikipedia in\r\n\r\nchunks.".to_vec())
    );
    // The trailers were consumed exactly: the pipelined request after them is served.
    assert_eq!(
        read_answer(&mut reader).unwrap().body_text(),
        "GET /next complete 0"
    );
}

#[test]
fn malformed_chunked_body_is_reported_and_closes() {
    let h = start(limits());
    for body in ["zz\r\nabc\r\n0\r\n\r\n", "3\r\nabcXY\r\n0\r\n\r\n"] {
        let client = send(
            h.addr,
            format!(
                "POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                body
            )
            .as_bytes(),
        );
        let mut reader = buffered(&client);
        let answer = read_answer(&mut reader).unwrap();
        assert_eq!(answer.body_text(), "POST /m malformed", "{:?}", body);
        assert_eq!(answer.header("connection"), Some("close"));
        assert!(matches!(h.next_seen().body, Body::Malformed(_)));
        assert!(ended(&read_to_end(&mut reader).1));
    }
}

#[test]
fn chunked_body_over_max_body_is_too_large() {
    let h = start(Limits {
        max_body: 16,
        ..limits()
    });
    let client = send(
        h.addr,
        b"POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
    );
    let answer = read_answer(&mut buffered(&client)).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (413, "POST /t too_large")
    );
    assert_eq!(h.next_seen().body, Body::TooLarge);
}

/// A chunk size near 2^64 after a first chunk must not wrap the running total past the check
/// (a panic in a debug build; in release, a body read far past `max_body`).
#[test]
fn chunk_size_that_would_overflow_is_too_large() {
    let h = start(Limits {
        max_body: 16,
        ..limits()
    });
    let client = send(
        h.addr,
        b"POST /o HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\nxxxx",
    );
    let answer = read_answer(&mut buffered(&client)).expect("an answer");
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (413, "POST /o too_large")
    );
}

/// Sends `bytes` one every `gap` on its own thread (until the server cuts it or `TIMEOUT`).
fn trickle(stream: &TcpStream, bytes: &'static [u8], gap: Duration) -> thread::JoinHandle<()> {
    let mut stream = stream.try_clone().unwrap();
    thread::spawn(move || {
        let end = Instant::now() + TIMEOUT;
        for byte in bytes.iter().cycle() {
            if Instant::now() > end || stream.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(gap);
        }
    })
}

#[test]
fn header_deadline_is_total() {
    let h = start(Limits {
        header_timeout: Duration::from_secs(1),
        ..limits()
    });
    let client = connect(h.addr);
    let started = Instant::now();
    // A head that never ends, a byte every 100 ms: each byte would restart a per-read timeout.
    let writer = trickle(
        &client,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa",
        Duration::from_millis(100),
    );
    let (bytes, ending) = read_to_end(&mut buffered(&client));
    let took = started.elapsed();
    assert!(
        ended(&ending) && bytes.is_empty(),
        "{:?} {:?}",
        ending,
        bytes
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "cut after {:?}",
        took
    );
    assert_eq!(h.next_close(), CloseReason::HeaderTimeout);
    writer.join().unwrap();
}

#[test]
fn the_first_head_is_timed_from_accept_and_later_ones_from_their_first_byte() {
    let h = start(Limits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(5),
        ..limits()
    });
    // Silent for 700 ms after connecting, then dribbling: cut 1 s after the connect, not after
    // the first byte.
    let client = connect(h.addr);
    let started = Instant::now();
    thread::sleep(Duration::from_millis(700));
    let writer = trickle(
        &client,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaa",
        Duration::from_millis(100),
    );
    let (_, ending) = read_to_end(&mut buffered(&client));
    let took = started.elapsed();
    assert!(ended(&ending), "{:?}", ending);
    assert!(took < Duration::from_millis(1500), "cut after {:?}", took);
    assert_eq!(h.next_close(), CloseReason::HeaderTimeout);
    writer.join().unwrap();

    // After a first request, a pause longer than the header timeout is an idle wait, and the
    // next head gets its own full second from its first byte.
    let client = connect(h.addr);
    let mut reader = buffered(&client);
    (&client).write_all(b"GET /a HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut reader).unwrap().status, 200);
    thread::sleep(Duration::from_millis(1300));
    (&client).write_all(b"GET /b HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut reader).unwrap().status, 200);
}

#[test]
fn body_deadline_is_total() {
    let h = start(Limits {
        body_timeout: Duration::from_secs(1),
        ..limits()
    });
    let client = send(
        h.addr,
        b"POST /slow HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
    );
    let started = Instant::now();
    let writer = trickle(&client, b"x", Duration::from_millis(100));
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    let took = started.elapsed();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (408, "POST /slow timed_out")
    );
    assert_eq!(h.next_seen().body, Body::TimedOut);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "answered after {:?}",
        took
    );
    assert_eq!(answer.header("connection"), Some("close"));
    drop(reader);
    drop(client);
    assert_eq!(h.next_close(), CloseReason::BodyTimeout);
    writer.join().unwrap();
}

#[test]
fn write_deadline_cuts_a_client_that_never_reads() {
    let h = start_with(
        Limits {
            write_timeout: Duration::from_secs(1),
            ..limits()
        },
        |incoming| Outgoing {
            status: 200,
            headers: Vec::new(),
            body: vec![
                b'x';
                if incoming.url == "/big" {
                    50_000_000
                } else {
                    0
                }
            ],
            close: false,
        },
    );
    let client = send(h.addr, b"GET /big HTTP/1.1\r\n\r\n");
    let started = Instant::now();
    assert_eq!(h.next_close(), CloseReason::WriteTimeout);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "cut after {:?}", took);
    drop(client);
}

#[test]
fn max_connections_refusal_is_a_canned_503() {
    let h = start(Limits {
        max_connections: 1,
        ..limits()
    });
    let first = connect(h.addr);
    assert_eq!(h.next_event(|_| true), Event::Opened);
    let refused = connect(h.addr);
    let mut refused_reader = buffered(&refused);
    let answer = read_answer(&mut refused_reader).unwrap();
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(
        answer.body_text(),
        "{\"detail\":\"too many open connections, retry later\"}"
    );
    assert!(ended(&read_to_end(&mut refused_reader).1));
    assert_eq!(h.next_event(|_| true), Event::Refused);
    // The open one is still served.
    (&first).write_all(b"GET /first HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut buffered(&first)).unwrap().status, 200);
}

#[test]
fn head_over_max_head_bytes_gets_431() {
    let h = start(limits());
    let request = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(5000));
    let client = send(h.addr, request.as_bytes());
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(answer.status, 431);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(ended(&read_to_end(&mut reader).1));
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
    let client = send(
        h.addr,
        &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc],
    );
    let mut reader = buffered(&client);
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(answer.status, 400);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(ended(&read_to_end(&mut reader).1));
    assert!(h.seen.try_recv().is_err());
}

#[test]
fn stop_closes_the_port_cuts_waiting_and_lets_busy_finish() {
    let (entered_tx, entered) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let entered_tx = Mutex::new(entered_tx);
    let released = Mutex::new(released);
    let mut h = start_with(limits(), move |incoming| {
        if incoming.url == "/busy" {
            let _ = entered_tx.lock().unwrap().send(());
            let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
        }
        echo(incoming)
    });
    let waiting = connect(h.addr);
    assert_eq!(h.next_event(|_| true), Event::Opened);
    let busy = send(h.addr, b"GET /busy HTTP/1.1\r\n\r\n");
    entered
        .recv_timeout(TIMEOUT)
        .expect("the busy handler started");

    let stopping = Instant::now();
    h.serving.stop();
    assert!(stopping.elapsed() < Duration::from_secs(1));
    // The port is closed once `stop` returns.
    let refused = TcpStream::connect(h.addr).map(|_| ()).map_err(|e| e.kind());
    assert_eq!(refused, Err(ErrorKind::ConnectionRefused));
    // The waiting connection is cut at once, unanswered.
    let (bytes, ending) = read_to_end(&mut buffered(&waiting));
    assert!(
        ended(&ending) && bytes.is_empty(),
        "{:?} {:?}",
        ending,
        bytes
    );
    assert!(stopping.elapsed() < Duration::from_secs(2));
    // The busy one finishes its request and closes.
    assert!(!h.serving.wait_closed(Duration::from_millis(50)));
    release.send(()).unwrap();
    let mut reader = buffered(&busy);
    let answer = read_answer(&mut reader).unwrap();
    assert_eq!(
        (answer.status, answer.body_text().as_str()),
        (200, "GET /busy complete 0")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(read_to_end(&mut reader).1, Ending::Closed);
    assert!(h.serving.wait_closed(TIMEOUT));
    assert_eq!(h.serving.open_connections(), 0);
    assert_eq!(
        [h.next_close(), h.next_close()],
        [CloseReason::Shutdown, CloseReason::Shutdown]
    );
}

#[test]
fn cut_all_cuts_a_busy_connection() {
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let (entered_tx, entered) = mpsc::channel();
    let entered_tx = Mutex::new(entered_tx);
    let mut h = start_with(limits(), move |incoming| {
        let _ = entered_tx.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv_timeout(TIMEOUT);
        echo(incoming)
    });
    let busy = send(h.addr, b"GET /busy HTTP/1.1\r\n\r\n");
    entered.recv_timeout(TIMEOUT).unwrap();
    h.serving.stop();
    h.serving.cut_all();
    let mut buf = [0u8; 64];
    // The socket is shut: the answer written after the handler returns never arrives.
    release.send(()).unwrap();
    let read = (&busy).read(&mut buf).map_err(|e| e.kind());
    assert!(
        matches!(read, Ok(0) | Err(ErrorKind::ConnectionReset)),
        "{:?}",
        read
    );
    assert!(h.serving.wait_closed(TIMEOUT));
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
        let client = send(h.addr, request.as_bytes());
        let mut reader = buffered(&client);
        let answer = read_answer(&mut reader).unwrap();
        assert_eq!(
            answer.body_text(),
            format!("POST /outer {}", expected),
            "{:?}",
            framing
        );
        assert_eq!(answer.header("connection"), Some("close"));
        let (rest, ending) = read_to_end(&mut reader);
        assert!(
            ended(&ending) && rest.is_empty(),
            "{:?}: {:?}",
            framing,
            rest
        );
        assert_eq!(h.next_seen().url, "/outer");
    }
    assert!(h.seen.try_recv().is_err(), "a smuggled request was served");
}

#[test]
fn idle_connection_is_closed_after_idle_timeout() {
    let h = start(Limits {
        idle_timeout: Duration::from_millis(500),
        ..limits()
    });
    let client = send(h.addr, b"GET /once HTTP/1.1\r\n\r\n");
    let mut reader = buffered(&client);
    assert_eq!(read_answer(&mut reader).unwrap().status, 200);
    let started = Instant::now();
    assert_eq!(read_to_end(&mut reader).1, Ending::Closed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.next_close(), CloseReason::Idle);
}
