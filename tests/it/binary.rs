//! The built executable, run as an operator runs it: configuration from the environment only,
//! exit codes, signals, and stdout as pure JSON lines.
//!
//! Every process is wrapped in `Proc`, which kills it on drop, so a failing assertion never leaves
//! a server behind. Nothing waits on a fixed sleep: tests wait for a log line (with a deadline),
//! for the process to exit (bounded poll), or for HTTP to answer (bounded poll). Assertions about
//! what is *absent* from stdout are made only after the process has exited and stdout is at EOF.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::support::{Resp, SECRET, TempDir, message, parse_response, request_bytes, sign};

/// Upper bound for anything a test waits on; generous for slow CI machines.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How a hookbox process is launched: working directory and a clean environment.
struct Launch {
    cwd: PathBuf,
    env: BTreeMap<String, String>,
}

impl Launch {
    /// Loopback, an OS-chosen port, `test.db` in `cwd`, `SECRET` configured.
    fn new(cwd: &Path) -> Launch {
        Launch {
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
        }
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATABASE_URL", "sqlite:///test.db")
        .env("WEBHOOK_SECRET", SECRET)
    }

    fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    fn clone_with(&self, name: &str, value: &str) -> Launch {
        Launch {
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
        .env(name, value)
    }

    fn unset(mut self, name: &str) -> Launch {
        self.env.remove(name);
        self
    }

    /// Starts the process; the environment is cleared first so the caller's shell cannot leak in.
    fn spawn(&self) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
            .current_dir(&self.cwd)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hookbox binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut raw = Vec::new();
                match reader.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                if raw.last() == Some(&b'\n') {
                    raw.pop();
                }
                // A line that is not UTF-8 is passed on as something that is surely not JSON.
                let line = String::from_utf8(raw).unwrap_or_else(|error| {
                    format!(
                        "<not UTF-8: {:?}>",
                        String::from_utf8_lossy(error.as_bytes())
                    )
                });
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        Proc {
            child,
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
        }
    }

    /// Spawns and waits for the `listening` line; returns the process and its address.
    fn start(&self) -> (Proc, SocketAddr) {
        let mut proc = self.spawn();
        let addr = proc.listening();
        (proc, addr)
    }

    /// Runs a process that is expected to exit by itself (startup errors) and collects everything.
    fn run_to_exit(&self) -> Finished {
        self.spawn().finish()
    }
}

/// A running hookbox process. Killed (and reaped) on drop.
struct Proc {
    child: Child,
    lines: Receiver<String>,
    /// Every stdout line received so far, in order.
    seen: Vec<String>,
    stderr: Option<JoinHandle<String>>,
}

/// What a process left behind once it exited.
struct Finished {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
}

impl Finished {
    /// Every stdout line parsed; panics (naming the line) if one is not a JSON object.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout.iter().map(|line| json_object(line)).collect()
    }

    fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

