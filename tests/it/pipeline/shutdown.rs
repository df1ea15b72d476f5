//! Shutdown with a request in flight.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::{Bounded, body_of};
use crate::support::{BOUND, Conn, sign};

/// `shutdown()` with a slow body in flight: new connections are refused at once, the in-flight
/// request is answered with `Connection: close`, and shutdown returns within the grace period.
#[test]
fn shutdown_refuses_new_connections_and_answers_in_flight_with_connection_close() {
    let grace = Duration::from_secs(5);
    let mut server = Bounded::start(|config| {
        config.read_timeout = Duration::from_secs(10);
        config.shutdown_grace = grace;
    });
    let addr = server.addr;
    let body = body_of("in-flight-1");
    let (first, rest) = body.split_at(body.len() / 2);
    let mut in_flight = Conn::open(addr);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Signature: {}\r\nX-Request-ID: rid-flight\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        sign(&body),
        body.len()
    );
    assert!(in_flight.send(head.as_bytes()));
    // `100 Continue`: the server has read the head and is reading the body, so the request is
    // in flight (not an idle connection that shutdown may cut) when the stop begins.
    in_flight.expect_continue();
    assert!(in_flight.send(first));

    let server_handle = server.0.take().unwrap();
    let (done, stopped) = mpsc::channel();
    let stop_started = Instant::now();
    thread::spawn(move || {
        drop(server_handle.stop());
        let _ = done.send(stop_started.elapsed());
    });

    // The port closes at once: a connect is refused within a second of the stop beginning.
    // Connections accepted before that are idle ones, which shutdown cuts.
    let refused_at = loop {
        match Conn::try_open(addr, Duration::from_millis(200)) {
            Err(_) => break stop_started.elapsed(),
            Ok(early) => drop(early),
        }
        assert!(
            stop_started.elapsed() < Duration::from_secs(1),
            "connections still accepted {:?} into shutdown",
            stop_started.elapsed()
        );
        thread::yield_now();
    };
    assert!(
        Conn::try_open(addr, Duration::from_millis(200)).is_err(),
        "a connection was accepted after one was refused ({refused_at:?} into shutdown)"
    );

    assert!(in_flight.send(rest));
    let resp = in_flight.next(BOUND).resp("the in-flight webhook");
    assert_eq!(
        (resp.status, resp.header("x-request-id")),
        (200, Some("rid-flight")),
        "{}",
        resp.text()
    );
    assert!(
        resp.closes(),
        "in-flight answer during shutdown without `Connection: close`: {:?}",
        resp.headers
    );
    assert!(
        in_flight.closed_within(Duration::from_secs(1)),
        "still open after its last answer"
    );
    let took = stopped.recv_timeout(grace + Duration::from_secs(1));
    assert!(
        took.is_ok(),
        "shutdown did not return within the grace period ({grace:?})"
    );
}
