//! The harness of the binary tests: a `Launch` (working directory and a clean environment), a
//! `Proc` that is killed on drop, its stdout read line by line as JSON, and requests through
//! the suite's raw HTTP client (`support::send_to`).
//!
//! Nothing waits on a fixed sleep: tests wait for a log line (with a deadline), for the process to
//! exit (bounded poll), or for HTTP to answer (bounded poll). Assertions about what is *absent*
//! from stdout are made only after the process has exited and stdout is at EOF.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::support::send_to;
use crate::support::{Resp, SECRET, sign};

/// Upper bound for anything a test waits on; generous for slow CI machines.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How a hookbox process is launched: working directory and a clean environment.
pub struct Launch {
    pub cwd: PathBuf,
    pub env: BTreeMap<String, String>,
}

impl Launch {
    /// Loopback, an OS-chosen port, `test.db` in `cwd`, `SECRET` configured.
    pub fn new(cwd: &Path) -> Launch {
        Launch {
            cwd: cwd.to_path_buf(),
            env: BTreeMap::new(),
        }
        .env("HOST", "127.0.0.1")
        .env("PORT", "0")
        .env("DATABASE_URL", "sqlite:///test.db")
        .env("WEBHOOK_SECRET", SECRET)
    }

    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn clone_with(&self, name: &str, value: &str) -> Launch {
        Launch {
            cwd: self.cwd.clone(),
            env: self.env.clone(),
        }
        .env(name, value)
    }

    pub fn unset(mut self, name: &str) -> Launch {
        self.env.remove(name);
        self
    }

    /// Starts the process; the environment is cleared first so the caller's shell cannot leak in.
    pub fn spawn(&self) -> Proc {
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
    pub fn start(&self) -> (Proc, SocketAddr) {
        let mut proc = self.spawn();
        let addr = proc.listening();
        (proc, addr)
    }

    /// Runs `hookbox args…` to its end with `stdin` fed in (a one-shot command).
    pub fn run_args(&self, args: &[&str], stdin: &[u8]) -> std::process::Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
            .args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hookbox binary starts");
        let mut input = child.stdin.take().expect("piped stdin");
        let stdin = stdin.to_vec();
        // A separate writer, so a large input cannot deadlock against the output pipes.
        let feeder = std::thread::spawn(move || {
            let _ = input.write_all(&stdin);
        });
        let output = child.wait_with_output().expect("waiting for hookbox");
        feeder.join().expect("stdin feeder");
        output
    }

    /// Runs a process that is expected to exit by itself (startup errors) and collects everything.
    pub fn run_to_exit(&self) -> Finished {
        self.spawn().finish()
    }
}

/// A running hookbox process. Killed (and reaped) on drop.
pub struct Proc {
    pub child: Child,
    pub lines: Receiver<String>,
    /// Every stdout line received so far, in order.
    pub seen: Vec<String>,
    pub stderr: Option<JoinHandle<String>>,
}

/// What a process left behind once it exited.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// Every stdout line parsed; panics (naming the line) if one is not a JSON object.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout.iter().map(|line| json_object(line)).collect()
    }

    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            self.stdout.join("\n"),
            self.stderr
        )
    }
}

impl Proc {
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The next stdout line, or `None` at EOF. Panics after `TIMEOUT`.
    pub fn next_line(&mut self, deadline: Instant) -> Option<String> {
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
    pub fn wait_for(&mut self, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
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
    pub fn listening(&mut self) -> SocketAddr {
        let line = self.wait_for("the \"listening\" line", |json| json["msg"] == "listening");
        let addr = line["addr"]
            .as_str()
            .unwrap_or_else(|| panic!("\"listening\" line without a string addr: {line}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("addr {addr:?} is not a socket address: {e}"))
    }

    /// Sends a signal by name (`TERM`, `INT`) with the system's `kill` command.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    /// Reads stdout to EOF, waits (bounded) for the exit, and collects stdout and stderr.
    pub fn finish(mut self) -> Finished {
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
    pub fn stop(self, name: &str) -> Finished {
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

pub fn json_object(line: &str) -> Value {
    let json: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
    assert!(json.is_object(), "stdout line is not a JSON object: {line}");
    json
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, checked by shape (the value comes from the clock).
pub fn is_iso8601_utc(ts: &str) -> bool {
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
// Requests, through the suite's one raw HTTP/1.1 client (`support::http`).

pub fn get(addr: SocketAddr, target: &str) -> Resp {
    send_to(addr, "GET", target, &[], b"")
}

/// POSTs `body` to /webhook signed with `SECRET`.
pub fn post_signed(addr: SocketAddr, body: &str, headers: &[(&str, &str)]) -> Resp {
    let signature = sign(body.as_bytes());
    let mut all = vec![("X-Signature", signature.as_str())];
    all.extend_from_slice(headers);
    send_to(addr, "POST", "/webhook", &all, body.as_bytes())
}

pub const TS: &str = "2025-01-15T10:00:00Z";
pub const FROM: &str = "+919876543210";

/// Rows in the `messages` table, read directly with SQLite; also checks the file's integrity.
pub fn stored_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open the database file");
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok", "{} is damaged", db.display());
    conn.query_row("SELECT count(*) FROM messages", [], |row| row.get(0))
        .unwrap()
}

pub fn is_sqlite_file(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(b"SQLite format 3\0"))
}

/// A port that was free a moment ago, for the one test that cannot read it from the log.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns on a port picked here, for levels that filter out the "listening" line, and waits until
/// HTTP answers. If another process grabs the port in between, the server exits 1: try again.
pub fn start_on_free_port(launch: Launch) -> (Proc, SocketAddr) {
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
