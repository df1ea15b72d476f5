//! One test per row of FORK.md's table of older patches, through upstream's own `Server` API over
//! real sockets. Each test says what upstream tiny_http 0.12.0 did and would fail against it.
//! Two tests change process-wide state (the descriptor limit, the logger): each runs itself again
//! in a child process of this test binary, so the rest of the suite never sees that state.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Response, Server};

mod wire;
use wire::{ended, read_answer, read_to_end, send, Ending};

/// What the application thread saw: a request's URL, or an error from `recv`.
type Seen = Receiver<Result<String, String>>;

/// A server on a fresh loopback port whose application thread answers every request "ok" (or
/// hands it to `handle`), reporting each URL (or `recv` error) on the returned channel. The
/// thread ends by itself after 30 s.
fn start_with(
    server: Server,
    handle: impl Fn(tiny_http::Request) + Send + 'static,
) -> (Arc<Server>, SocketAddr, Seen) {
    let addr = server.server_addr().to_ip().expect("an IP listener");
    let server = Arc::new(server);
    let (seen_tx, seen) = mpsc::channel();
    let app = Arc::clone(&server);
    thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            match app.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(request)) => {
                    let _ = seen_tx.send(Ok(request.url().to_owned()));
                    handle(request);
                }
                Ok(None) => {}
                Err(error) => {
                    let _ = seen_tx.send(Err(error.to_string()));
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    (server, addr, seen)
}

fn answer_ok(request: tiny_http::Request) {
    let _ = request.respond(Response::from_string("ok"));
}

fn start() -> (Arc<Server>, SocketAddr, Seen) {
    start_with(Server::http("127.0.0.1:0").unwrap(), answer_ok)
}

/// Every URL the application saw within `wait`.
fn urls_seen(seen: &Seen, wait: Duration) -> Vec<String> {
    let end = Instant::now() + wait;
    let mut urls = Vec::new();
    while let Ok(item) = seen.recv_timeout(end.saturating_duration_since(Instant::now())) {
        urls.push(item.unwrap_or_else(|error| format!("recv error: {}", error)));
    }
    urls
}

/// A plain GET on a new connection is answered 200 "ok": the server still serves.
fn assert_serves(addr: SocketAddr) {
    let mut client = send(addr, b"GET /after HTTP/1.1\r\nConnection: close\r\n\r\n");
    let answer = read_answer(&mut BufReader::new(&mut client)).expect("an answer");
    assert_eq!((answer.status, answer.body_text().as_str()), (200, "ok"));
}

const CHILD: &str = "TINY_HTTP_PATCHES_CHILD";

/// For a test that must change process-wide state. In the test process: runs this test binary
/// again with only test `name`, in a child process, waits for it (60 s at most), asserts it ran
/// that one test and passed, and returns false. In that child: returns true (run the body).
fn in_child(name: &str) -> bool {
    if std::env::var_os(CHILD).as_deref() == Some(OsStr::new(name)) {
        return true;
    }
    let log = std::env::temp_dir().join(format!("tiny_http-{}-{}.log", name, std::process::id()));
    let output = File::create(&log).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, name)
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output)
        .spawn()
        .expect("start the child test process");
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let ran = text.contains("test result: ok. 1 passed");
    assert!(
        status.is_some_and(|s| s.success()) && ran,
        "child test {} failed ({:?}):\n{}",
        name,
        status,
        text
    );
    false
}

/// `src/util/equal_reader.rs`: upstream's `EqualReader::drop` drained an unread body with
/// `vec![0; remaining]`, so dropping a request that announced `Content-Length: 10^18` asked for
/// an exabyte and aborted the whole process. Now the drain gives up past 1 MiB (and the
/// connection closes, see `abandoned_body_closes_the_connection`).
#[test]
fn huge_content_length_dropped_unanswered_does_not_abort() {
    let (_server, addr, seen) = start_with(Server::http("127.0.0.1:0").unwrap(), drop);
    let mut client = send(
        addr,
        b"POST /huge HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\nabc",
    );
    let mut reader = BufReader::new(client.try_clone().unwrap());
    // A dropped request is answered 500 by `Request::drop`; then the body is dropped.
    let answer = read_answer(&mut reader).expect("the 500 of a dropped request");
    assert_eq!(answer.status, 500);
    // What follows on that connection is the rest of the abandoned body, not a request.
    client.write_all(b"GET /smuggled HTTP/1.1\r\n\r\n").unwrap();
    let (rest, ending) = read_to_end(&mut reader);
    assert!(ended(&ending), "the connection stays open");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    drop(client);
    // The process is alive: another server in it still answers.
    let (_other, other_addr, _) = start();
    assert_serves(other_addr);
    assert_eq!(urls_seen(&seen, Duration::from_millis(200)), ["/huge"]);
}

