//! Every deadline is total: a client that sends (or reads) a byte at a time does not restart it.

use super::*;

#[test]
fn header_deadline_is_total() {
    let h = start(Limits {
        header_timeout: Duration::from_secs(1),
        ..limits()
    });
    let mut client = Conn::open(h.addr);
    let started = Instant::now();
    // A head that never ends, a byte every 100 ms: each byte would restart a per-read timeout.
    let writer = trickle(
        &client,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa",
        Duration::from_millis(100),
    );
    let ending = client.ending(TIMEOUT);
    let bytes = client.received();
    let took = started.elapsed();
    assert!(
        ending.ended() && bytes.is_empty(),
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
    let mut client = Conn::open(h.addr);
    let started = Instant::now();
    // Not synchronisation: the client's silence is the attack (a head that starts late).
    thread::sleep(Duration::from_millis(700));
    let writer = trickle(
        &client,
        b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaa",
        Duration::from_millis(100),
    );
    let ending = client.ending(TIMEOUT);
    let took = started.elapsed();
    assert!(ending.ended(), "{:?}", ending);
    assert!(took < Duration::from_millis(1500), "cut after {:?}", took);
    assert_eq!(h.next_close(), CloseReason::HeaderTimeout);
    writer.join().unwrap();

    // After a first request, a pause longer than the header timeout is an idle wait, and the
    // next head gets its own full second from its first byte.
    let mut client = Conn::open(h.addr);
    assert!(client.send(b"GET /a HTTP/1.1\r\n\r\n"));
    assert_eq!(next_answer(&mut client).status, 200);
    // Not synchronisation: the client's pause is what is tested (longer than the header timeout).
    thread::sleep(Duration::from_millis(1300));
    assert!(client.send(b"GET /b HTTP/1.1\r\n\r\n"));
    assert_eq!(next_answer(&mut client).status, 200);
}

#[test]
fn body_deadline_is_total() {
    let h = start(Limits {
        body_timeout: Duration::from_secs(1),
        ..limits()
    });
    let mut client = send(
        h.addr,
        b"POST /slow HTTP/1.1\r\nContent-Length: 100\r\n\r\n",
    );
    let started = Instant::now();
    let writer = trickle(&client, b"x", Duration::from_millis(100));
    let answer = next_answer(&mut client);
    let took = started.elapsed();
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (408, "POST /slow timed_out")
    );
    assert_eq!(h.next_seen().body, Body::TimedOut);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "answered after {:?}",
        took
    );
    assert_eq!(answer.header("connection"), Some("close"));
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
fn idle_connection_is_closed_after_idle_timeout() {
    let h = start(Limits {
        idle_timeout: Duration::from_millis(500),
        ..limits()
    });
    let mut client = send(h.addr, b"GET /once HTTP/1.1\r\n\r\n");
    assert_eq!(next_answer(&mut client).status, 200);
    let started = Instant::now();
    assert_eq!(client.ending(TIMEOUT), Ending::Closed);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.next_close(), CloseReason::Idle);
}
