//! Signals: SIGTERM, SIGINT and SIGHUP stop the server gracefully (in-flight requests answered,
//! the database closed cleanly, the last line `stopped`, exit 0), within the grace period.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::harness::*;
use crate::support::{BOUND, Conn, TempDir, message, sign};

fn graceful_stop(signal: &str) {
    let dir = TempDir::new();
    let launch = Launch::new(dir.path());
    let (proc, addr) = launch.start();
    let body = message("sig-1", FROM, TS, Some("before the signal"));
    let response = post_signed(addr, &body, &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    // The 200 is in the WAL, not yet in the main file: only a clean close checkpoints it.
    let wal = dir.path().join("test.db-wal");
    assert!(std::fs::metadata(&wal).is_ok_and(|meta| meta.len() > 0));

    let run = proc.stop(signal);
    assert_eq!(run.code, Some(0), "SIG{signal}: {}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines.iter().any(|json| json["msg"] == "shutting down"
            && json["name"] == format!("SIG{signal}")
            && json["level"] == "INFO"),
        "the signal should be logged by name: {}",
        run.describe()
    );
    assert_eq!(
        lines.last().map(|json| json["msg"].clone()),
        Some(Value::from("stopped")),
        "the last line should be \"stopped\": {}",
        run.describe()
    );

    // Closed cleanly: the last connection checkpoints and removes the WAL, and the file is sound.
    let db = dir.path().join("test.db");
    assert!(
        std::fs::metadata(&wal).map_or(true, |meta| meta.len() == 0),
        "the WAL was left with unflushed frames: the database was not closed cleanly"
    );
    assert_eq!(stored_rows(&db), 1);

    // And the binary itself reopens it with the answered message in place.
    let (proc, addr) = launch.start();
    let listed = get(addr, "/messages").json();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["data"][0]["message_id"], "sig-1");
    assert_eq!(listed["data"][0]["text"], "before the signal");
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
}

#[test]
fn sigterm_exits_0_after_storing_what_was_answered() {
    graceful_stop("TERM");
}

#[test]
fn sigint_exits_0_after_storing_what_was_answered() {
    graceful_stop("INT");
}

/// SIGHUP (a closed terminal, or a habit of "reload") is a graceful stop like SIGTERM: logged,
/// everything acknowledged stored, exit 0 — never the default action's silent exit 129.
#[test]
fn sighup_exits_0_after_storing_what_was_answered() {
    graceful_stop("HUP");
}

#[test]
fn sigterm_lets_an_in_flight_request_finish() {
    let dir = TempDir::new();
    let (mut proc, addr) = Launch::new(dir.path()).start();
    let body = message("inflight-1", FROM, TS, Some("in flight"));
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\n\
         X-Request-ID: rid-inflight\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\
         Connection: close\r\n\r\n",
        sign(body.as_bytes()),
        body.len()
    );
    let mut stream = Conn::open(addr);
    assert!(stream.send(head.as_bytes()));
    // The server sends "100 Continue" once it has read the head and waits for the body: from
    // here on the request is in flight, and the signal arrives in the middle of it.
    stream.expect_continue();
    proc.signal("TERM");
    proc.wait_for("the shutdown to begin", |json| {
        json["msg"]
            .as_str()
            .is_some_and(|msg| msg.contains("shutting down"))
    });

    assert!(stream.send(body.as_bytes()));
    let response = stream.next(BOUND).resp("the in-flight webhook");
    assert_eq!(response.status, 200, "{}", response.text());

    let run = proc.finish();
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    assert_eq!(
        lines.last().unwrap()["msg"],
        "stopped",
        "{}",
        run.describe()
    );
    let logged = lines
        .iter()
        .find(|json| json["request_id"] == "rid-inflight");
    let logged =
        logged.unwrap_or_else(|| panic!("in-flight request not logged: {}", run.describe()));
    assert_eq!(
        (&logged["status"], &logged["result"]),
        (&200.into(), &"created".into())
    );
    assert_eq!(stored_rows(&dir.path().join("test.db")), 1);
}

#[test]
fn sigterm_right_after_start_still_exits_0() {
    let dir = TempDir::new();
    let (proc, _addr) = Launch::new(dir.path()).start();
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(run.json_lines().last().unwrap()["msg"], "stopped");
}