/// `src/client.rs`, line length: upstream grew the request line and each header line without
/// limit (one endless line exhausts memory) and served a 20 KiB header. Now a line over 16 KiB
/// ends the connection unanswered; 15 KiB still passes.
#[test]
fn lines_over_16_kib_are_refused() {
    let (_server, addr, seen) = start();
    let long = "a".repeat(20 * 1024);
    for request in [
        format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", long),
        format!("GET /{} HTTP/1.1\r\n\r\n", long),
    ] {
        let mut client = send(addr, request.as_bytes());
        let (bytes, ending) = read_to_end(&mut client);
        assert!(ended(&ending), "a 20 KiB line was not refused");
        assert!(
            !bytes.starts_with(b"HTTP/1.1 200"),
            "a 20 KiB line was served"
        );
    }
    let fits = format!(
        "GET /fits HTTP/1.1\r\nX-Long: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(15 * 1024)
    );
    let mut client = send(addr, fits.as_bytes());
    let answer = read_answer(&mut BufReader::new(&mut client)).unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(urls_seen(&seen, Duration::from_millis(200)), ["/fits"]);
}

/// `src/client.rs`, header count: upstream accepted any number of header lines. Now more than
/// 100 get a 400 and the connection closes; exactly 100 pass.
#[test]
fn more_than_100_headers_are_refused() {
    let (_server, addr, seen) = start();
    let request = |count: usize, url: &str| {
        let headers: String = (0..count).map(|i| format!("X-{}: v\r\n", i)).collect();
        format!(
            "GET {} HTTP/1.1\r\n{}Connection: close\r\n\r\n",
            url, headers
        )
    };
    // 100 headers beside `Connection`: 101 lines.
    let mut client = send(addr, request(100, "/refused").as_bytes());
    let mut reader = BufReader::new(&mut client);
    assert_eq!(read_answer(&mut reader).unwrap().status, 400);
    assert!(ended(&read_to_end(&mut reader).1));

    let mut client = send(addr, request(99, "/fits").as_bytes());
    assert_eq!(
        read_answer(&mut BufReader::new(&mut client))
            .unwrap()
            .status,
        200
    );
    assert_eq!(urls_seen(&seen, Duration::from_millis(200)), ["/fits"]);
}

/// `src/lib.rs`, accept loop: upstream pushed the first `accept` error to `recv()` and ended the
/// accept thread, dropping the listener: a live process that accepted nothing. A receive timeout
/// on the listener makes `accept` fail with `WouldBlock` every 200 ms; the loop must go on.
/// (The EMFILE case: `running_out_of_descriptors_does_not_end_the_accept_loop`.)
#[test]
fn accept_errors_do_not_end_the_accept_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let server = Server::from_listener(listener, None).unwrap();
    let (_server, addr, seen) = start_with(server, answer_ok);
    // Several accept timeouts pass; upstream reports the first one here and stops accepting.
    let errors = urls_seen(&seen, Duration::from_millis(700));
    assert!(errors.is_empty(), "{:?}", errors);
    assert_serves(addr);
}