impl Proc {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The next stdout line, or `None` at EOF. Panics after `TIMEOUT`.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => {
                self.seen.push(line.clone());
                Some(line)
            }
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => panic!(
                "no stdout line within {TIMEOUT:?}; so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Reads stdout until a JSON line satisfies `wanted`; panics at EOF or on timeout.
    fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(line) = self.next_line(deadline) {
            let json = json_object(&line);
            if wanted(&json) {
                return json;
            }
        }
        let status = self.child.try_wait().ok().flatten();
        panic!(
            "stdout ended (exit status {status:?}) before {what}; stdout was:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the startup line and returns the address it names.
    fn listening(&mut self) -> SocketAddr {
        let line = self.wait_for("the \"listening\" line", |json| json["msg"] == "listening");
        let addr = line["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("\"listening\" line without a string addr: {line}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("addr {addr:?} is not a socket address: {e}"))
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system's `kill` command.
    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Reads stdout to EOF, waits (bounded) for the exit, and collects stdout and stderr.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + TIMEOUT;
        while self.next_line(deadline).is_some() {}
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {TIMEOUT:?} after closing stdout"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .map(|handle| handle.join().expect("stderr reader"))
            .unwrap_or_default();
        Finished {
            code: status.code(),
            stdout: std::mem::take(&mut self.seen),
            stderr,
        }
    }

    /// Sends `name` and waits for the process to end.
    fn stop(self, name: &str) -> Finished {
        self.signal(name);
        self.finish()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_object(line: &str) -> Value {
    let json: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    assert!(json.is_object(), "stdout line is not a JSON object: {line}");
    json
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, checked by shape (the value comes from the clock).
fn is_iso8601_utc(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digit_at = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let shape = b.len() >= 20
        && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
            .iter()
            .all(|&i| digit_at(i))
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[b.len() - 1] == b'Z';
    let fraction = &b[19.min(b.len())..b.len().saturating_sub(1)];
    shape
        && (fraction.is_empty()
            || (fraction.len() >= 2
                && fraction[0] == b'.'
                && fraction[1..].iter().all(u8::is_ascii_digit)))
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 client.

fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let bytes = request_bytes(addr, method, target, headers, body);
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(&bytes).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    parse_response(&response)
}

fn get(addr: SocketAddr, target: &str) -> Resp {
    send(addr, "GET", target, &[], b"")
}

/// POSTs `body` to /webhook signed with `SECRET`.
fn post_signed(addr: SocketAddr, body: &str, headers: &[(&str, &str)]) -> Resp {
    let signature = sign(body.as_bytes());
    let mut all = vec![("X-Signature", signature.as_str())];
    all.extend_from_slice(headers);
    send(addr, "POST", "/webhook", &all, body.as_bytes())
}

const TS: &str = "2025-01-15T10:00:00Z";
const FROM: &str = "+919876543210";

/// Rows in the `messages` table, read directly with SQLite; also checks the file's integrity.
fn stored_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open the database file");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{} is damaged", db.display());
    conn.query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
        .unwrap()
}

fn is_sqlite_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"SQLite format 3\0"))
}

/// A port that was free a moment ago, for the one test that cannot read it from the log.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// 1. Startup errors.

#[test]
fn config_errors_exit_2_with_a_json_line_naming_the_variable() {
    let canary = "startup-secret-canary-41d7";
    for (variable, value) in [
        ("DATABASE_URL", "mysql://x"),
        ("DATABASE_URL", "postgres://u:pw@h:port/db"),
        ("DATABASE_URL", "sqlite:x.db"),
        ("LOG_LEVEL", "loud"),
        ("PORT", "70000"),
        ("PORT", "http"),
        ("HOOKBOX_WORKERS", "0"),
        ("HOOKBOX_QUEUE_CAPACITY", "-1"),
        ("HOOKBOX_MAX_BODY_BYTES", "abc"),
        ("HOOKBOX_BUSY_TIMEOUT_MS", "soon"),
    ] {
        let dir = TempDir::new();
        let run = Launch::new(dir.path())
            .env("WEBHOOK_SECRET", canary)
            .env(variable, value)
            .run_to_exit();
        let context = format!("{variable}={value}\n{}", run.describe());
        assert_eq!(run.code, Some(2), "{context}");
        let lines = run.json_lines();
        let named = lines.iter().find(|json| json["variable"] == variable);
        let named = named.unwrap_or_else(|| panic!("no line names the variable: {context}"));
        assert_eq!(named["level"], "ERROR", "{context}");
        let msg = named["msg"].as_str().unwrap_or_default();
        assert!(
            msg.contains(variable),
            "msg should name {variable}: {context}"
        );
        assert!(
            lines.iter().all(|json| json["msg"] != "listening"),
            "{context}"
        );
        assert!(
            !run.stdout.join("\n").contains(canary) && !run.stderr.contains(canary),
            "the secret leaked: {context}"
        );
        assert!(
            !dir.path().join("test.db").exists(),
            "a config error must not touch the database: {context}"
        );
    }
}

#[test]
fn database_in_a_missing_directory_exits_1() {
    let dir = TempDir::new();
    let run = Launch::new(dir.path())
        .env("DATABASE_URL", "sqlite:///no/such/dir/app.db")
        .run_to_exit();
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let lines = run.json_lines();
    let error = lines
        .iter()
        .find(|json| json["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line: {}", run.describe()));
    let msg = error["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("no/such/dir/app.db"),
        "the error should name the file: {}",
        run.describe()
    );
    assert!(lines.iter().all(|json| json["msg"] != "listening"));
    assert!(!dir.path().join("no").exists());
}

#[test]
fn port_in_use_exits_1_naming_the_address() {
    let dir = TempDir::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let run = Launch::new(dir.path()).env("PORT", &port).run_to_exit();
    assert_eq!(run.code, Some(1), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines.iter().any(|json| json["level"] == "ERROR"
            && json["msg"].as_str().is_some_and(|msg| msg.contains(&port))),
        "an ERROR line should name the port: {}",
        run.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Signals.

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
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    // The connection sends "100 Continue" once the body will be read: from here on the request
    // is in flight, and the signal arrives while it is in the middle of it.
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        interim.push(byte[0]);
    }
    let interim = String::from_utf8_lossy(&interim).into_owned();
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");
    proc.signal("TERM");
    proc.wait_for("the shutdown to begin", |json| {
        json["msg"]
            .as_str()
            .is_some_and(|msg| msg.contains("shutting down"))
    });

    stream.write_all(body.as_bytes()).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let response = parse_response(&rest);
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

// ---------------------------------------------------------------------------------------------
// 3. stdout is JSON lines with the documented request fields.

#[test]
fn stdout_is_json_lines_with_request_fields() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path()).start();