/// SIGTERM while a keep-alive connection has a request in flight (its body half sent) and another
/// keep-alive connection sits idle: the request is answered with `Connection: close`, the process
/// exits 0 within the grace period, and every acknowledged message is stored.
#[test]
fn sigterm_answers_a_keep_alive_request_in_flight_with_connection_close() {
    let grace = Duration::from_secs(5);
    let dir = TempDir::new();
    let (mut proc, addr) = Launch::new(dir.path())
        .env("HOOKBOX_SHUTDOWN_GRACE_SECS", "5")
        .start();
    let keep_alive =
        |target: &str| format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes();
    let mut idle = Conn::open(addr);
    assert!(idle.send(&keep_alive("/health/live")));
    let first = idle
        .next(Duration::from_secs(5))
        .answered()
        .expect("idle: first answer");
    assert_eq!(first.status, 200);

    let mut busy = Conn::open(addr);
    let acked = message("keep-1", FROM, TS, Some("acknowledged before the signal"));
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(acked.as_bytes()),
        acked.len()
    );
    assert!(busy.send(head.as_bytes()) && busy.send(acked.as_bytes()));
    let answered = busy.next(Duration::from_secs(5)).resp("the first webhook");
    assert_eq!(answered.status, 200, "{}", answered.text());

    // The same keep-alive connection: a second webhook, its body half sent when the signal comes.
    let body = message("keep-2", FROM, TS, Some("in flight at SIGTERM"));
    let (first_half, second_half) = body.as_bytes().split_at(body.len() / 2);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\nX-Request-ID: rid-keep-2\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        sign(body.as_bytes()),
        body.len()
    );
    assert!(busy.send(head.as_bytes()));
    // The handshake: "100 Continue" says the server has the head and is reading the body, so
    // the request is in flight when the signal comes (no sleep standing in for that).
    busy.expect_continue();
    assert!(busy.send(first_half));
    let signalled = Instant::now();
    proc.signal("TERM");
    proc.wait_for("the shutdown to begin", |json| {
        json["msg"]
            .as_str()
            .is_some_and(|msg| msg.contains("shutting down"))
    });
    assert!(busy.send(second_half));
    let in_flight = busy
        .next(Duration::from_secs(5))
        .answered()
        .expect("the in-flight request was not answered");
    assert_eq!(in_flight.status, 200, "{}", in_flight.text());
    assert!(
        in_flight
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close")),
        "in-flight answer during shutdown without `Connection: close`: {:?}",
        in_flight.headers
    );

    let deadline = signalled + grace + Duration::from_secs(1);
    let status = loop {
        if let Some(status) = proc.child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        status.is_some(),
        "still running {:?} after SIGTERM (grace {grace:?})",
        signalled.elapsed()
    );
    let run = proc.finish();
    assert_eq!(run.code, Some(0), "{}", run.describe());
    drop((idle, busy));
    assert_eq!(stored_rows(&dir.path().join("test.db")), 2);
}

/// Issue 7's packet (a signed webhook and eight GETs in one write) followed by SIGTERM: every
/// answer arrives, and the process exits 0 within the grace period (before the fix it hung, then exited 1).
#[test]
fn sigterm_after_the_pipelined_packet_exits_0_within_the_grace_period() {
    let grace = Duration::from_secs(3);
    let dir = TempDir::new();
    let (mut proc, addr) = Launch::new(dir.path())
        .env("HOOKBOX_SHUTDOWN_GRACE_SECS", "3")
        .start();
    let body = message("packet-1", FROM, TS, None);
    let mut packet = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\nContent-Length: {}\r\n\r\n{body}",
        sign(body.as_bytes()),
        body.len()
    );
    for _ in 0..8 {
        packet.push_str(&format!(
            "GET /health/live HTTP/1.1\r\nHost: {addr}\r\n\r\n"
        ));
    }
    let mut stream = Conn::open(addr);
    assert!(stream.send(packet.as_bytes()));
    let mut answered = 0;
    while answered < 9 {
        match stream.next(Duration::from_secs(3)).answered() {
            Some(resp) => {
                assert_eq!(resp.status, 200, "answer {answered}: {}", resp.text());
                answered += 1;
            }
            None => break,
        }
    }
    let signalled = Instant::now();
    proc.signal("TERM");
    let deadline = signalled + grace + Duration::from_secs(1);
    let exited = loop {
        if proc.child.try_wait().expect("try_wait").is_some() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stream);
    let run = proc.finish();
    assert_eq!(
        answered,
        9,
        "answers to the pipelined packet: {}",
        run.describe()
    );
    assert!(exited, "still running {grace:?} + 1 s after SIGTERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert_eq!(stored_rows(&dir.path().join("test.db")), 1);
}