/// `src/lib.rs` and `src/util/refined_tcp_stream.rs`, out of descriptors: upstream's accept loop
/// ended at an EMFILE from `accept`, and panicked (ending it too) at an EMFILE from
/// `try_clone().unwrap()` on a new socket. Run in a child process with a lowered RLIMIT_NOFILE:
/// with every descriptor taken, a pending connection makes `accept` fail; with one free, the
/// `accept` succeeds and the clone fails; afterwards, with descriptors back, the server serves.
#[test]
fn running_out_of_descriptors_does_not_end_the_accept_loop() {
    if !in_child("running_out_of_descriptors_does_not_end_the_accept_loop") {
        return;
    }
    use rlimit::Resource;
    use socket2::{Domain, SockAddr, Socket, Type};

    let (_server, addr, seen) = start();
    // Made while descriptors remain; connecting it later needs none.
    let pending = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    pending.set_read_timeout(Some(wire::TIMEOUT)).unwrap();
    let (soft, hard) = rlimit::getrlimit(Resource::NOFILE).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    rlimit::setrlimit(Resource::NOFILE, open + 16, hard).unwrap();
    let mut hog = Vec::new();
    let full = loop {
        match File::open("/dev/null") {
            Ok(file) => hog.push(file),
            Err(error) => break error,
        }
        assert!(hog.len() < 1000, "the descriptor limit did not apply");
    };
    assert_eq!(full.raw_os_error(), Some(24), "{}", full); // EMFILE

    // No descriptor: `accept` fails (again and again) with a connection pending.
    pending.connect(&SockAddr::from(addr)).unwrap();
    let errors = urls_seen(&seen, Duration::from_millis(300));
    assert!(errors.is_empty(), "{:?}", errors);

    // One descriptor: `accept` takes it, duplicating the socket fails, the connection is dropped.
    drop(hog.pop());
    let mut buf = [0u8; 16];
    let read = (&pending).read(&mut buf);
    assert_eq!(
        read.map_err(|e| e.kind()),
        Ok(0),
        "the pending connection was not accepted and dropped"
    );
    drop(pending);

    drop(hog);
    rlimit::setrlimit(Resource::NOFILE, soft, hard).unwrap();
    assert_serves(addr);
    assert_eq!(urls_seen(&seen, Duration::from_millis(100)), ["/after"]);
}

/// `src/client.rs`, HTTP/2 request line: upstream wrote the 505 through a second writer from the
/// connection's sequence, which waits until the request's own writer is dropped; the request was
/// still held, so the connection thread deadlocked, never answered and leaked the socket. Now the
/// 505 is written through the request and the connection closes.
#[test]
fn http2_request_line_gets_505_and_the_connection_ends() {
    let (_server, addr, seen) = start();
    let mut client = send(addr, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    let mut reader = BufReader::new(&mut client);
    let answer = read_answer(&mut reader).expect("a 505, not a deadlock");
    assert_eq!(answer.status, 505);
    assert!(
        ended(&read_to_end(&mut reader).1),
        "the connection stays open"
    );
    assert!(urls_seen(&seen, Duration::from_millis(200)).is_empty());
    assert_serves(addr);
}

/// `src/client.rs`, ambiguous length: upstream took an unparsable `Content-Length` as no body and
/// the first of several as the length, and let `Transfer-Encoding` override `Content-Length`; in
/// each case a request hidden in the body was served next (smuggling, behind a proxy that framed
/// it the other way). Now each is a 400 and the connection closes; nothing reaches the application.
#[test]
fn ambiguous_content_length_is_refused_not_smuggled() {
    let (_server, addr, seen) = start();
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    for head in [
        "Content-Length: 5x\r\n".to_owned(),
        format!(
            "Content-Length: 0\r\nContent-Length: {}\r\n",
            smuggled.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            smuggled.len() + 5
        ),
    ] {
        let body = if head.starts_with("Transfer") {
            format!("0\r\n\r\n{}", smuggled)
        } else {
            smuggled.to_owned()
        };
        let request = format!("POST /outer HTTP/1.1\r\nHost: x\r\n{}\r\n{}", head, body);
        let mut client = send(addr, request.as_bytes());
        let mut reader = BufReader::new(&mut client);
        let answer = read_answer(&mut reader).unwrap();
        assert_eq!(answer.status, 400, "{:?}", head);
        let (rest, ending) = read_to_end(&mut reader);
        assert!(ended(&ending), "{:?}: the connection stays open", head);
        assert!(
            rest.is_empty(),
            "{:?}: {:?}",
            head,
            String::from_utf8_lossy(&rest)
        );
    }
    assert!(urls_seen(&seen, Duration::from_millis(200)).is_empty());
}

/// `src/lib.rs`, accept thread panic: upstream's accept thread died silently on a panic (the
/// listener closed, `recv()` blocked for ever). Now `recv()` reports it. The panic is injected by
/// a logger that panics on the accept thread's first log line; a process has one logger, so this
/// runs in a child process.
#[test]
fn accept_thread_panic_reaches_recv() {
    if !in_child("accept_thread_panic_reaches_recv") {
        return;
    }
    struct PanicsOnAcceptStart;
    impl log::Log for PanicsOnAcceptStart {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if record.args().to_string() == "Running accept thread" {
                panic!("injected into the accept thread");
            }
        }
        fn flush(&self) {}
    }
    log::set_logger(&PanicsOnAcceptStart).unwrap();
    log::set_max_level(log::LevelFilter::Debug);
    let server = Server::http("127.0.0.1:0").unwrap();
    match server.recv_timeout(wire::TIMEOUT) {
        Err(error) => assert!(error.to_string().contains("panicked"), "{}", error),
        Ok(request) => panic!("recv gave {:?}, not the accept thread's panic", request),
    }
}

