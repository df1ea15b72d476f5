//! Connections opened, refused, stopped and cut; the accept loop itself.

use super::*;

#[test]
fn max_connections_refusal_is_a_canned_503() {
    let h = start(Limits {
        max_connections: 1,
        ..limits()
    });
    let mut first = Conn::open(h.addr);
    assert_eq!(h.next_event(|_| true), Event::Opened);
    let mut refused = Conn::open(h.addr);
    let answer = next_answer(&mut refused);
    assert_eq!(answer.status, 503);
    assert_eq!(answer.header("retry-after"), Some("1"));
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(
        answer.text(),
        "{\"detail\":\"too many open connections, retry later\"}"
    );
    assert!(refused.ending(TIMEOUT).ended());
    assert_eq!(h.next_event(|_| true), Event::Refused);
    // The open one is still served.
    assert!(first.send(b"GET /first HTTP/1.1\r\n\r\n"));
    assert_eq!(next_answer(&mut first).status, 200);
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
    let mut waiting = Conn::open(h.addr);
    assert_eq!(h.next_event(|_| true), Event::Opened);
    let mut busy = send(h.addr, b"GET /busy HTTP/1.1\r\n\r\n");
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
    let ending = waiting.ending(TIMEOUT);
    let bytes = waiting.received();
    assert!(
        ending.ended() && bytes.is_empty(),
        "{:?} {:?}",
        ending,
        bytes
    );
    assert!(stopping.elapsed() < Duration::from_secs(2));
    // The busy one finishes its request and closes.
    assert!(!h.serving.wait_closed(Duration::from_millis(50)));
    release.send(()).unwrap();
    let answer = next_answer(&mut busy);
    assert_eq!(
        (answer.status, answer.text().as_str()),
        (200, "GET /busy complete 0")
    );
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(busy.ending(TIMEOUT), Ending::Closed);
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
    let read = (&busy.stream).read(&mut buf).map_err(|e| e.kind());
    assert!(
        matches!(read, Ok(0) | Err(ErrorKind::ConnectionReset)),
        "{:?}",
        read
    );
    assert!(h.serving.wait_closed(TIMEOUT));
}

/// A plain request on a fresh connection is answered 200.
fn assert_serves(addr: std::net::SocketAddr) {
    let mut client = send(
        addr,
        b"GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let answer = next_answer(&mut client);
    assert_eq!(answer.status, 200);
}

/// Upstream tiny_http ended its accept thread at the first `accept` error, leaving a live process
/// that accepted nothing. A receive timeout on the listener makes `accept` fail with `WouldBlock`
/// every 100 ms; the loop must go on. (Out of descriptors: the next test.)
#[test]
fn accept_errors_do_not_end_the_accept_loop() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let h = start_on(listener, limits(), echo);
    // Not synchronisation: the attack is time itself (four accept timeouts). A timeout is not
    // reported to the observer (it is not a failure), so there is no event to wait on instead.
    thread::sleep(Duration::from_millis(450));
    assert_serves(h.addr);
}

/// For a test that must change process-wide state. In the test process: runs this test binary
/// again with only test `name`, in a child process, waits for it (60 s at most), asserts it ran
/// that one test and passed, and returns false. In that child: returns true (run the body).
fn in_child(name: &str) -> bool {
    const CHILD: &str = "HOOKBOX_TEST_CHILD";
    if std::env::var_os(CHILD).as_deref() == Some(std::ffi::OsStr::new(name)) {
        return true;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the child test process");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && text.contains("test result: ok. 1 passed"),
        "child test {name} failed ({:?}):\n{text}",
        output.status
    );
    false
}

/// Out of descriptors, `accept` fails with EMFILE while a connection is pending: the failure is
/// reported, the loop backs off and goes on, and once descriptors are back that very connection
/// is served. Run in a child process, since it lowers RLIMIT_NOFILE.
#[test]
fn running_out_of_descriptors_does_not_end_the_accept_loop() {
    if !in_child("conn::lifecycle::running_out_of_descriptors_does_not_end_the_accept_loop") {
        return;
    }
    use rlimit::Resource;
    use socket2::{Domain, SockAddr, Socket, Type};

    let h = start(limits());
    // Made while descriptors remain; connecting it later needs none.
    let pending = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    pending.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, open + 16, hard).unwrap();
    let mut hog = Vec::new();
    let full = loop {
        match std::fs::File::open("/dev/null") {
            Ok(file) => hog.push(file),
            Err(error) => break error,
        }
        assert!(hog.len() < 1000, "the descriptor limit did not apply");
    };
    assert_eq!(full.raw_os_error(), Some(24), "{full}"); // EMFILE

    pending.connect(&SockAddr::from(h.addr)).unwrap();
    h.next_event(|event| *event == Event::AcceptFailed);

    drop(hog);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    let mut pending = Conn::from_stream(pending.into());
    assert!(pending.send(b"GET /pending HTTP/1.1\r\nHost: x\r\n\r\n"));
    let answer = next_answer(&mut pending);
    assert_eq!(answer.text(), "GET /pending complete 0");
    assert_serves(h.addr);
}

/// Each connection gets its own thread at once: 32 keep-alive connections arriving together are
/// each answered while all stay open. (Upstream's pool queued a burst behind its idle threads,
/// and the extra connections were not read until another closed.)
#[test]
fn a_burst_of_connections_is_served_at_once() {
    let h = start(limits());
    let mut clients: Vec<_> = (0..32).map(|_| Conn::open(h.addr)).collect();
    for client in &mut clients {
        assert!(client.send(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n"));
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let seen = client.next_interim(TIMEOUT);
        assert_eq!(
            seen.status(),
            Some(200),
            "connection {i} of the burst: {seen:?}"
        );
    }
}

/// Connection threads are named, so `top -H` and profiles tell them from the accept loop and
/// the workers.
#[test]
fn connection_threads_are_named_conn() {
    let h = start_with(limits(), |incoming| {
        let names: Vec<String> = std::fs::read_dir("/proc/thread-self/..")
            .map(|tasks| {
                tasks
                    .filter_map(|task| task.ok())
                    .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
                    .collect()
            })
            .unwrap_or_default();
        let own = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
        let mut answer = echo(incoming);
        answer.body = format!(
            "{} {}",
            own.trim(),
            names.iter().any(|n| n.trim() == "accept")
        )
        .into_bytes();
        answer
    });
    let mut client = send(h.addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let answer = next_answer(&mut client);
    assert_eq!(answer.text(), "conn true");
}

/// A handler that panics on a connection's thread ends that connection (closed as `Error`), not
/// the thread's process, and the server goes on serving. The panic, with its backtrace when
/// RUST_BACKTRACE asks for one, runs on the connection thread's small stack.
#[test]
fn a_panicking_handler_ends_only_its_connection() {
    let h = start_with(limits(), |incoming| {
        if incoming.url == "/panic" {
            panic!("a handler bug");
        }
        echo(incoming)
    });
    let mut client = send(h.addr, b"GET /panic HTTP/1.1\r\nHost: x\r\n\r\n");
    let ending = client.ending(TIMEOUT);
    let answer = client.received();
    assert!(answer.is_empty(), "{answer:?}");
    assert!(ending.ended());
    assert_eq!(h.next_close(), CloseReason::Error);
    assert_serves(h.addr);
}