    let with_id = |id: &'static str| [("X-Request-ID", id)];
    let ready = send(addr, "GET", "/health/ready", &with_id("rid-ready"), b"");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let body = message("log-1", FROM, TS, Some("hello"));
    let unsigned = send(
        addr,
        "POST",
        "/webhook",
        &[("X-Request-ID", "rid-401"), ("X-Signature", "00ff")],
        body.as_bytes(),
    );
    assert_eq!(unsigned.status, 401);
    assert_eq!(
        unsigned.json(),
        serde_json::json!({"detail": "invalid signature"})
    );
    let created = post_signed(addr, &body, &with_id("rid-created"));
    assert_eq!(created.status, 200, "{}", created.text());
    let duplicate = post_signed(addr, &body, &with_id("rid-dup"));
    assert_eq!(duplicate.status, 200, "{}", duplicate.text());
    let invalid = post_signed(addr, "not json", &with_id("rid-422"));
    assert_eq!(invalid.status, 422, "{}", invalid.text());
    let bad_from = message("log-bad", "12345", TS, None);
    let invalid_field = post_signed(addr, &bad_from, &with_id("rid-422-field"));
    assert_eq!(invalid_field.status, 422, "{}", invalid_field.text());
    let list = send(addr, "GET", "/messages", &with_id("rid-list"), b"");
    assert_eq!(list.status, 200);
    let missing = send(addr, "GET", "/nope?x=1", &with_id("rid-404"), b"");
    assert_eq!(missing.status, 404);
    let anonymous = [get(addr, "/health/live"), get(addr, "/health/live")];
    let hostile = send(
        addr,
        "GET",
        "/health/live",
        &[("X-Request-ID", "has spaces \"and quotes\"")],
        b"",
    );

    for (response, id) in [
        (&ready, "rid-ready"),
        (&unsigned, "rid-401"),
        (&created, "rid-created"),
        (&duplicate, "rid-dup"),
        (&invalid, "rid-422"),
        (&list, "rid-list"),
        (&missing, "rid-404"),
    ] {
        assert_eq!(response.header("X-Request-ID"), Some(id), "{response:?}");
    }
    let generated: Vec<String> = anonymous
        .iter()
        .chain([&hostile])
        .map(|r| {
            r.header("X-Request-ID")
                .expect("a request ID is echoed even when none was sent")
                .to_owned()
        })
        .collect();
    assert!(
        !generated[2].contains(' '),
        "an unsafe ID must not be reused"
    );

