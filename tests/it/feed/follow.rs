//! `hookbox export --follow`, run as the built binary beside a running server on the suite's
//! store: it streams what is stored, then what arrives, in arrival order; `--print-position`
//! gives a token that `--after` resumes from exactly; SIGTERM and a closed stdout end it with 0.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::TestServer;

/// The running follower; killed on drop, so a failing assertion never leaves it behind.
struct Follower {
    child: Child,
    /// `None` once the test closed its end of stdout.
    lines: Option<BufReader<ChildStdout>>,
}

impl Follower {
    fn start(server: &TestServer, args: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
            .args(["export", "--follow"])
            .args(args)
            .env_clear()
            .env("DATABASE_URL", server.dir.url())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the hookbox binary starts");
        let lines = Some(BufReader::new(child.stdout.take().unwrap()));
        Follower { child, lines }
    }

    /// The next NDJSON line's message_id (blocks until the follower writes it).
    fn next_id(&mut self) -> String {
        let mut line = String::new();
        let lines = self.lines.as_mut().expect("stdout is open");
        assert!(lines.read_line(&mut line).unwrap() > 0, "stdout ended");
        let row: Value = serde_json::from_str(&line).unwrap();
        // Compact, exactly the five keys in export's order.
        let id = row["message_id"].as_str().unwrap();
        let expected = format!(
            r#"{{"message_id":"{id}","from":"+911","to":"+14155550100","ts":{},"text":"{id}"}}"#,
            row["ts"]
        );
        assert_eq!(line.trim_end(), expected);
        row["message_id"].as_str().unwrap().to_owned()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most 20 s) for the exit; returns its code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the follower did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status.code(), stderr)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(server: &TestServer, id: &str, ts: &str) {
    assert_eq!(server.post_message(id, "+911", ts, Some(id)).status, 200);
}

#[test]
fn export_follow_streams_new_messages_and_resumes_from_its_printed_position() {
    let server = TestServer::start();
    post(&server, "m1", "2025-01-15T10:00:00Z");
    post(&server, "m2", "2020-01-01T00:00:00Z");
    let mut follower = Follower::start(&server, &["--print-position"]);
    assert_eq!(follower.next_id(), "m1");
    assert_eq!(follower.next_id(), "m2");
    // Stored while it follows: picked up, in arrival order whatever the ts.
    post(&server, "m3", "2001-01-01T00:00:00Z");
    assert_eq!(follower.next_id(), "m3");
    follower.signal("TERM");
    let (code, stderr) = follower.wait();
    assert_eq!(code, Some(0), "{stderr}");
    let token = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("position "))
        .next_back()
        .unwrap_or_else(|| panic!("no position line in {stderr:?}"))
        .to_owned();
    let feed = server.get("/feed").json();
    assert_eq!(
        feed["next"],
        token.as_str(),
        "the last position is after m3"
    );

    // Resumed after that position: exactly what came later.
    post(&server, "m4", "2025-01-15T10:00:00Z");
    let mut resumed = Follower::start(&server, &["--after", &token]);
    assert_eq!(resumed.next_id(), "m4");
    // A reader that goes away ends it with 0, at the next message written.
    resumed.lines = None;
    post(&server, "m5", "2025-01-15T10:00:00Z");
    let (code, stderr) = resumed.wait();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn export_follow_refuses_bad_arguments_with_exit_2() {
    let server = TestServer::start();
    for args in [
        &["--after", "garbled"][..],
        &["--after"],
        &["--since", "2025-01-15T10:00:00Z"],
        &["--nope"],
    ] {
        let (code, stderr) = Follower::start(&server, args).wait();
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
    }
}
