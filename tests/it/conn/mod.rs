//! The connection layer (`hookbox::conn`) on its own, over real sockets, with a trivial handler
//! that echoes what it was given ("METHOD URL BODY"). Each test sets short limits, so a deadline
//! that does not hold fails the test in seconds instead of hanging it. The same layer under the
//! whole server: `hostile`, `pipeline`.
//!
//! - `framing`: heads, bodies, chunked encoding, pipelining, `Expect`, smuggling.
//! - `deadlines`: the total header, body, write and idle deadlines.
//! - `lifecycle`: the connection limit, stop and cut, the accept loop's errors, threads.
//! - `budget`: the budget for request bodies held in memory.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hookbox::conn::{
    self, Arrival, Body, CloseReason, Incoming, Limits, Observer, Outgoing, Serving,
};

mod budget;
mod deadlines;
mod framing;
mod lifecycle;

use crate::support::{BOUND as TIMEOUT, Conn, Ending, Resp};

/// What the observer saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Opened,
    Refused,
    Closed(CloseReason),
    AcceptFailed,
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
    fn accept_failed(&self, _error: &std::io::Error) {
        let _ = self.0.lock().unwrap().send(Event::AcceptFailed);
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
        body_budget: 1024 * 1024,
    }
}

fn describe(body: &Body) -> String {
    match body {
        Body::Complete(bytes) => format!("complete {}", bytes.len()),
        Body::TooLarge => "too_large".to_owned(),
        Body::OverBudget => "over_budget".to_owned(),
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
        Body::OverBudget => 503,
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    start_on(listener, limits, answer)
}

fn start_on(
    listener: std::net::TcpListener,
    limits: Limits,
    answer: impl Fn(&Incoming) -> Outgoing + Send + Sync + 'static,
) -> Harness {
    let (events_tx, events) = mpsc::channel();
    let (seen_tx, seen) = mpsc::channel();
    let seen_tx = Mutex::new(seen_tx);
    let handler: conn::Handler = Arc::new(move |arrival: Arrival| match arrival {
        Arrival::Request(incoming) => {
            let outgoing = answer(&incoming);
            let _ = seen_tx.lock().unwrap().send(incoming);
            outgoing
        }
        Arrival::Refused { status, .. } => conn::plain(status),
    });
    let observer = Arc::new(Recorder(Mutex::new(events_tx)));
    let serving = conn::serve(listener, limits, handler, observer).unwrap();
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

/// Connects and writes `bytes` at once.
fn send(addr: SocketAddr, bytes: &[u8]) -> Conn {
    let mut conn = Conn::open(addr);
    assert!(
        conn.send(bytes),
        "the server closed before taking the request"
    );
    conn
}

/// The next response, interim `1xx` included (so an unexpected `100 Continue` fails the test),
/// within `TIMEOUT`.
fn next_answer(conn: &mut Conn) -> Resp {
    conn.next_interim(TIMEOUT).resp("an answer")
}

/// Sends `bytes` one every `gap` on its own thread (until the server cuts it or `TIMEOUT`).
fn trickle(conn: &Conn, bytes: &'static [u8], gap: Duration) -> thread::JoinHandle<()> {
    let mut stream = conn.stream.try_clone().unwrap();
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