    // After exit stdout is complete, so both presence and absence can be checked.
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for json in &lines {
        let ts = json["ts"].as_str().unwrap_or_default();
        assert!(is_iso8601_utc(ts), "bad ts in {json}");
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG"].contains(&json["level"].as_str().unwrap_or("")),
            "bad level in {json}"
        );
        if json.get("request_id").is_none() {
            continue;
        }
        let id = json["request_id"].as_str().expect("request_id is a string");
        assert!(!id.is_empty());
        assert!(json["method"].is_string(), "{json}");
        assert!(json["path"].is_string(), "{json}");
        assert!(json["status"].is_u64(), "status must be a number: {json}");
        assert!(
            json["latency_ms"].is_number(),
            "latency_ms must be a number: {json}"
        );
        assert!(json["latency_ms"].as_f64().unwrap() >= 0.0);
        if json["path"] == "/webhook" {
            assert!(json["dup"].is_boolean(), "webhook line without dup: {json}");
            assert!(
                json["result"].is_string(),
                "webhook line without result: {json}"
            );
        }
        let previous = by_id.insert(id.to_owned(), json.clone());
        assert!(previous.is_none(), "request_id {id} logged twice");
    }
    let line = |id: &str| {
        by_id
            .get(id)
            .unwrap_or_else(|| panic!("no log line for {id}: {}", run.describe()))
    };

    let l = line("rid-ready");
    assert_eq!(
        (&l["level"], &l["method"], &l["path"], &l["status"]),
        (
            &"INFO".into(),
            &"GET".into(),
            &"/health/ready".into(),
            &200.into()
        )
    );
    assert!(l.get("dup").is_none() && l.get("result").is_none(), "{l}");

    let l = line("rid-401");
    assert_eq!(l["level"], "ERROR", "a 401 is logged at ERROR: {l}");
    assert_eq!((&l["status"], &l["method"]), (&401.into(), &"POST".into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"invalid_signature".into(), &false.into())
    );
    assert!(
        l.get("message_id").is_none(),
        "unverified body must not be parsed: {l}"
    );

    let l = line("rid-created");
    assert_eq!((&l["level"], &l["status"]), (&"INFO".into(), &200.into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"created".into(), &false.into())
    );
    assert_eq!(l["message_id"], "log-1");

    let l = line("rid-dup");
    assert_eq!((&l["level"], &l["status"]), (&"INFO".into(), &200.into()));
    assert_eq!(
        (&l["result"], &l["dup"]),
        (&"duplicate".into(), &true.into())
    );
    assert_eq!(l["message_id"], "log-1");

    let l = line("rid-422");
    assert_eq!(
        (&l["status"], &l["result"]),
        (&422.into(), &"validation_error".into())
    );
    assert_eq!(l["dup"], false);
    assert!(l.get("message_id").is_none(), "{l}");

    let l = line("rid-422-field");
    assert_eq!(
        (&l["status"], &l["result"]),
        (&422.into(), &"validation_error".into())
    );
    assert_eq!(
        l["message_id"], "log-bad",
        "a parsed message_id is logged: {l}"
    );

    let l = line("rid-list");
    assert_eq!(
        (&l["level"], &l["path"], &l["status"]),
        (&"INFO".into(), &"/messages".into(), &200.into())
    );

    let l = line("rid-404");
    assert_eq!((&l["status"], &l["path"]), (&404.into(), &"/nope".into()));

    // Generated IDs: unique, and the log line carries the same ID as the response header.
    assert_eq!(generated.iter().collect::<HashSet<_>>().len(), 3);
    for id in &generated {
        let l = line(id);
        assert_eq!(l["path"], "/health/live");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. The secret, and message bodies, never reach the output.

#[test]
fn secret_and_bodies_never_reach_stdout_or_stderr() {
    let secret = "canary-Secret-9f2b7c1e-do-not-log";
    let text = "body-canary-5d2e81";
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path())
        .env("WEBHOOK_SECRET", secret)
        .env("LOG_LEVEL", "DEBUG")
        .start();

    let body = message("secret-1", FROM, TS, Some(text));
    let good = hookbox::signature::sign_hex(secret.as_bytes(), body.as_bytes());
    let post = |signature: &str, body: &str| {
        send(
            addr,
            "POST",
            "/webhook",
            &[("X-Signature", signature)],
            body.as_bytes(),
        )
    };
    assert_eq!(post(&good, &body).status, 200);
    assert_eq!(post(&good, &body).status, 200);
    assert_eq!(post("deadbeef", &body).status, 401);
    assert_eq!(post(secret, &body).status, 401);
    let invalid = message("secret-2", text, TS, Some(text));
    let signed = hookbox::signature::sign_hex(secret.as_bytes(), invalid.as_bytes());
    assert_eq!(post(&signed, &invalid).status, 422);
    assert_eq!(get(addr, "/messages").status, 200);
    assert_eq!(get(addr, &format!("/messages?q={text}")).status, 200);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let stdout = run.stdout.join("\n");
    assert!(
        stdout.contains("secret-1"),
        "the run should have logged the webhook: {}",
        run.describe()
    );
    for (what, needle) in [("the secret", secret), ("a message body", text)] {
        // The query string of /messages?q=… is the operator's own input, not a message body;
        // the logged path leaves the query out, so the text must not appear at all.
        assert!(
            !stdout.contains(needle),
            "{what} is on stdout: {}",
            run.describe()
        );
        assert!(
            !run.stderr.contains(needle),
            "{what} is on stderr: {}",
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 5. LOG_LEVEL.

/// Spawns on a port picked here, for levels that filter out the "listening" line, and waits until
/// HTTP answers. If another process grabs the port in between, the server exits 1: try again.
fn start_on_free_port(launch: Launch) -> (Proc, SocketAddr) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let port = free_port();
        let mut proc = launch.clone_with("PORT", &port.to_string()).spawn();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + TIMEOUT;
        let up = loop {
            if TcpStream::connect_timeout(&addr, TIMEOUT).is_ok() {
                break true;
            }
            if proc.child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if up {
            return (proc, addr);
        }
        let run = proc.finish();
        assert!(attempt < 5, "server never came up: {}", run.describe());
    }
}

#[test]
fn log_level_error_keeps_only_error_lines() {
    let dir = TempDir::new();
    let (proc, addr) = start_on_free_port(Launch::new(dir.path()).env("LOG_LEVEL", "ERROR"));

    assert_eq!(get(addr, "/health/live").status, 200);
    assert_eq!(
        post_signed(addr, &message("lvl-1", FROM, TS, None), &[]).status,
        200
    );
    assert_eq!(get(addr, "/nope").status, 404);
    let unsigned = send(
        addr,
        "POST",
        "/webhook",
        &[("X-Request-ID", "rid-lvl-401")],
        b"{}",
    );
    assert_eq!(unsigned.status, 401);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines.iter().all(|json| json["level"] == "ERROR"),
        "only ERROR lines at LOG_LEVEL=ERROR: {}",
        run.describe()
    );
    let requests: Vec<&Value> = lines.iter().filter(|j| j.get("status").is_some()).collect();
    assert_eq!(requests.len(), 1, "{}", run.describe());
    assert_eq!(requests[0]["request_id"], "rid-lvl-401");
    assert_eq!(requests[0]["status"], 401);
}

#[test]
fn log_level_warn_mixed_case_hides_info_but_keeps_warnings() {
    let dir = TempDir::new();
    let (proc, addr) = start_on_free_port(Launch::new(dir.path()).env("LOG_LEVEL", "Warn"));
    assert_eq!(get(addr, "/health/live").status, 200);
    let missing = send(
        addr,
        "GET",
        "/nope",
        &[("X-Request-ID", "rid-warn-404")],
        b"",
    );
    assert_eq!(missing.status, 404);

    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    let lines = run.json_lines();
    assert!(
        lines
            .iter()
            .all(|j| j["level"] == "WARN" || j["level"] == "ERROR"),
        "{}",
        run.describe()
    );
    let requests: Vec<&Value> = lines.iter().filter(|j| j.get("status").is_some()).collect();
    assert_eq!(requests.len(), 1, "{}", run.describe());
    assert_eq!(requests[0]["request_id"], "rid-warn-404");
    assert_eq!(requests[0]["level"], "WARN");
}

#[test]
fn log_level_lowercase_debug_and_info_are_accepted() {
    for level in ["debug", "info"] {
        let dir = TempDir::new();
        let (proc, addr) = Launch::new(dir.path()).env("LOG_LEVEL", level).start();
        assert_eq!(get(addr, "/health/live").status, 200);
        let run = proc.stop("TERM");
        assert_eq!(run.code, Some(0), "LOG_LEVEL={level}: {}", run.describe());
        assert!(
            run.json_lines()
                .iter()
                .any(|j| j["path"] == "/health/live" && j["level"] == "INFO"),
            "LOG_LEVEL={level} shows INFO request lines: {}",
            run.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. No secret configured.

#[test]
fn without_a_secret_the_server_starts_but_is_not_ready() {
    for secret in [None, Some("")] {
        let dir = TempDir::new();
        let mut launch = Launch::new(dir.path()).unset("WEBHOOK_SECRET");
        if let Some(value) = secret {
            launch = launch.env("WEBHOOK_SECRET", value);
        }
        let mut proc = launch.spawn();
        let warning = proc.wait_for("a warning about WEBHOOK_SECRET", |json| {
            json["msg"]
                .as_str()
                .is_some_and(|msg| msg.contains("WEBHOOK_SECRET"))
        });
        assert_eq!(warning["level"], "WARN", "{warning}");
        let addr = proc.listening();

        assert_eq!(get(addr, "/health/live").status, 200);
        let ready = get(addr, "/health/ready");
        assert_eq!(ready.status, 503, "{}", ready.text());
        assert!(ready.json().is_object());
        let body = message("nosecret-1", FROM, TS, None);
        let webhook = send(
            addr,
            "POST",
            "/webhook",
            &[("X-Signature", &sign(body.as_bytes()))],
            body.as_bytes(),
        );
        assert_eq!(webhook.status, 503, "{}", webhook.text());
        assert_eq!(
            webhook.json(),
            serde_json::json!({"detail": "webhook secret not configured"})
        );
        // The operator can still read the store.
        assert_eq!(get(addr, "/messages").json()["total"], 0);

        let run = proc.stop("TERM");
        assert_eq!(run.code, Some(0), "{}", run.describe());
        run.json_lines();
        assert_eq!(stored_rows(&dir.path().join("test.db")), 0);
    }
}

// ---------------------------------------------------------------------------------------------
// 7. DATABASE_URL forms.

/// Starts in `cwd` with `url`, stores one message, stops, and returns the run's "listening" line.
fn store_one_with(cwd: &Path, url: Option<&str>) -> Value {
    let mut launch = Launch::new(cwd).unset("DATABASE_URL");
    if let Some(url) = url {
        launch = launch.env("DATABASE_URL", url);
    }
    let mut proc = launch.spawn();
    let listening = proc.wait_for("listening", |json| json["msg"] == "listening");
    let addr: SocketAddr = listening["addr"].as_str().unwrap().parse().unwrap();
    let response = post_signed(addr, &message("url-1", FROM, TS, None), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{url:?}: {}", run.describe());
    listening
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn database_url_relative_to_the_working_directory() {
    let cwd = TempDir::new();
    store_one_with(cwd.path(), Some("sqlite:///rel.db"));
    let db = cwd.path().join("rel.db");
    assert!(is_sqlite_file(&db), "{:?}", entries(cwd.path()));
    assert_eq!(stored_rows(&db), 1);

    let nested = TempDir::new();
    std::fs::create_dir(nested.path().join("data")).unwrap();
    store_one_with(nested.path(), Some("sqlite:///data/app.db"));
    assert_eq!(stored_rows(&nested.path().join("data/app.db")), 1);
}

#[test]
fn database_url_absolute_path() {
    let cwd = TempDir::new();
    let elsewhere = TempDir::new();
    let db = elsewhere.path().join("abs.db");
    assert!(db.is_absolute());
    let url = format!("sqlite:///{}", db.display());
    assert!(url.starts_with("sqlite:////"), "{url}");
    store_one_with(cwd.path(), Some(&url));
    assert!(is_sqlite_file(&db), "{:?}", entries(elsewhere.path()));
    assert_eq!(stored_rows(&db), 1);
    assert_eq!(
        entries(cwd.path()),
        Vec::<String>::new(),
        "nothing in the cwd"
    );
}

#[test]
fn database_url_bare_path_and_default() {
    let cwd = TempDir::new();
    store_one_with(cwd.path(), Some("bare.db"));
    assert_eq!(stored_rows(&cwd.path().join("bare.db")), 1);

    let elsewhere = TempDir::new();
    let absolute = elsewhere.path().join("bare-abs.db");
    store_one_with(cwd.path(), Some(absolute.to_str().unwrap()));
    assert_eq!(stored_rows(&absolute), 1);

    let fresh = TempDir::new();
    store_one_with(fresh.path(), None);
    assert_eq!(stored_rows(&fresh.path().join("hookbox.db")), 1);
}

// ---------------------------------------------------------------------------------------------
// 9. Issue 7: LOG_LEVEL=DEBUG is honoured, and SIGTERM with a keep-alive request in flight.

#[test]
fn log_level_debug_writes_debug_lines() {
    let dir = TempDir::new();
    let (proc, addr) = Launch::new(dir.path()).env("LOG_LEVEL", "DEBUG").start();
    assert_eq!(get(addr, "/health/live").status, 200);
    assert_eq!(
        post_signed(addr, &message("dbg-1", FROM, TS, None), &[]).status,
        200
    );
    let run = proc.stop("TERM");
    assert_eq!(run.code, Some(0), "{}", run.describe());
    assert!(
        run.json_lines().iter().any(|json| json["level"] == "DEBUG"),
        "LOG_LEVEL=DEBUG wrote no DEBUG line: {}",
        run.describe()
    );
}

/// Reads one response by `Content-Length` from `stream` within `within`, or `None` (closed or
/// timed out). Bytes after it stay in `raw` for the next call (pipelined answers).
fn response_within(stream: &mut TcpStream, raw: &mut Vec<u8>, within: Duration) -> Option<Resp> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&raw[..split + 4]);
            let length: usize = head
                .header("content-length")
                .map_or(0, |value| value.parse().unwrap());
            if head.status < 200 {
                raw.drain(..split + 4);
                continue;
            }
            if raw.len() >= split + 4 + length {
                let resp = parse_response(&raw[..split + 4 + length]);
                raw.drain(..split + 4 + length);
                return Some(resp);
            }
        }
        let left = within.saturating_sub(started.elapsed());
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return None,
        }
    }
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
    let mut idle = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    idle.set_write_timeout(Some(TIMEOUT)).unwrap();
    idle.write_all(&keep_alive("/health/live")).unwrap();
    let first = response_within(&mut idle, &mut Vec::new(), Duration::from_secs(5))
        .expect("idle: first answer");
    assert_eq!(first.status, 200);

    let mut busy = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    busy.set_write_timeout(Some(TIMEOUT)).unwrap();
    let acked = message("keep-1", FROM, TS, Some("acknowledged before the signal"));
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\nContent-Length: {}\r\n\r\n",
        sign(acked.as_bytes()),
        acked.len()
    );
    busy.write_all(head.as_bytes()).unwrap();
    busy.write_all(acked.as_bytes()).unwrap();
    let answered =
        response_within(&mut busy, &mut Vec::new(), Duration::from_secs(5)).expect("first webhook");
    assert_eq!(answered.status, 200, "{}", answered.text());

    // The same keep-alive connection: a second webhook, its body half sent when the signal comes.
    let body = message("keep-2", FROM, TS, Some("in flight at SIGTERM"));
    let (first_half, second_half) = body.as_bytes().split_at(body.len() / 2);
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-Signature: {}\r\nX-Request-ID: rid-keep-2\r\n\
         Content-Length: {}\r\n\r\n",
        sign(body.as_bytes()),
        body.len()
    );
    busy.write_all(head.as_bytes()).unwrap();
    busy.write_all(first_half).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    proc.signal("TERM");
    proc.wait_for("the shutdown to begin", |json| {
        json["msg"]
            .as_str()
            .is_some_and(|msg| msg.contains("shutting down"))
    });
    busy.write_all(second_half).unwrap();
    let in_flight = response_within(&mut busy, &mut Vec::new(), Duration::from_secs(5))
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
/// answer arrives, and the process exits 0 within the grace period (today it hung, then exit 1).
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
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(packet.as_bytes()).unwrap();
    let mut answered = 0;
    let mut raw = Vec::new();
    while answered < 9 {
        match response_within(&mut stream, &mut raw, Duration::from_secs(3)) {
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