/// `src/util/task_pool.rs`: upstream queued a new connection whenever *any* pool thread was idle,
/// so a burst queued more connections than idle threads, and the extra ones were not read until
/// another connection closed. Here 32 keep-alive connections arrive at once at a pool whose
/// threads are idle, and each must be answered while all stay open.
#[test]
fn a_burst_of_connections_is_served_at_once() {
    let (_server, addr, _seen) = start();
    // Warm-up: the pool's threads have started and gone idle, waiting for work.
    assert_serves(addr);
    let mut clients: Vec<_> = (0..32).map(|_| wire::connect(addr)).collect();
    for client in &mut clients {
        client
            .write_all(b"GET /burst HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let answer = read_answer(&mut BufReader::new(client));
        assert_eq!(
            answer.map(|a| a.status).map_err(|e| e.kind()),
            Ok(200),
            "connection {} of the burst",
            i
        );
    }
}

/// `src/util/unread_body.rs` and friends: a body dropped before its end left the rest of it on
/// the socket, and the connection read that as the next request: upstream never drained a
/// chunked body, and the bounded drain (first row) gives up on a `Content-Length` body over
/// 1 MiB. A request hidden there was served. Now the connection closes instead.
#[test]
fn abandoned_body_closes_the_connection() {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    // The application reads the first three bytes of each body, then answers.
    let read_three = |mut request: tiny_http::Request| {
        let mut three = [0u8; 3];
        let _ = request.as_reader().read_exact(&mut three);
        let _ = request.respond(Response::from_string("ok"));
    };
    let (_server, addr, seen) = start_with(Server::http("127.0.0.1:0").unwrap(), read_three);
    let chunk = format!("abc{}", smuggled);
    let chunked = format!(
        "POST /chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        chunk.len(),
        chunk
    );
    // Announces 2 MiB; sends three bytes and a request.
    let long = format!(
        "POST /long HTTP/1.1\r\nContent-Length: {}\r\n\r\nabc{}",
        2 * 1024 * 1024,
        smuggled
    );
    for request in [chunked, long] {
        let mut client = send(addr, request.as_bytes());
        let mut reader = BufReader::new(&mut client);
        assert_eq!(read_answer(&mut reader).unwrap().status, 200);
        let (rest, ending) = read_to_end(&mut reader);
        assert!(ended(&ending), "the connection stays open");
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }
    assert_eq!(
        urls_seen(&seen, Duration::from_millis(200)),
        ["/chunked", "/long"]
    );
}

#[test]
fn read_to_end_reports_an_open_connection() {
    // The helper the tests above rely on to tell "closed" from "still open".
    let (_server, addr, _seen) = start();
    let mut client = send(addr, b"GET / HTTP/1.1\r\n\r\n");
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let (bytes, ending) = read_to_end(&mut client);
    assert!(bytes.starts_with(b"HTTP/1.1 200"));
    assert_eq!(ending, Ending::Open);
}
