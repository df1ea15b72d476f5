//! A silent or absent PostgreSQL never hangs a client. The database sits behind `pg_proxy`, which
//! the test silences (sockets stay open, nothing is forwarded: a stopped server or a partition
//! without resets, as the client sees it) and resumes; the machine's cluster is never touched.
//! Loopback only; every loop is bounded in count and time.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hookbox::Config;

use crate::pg_proxy::Proxy;
use crate::support::{PgDatabase, SECRET, TestServer, message, postgres_available};

const STALL: Duration = Duration::from_secs(8);

fn via_proxy(db: &PgDatabase, proxy: &Proxy) -> String {
    let url = db.url();
    let at = url.find('@').expect("a user in the test URL") + 1;
    let slash = at + url[at..].find('/').unwrap();
    format!("{}{}{}", &url[..at], proxy.addr(), &url[slash..])
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
fn an_eight_second_stall_keeps_ready_within_two_seconds_loses_no_acknowledged_row_and_recovers() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let proxy = Proxy::plain("127.0.0.1:5432".parse().unwrap());
    let mut config = Config::for_postgres(via_proxy(&db, &proxy), Some(SECRET));
    config.workers = 2;
    let server = TestServer::start_on(config);
    let warm = message("warm", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(warm.as_bytes()).status, 200);
    assert_eq!(server.get("/health/ready").status, 200);

    let answers = Mutex::new(Vec::new()); // (id, status, latency, sent at)
    let probes = Mutex::new(Vec::new()); // (status, latency)
    let lives = Mutex::new(Vec::new());
    let done = AtomicBool::new(false);
    let stalled_at = Instant::now();
    proxy.silence();
    let resumed_at = thread::scope(|scope| {
        for sender in 0..4 {
            let (server, answers, done) = (&server, &answers, &done);
            scope.spawn(move || {
                for i in 0..2000 {
                    if done.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("stall-{sender}-{i}");
                    let body = message(&id, "+2", "2025-01-15T10:00:00Z", None);
                    let sent = Instant::now();
                    let status = server.post_webhook(body.as_bytes()).status;
                    answers
                        .lock()
                        .unwrap()
                        .push((id, status, sent.elapsed(), sent));
                    if status != 200 {
                        thread::sleep(Duration::from_millis(100)); // a sender's retry pause
                    }
                }
            });
        }
        let (server, probes, lives, done) = (&server, &probes, &lives, &done);
        scope.spawn(move || {
            for _ in 0..500 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let sent = Instant::now();
                let status = server.get("/health/ready").status;
                probes.lock().unwrap().push((status, sent.elapsed()));
                let sent = Instant::now();
                assert_eq!(server.get("/health/live").status, 200);
                lives.lock().unwrap().push(sent.elapsed());
                thread::sleep(Duration::from_millis(100)); // the probe's period
            }
        });
        thread::sleep(STALL); // the stall's length is the experiment, not a synchronisation
        proxy.resume();
        let resumed_at = Instant::now();
        // Recovered: a webhook sent after the resume is acknowledged. Bounded.
        let deadline = resumed_at + Duration::from_secs(20);
        loop {
            let recovered = answers
                .lock()
                .unwrap()
                .iter()
                .any(|(_, status, _, sent)| *status == 200 && *sent > resumed_at);
            if recovered || Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        thread::sleep(Duration::from_millis(500));
        done.store(true, Ordering::SeqCst);
        resumed_at
    });

    let answers = answers.into_inner().unwrap();
    let probes = probes.into_inner().unwrap();
    let lives = lives.into_inner().unwrap();
    for (id, status, _, _) in &answers {
        assert!(*status == 200 || *status == 503, "{id} answered {status}");
    }
    let acked: HashSet<String> = answers
        .iter()
        .filter(|(_, status, _, _)| *status == 200)
        .map(|(id, _, _, _)| id.clone())
        .collect();
    let rows = db.stored_ids();
    let lost: Vec<&String> = acked.difference(&rows).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    let recovery = answers
        .iter()
        .filter(|(_, status, _, sent)| *status == 200 && *sent > resumed_at)
        .map(|(_, _, latency, sent)| (*sent + *latency).duration_since(resumed_at))
        .min()
        .expect("a webhook acknowledged after the database came back");
    let mut ready: Vec<Duration> = probes.iter().map(|(_, latency)| *latency).collect();
    ready.sort();
    let worst_ready = *ready.last().unwrap();
    let not_ready = probes.iter().filter(|(status, _)| *status == 503).count();
    let mut webhook: Vec<Duration> = answers.iter().map(|(_, _, latency, _)| *latency).collect();
    webhook.sort();
    let unavailable = answers.iter().filter(|(_, s, _, _)| *s == 503).count();
    eprintln!(
        "stall of {:?}: {} webhook answers ({} 200, {unavailable} 503), latency p50 {:?} p99 {:?} max {:?}; \
         {} ready probes ({not_ready} not ready), max {:?}; live max {:?}; recovered {:?} after the resume; \
         {} acknowledged, 0 lost",
        resumed_at.duration_since(stalled_at),
        answers.len(),
        acked.len(),
        percentile(&webhook, 0.5),
        percentile(&webhook, 0.99),
        webhook.last().copied().unwrap_or_default(),
        probes.len(),
        worst_ready,
        lives.iter().max().copied().unwrap_or_default(),
        recovery,
        acked.len(),
    );
    assert!(not_ready > 0, "ready never noticed the stall");
    assert!(
        worst_ready < Duration::from_secs(2),
        "a ready probe took {worst_ready:?}"
    );
    assert!(
        lives
            .iter()
            .all(|latency| *latency < Duration::from_millis(500)),
        "live was held up"
    );
    assert!(
        recovery < Duration::from_secs(10),
        "recovered after {recovery:?}"
    );
}

#[test]
fn an_instance_whose_database_is_silent_at_startup_serves_503_then_serves_once_it_answers() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let proxy = Proxy::plain("127.0.0.1:5432".parse().unwrap());
    proxy.silence();
    let mut config = Config::for_postgres(via_proxy(&db, &proxy), Some(SECRET));
    config.workers = 1;
    let server = TestServer::start_on(config);
    let sent = Instant::now();
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(sent.elapsed() < Duration::from_secs(2));
    proxy.resume();
    // The connections left behind finish now; the next attempts connect and migrate.
    let deadline = Instant::now() + Duration::from_secs(15);
    while server.get("/health/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        thread::sleep(Duration::from_millis(50));
    }
    let body = message("late", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(body.as_bytes()).status, 200);
    assert!(db.stored_ids().contains("late"));
}

#[test]
fn an_instance_whose_database_is_down_at_startup_keeps_running_and_answers_503() {
    if !postgres_available() {
        return;
    }
    // A port nothing listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgres://postgres@127.0.0.1:{port}/nowhere");
    let mut config = Config::for_postgres(url, Some(SECRET));
    config.workers = 1;
    let server = TestServer::start_on(config);
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.text().contains(&format!("127.0.0.1:{port}")),
        "ready names the server: {}",
        ready.text()
    );
    let body = message("down", "+1", "2025-01-15T10:00:00Z", None);
    let resp = server.post_webhook(body.as_bytes());
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(resp.header("retry-after").is_some());
}

/// hookbox's connections to the test database.
fn hookbox_backends(admin: &mut postgres::Client) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'hookbox'",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn after_the_database_ends_every_connection_ready_and_the_first_webhook_still_succeed() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let mut config = Config::for_postgres(db.url(), Some(SECRET));
    config.workers = 1;
    let server = TestServer::start_on(config);
    let first = message("before", "+1", "2025-01-15T10:00:00Z", None);
    assert_eq!(server.post_webhook(first.as_bytes()).status, 200);
    assert_eq!(server.get("/health/ready").status, 200);
    // What a restart leaves behind: every idle connection of hookbox's is gone.
    let mut admin = db.client();
    let ended: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'hookbox'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(
        ended >= 2,
        "the writer's and the worker's connections: {ended}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = hookbox_backends(&mut admin);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the backends did not end");
        thread::sleep(Duration::from_millis(10));
    }
    // With no request at all, the idle writer finds its connection gone and makes a new one
    // (it checks it after a second unused), so the next webhook does not meet a dead one.
    let deadline = Instant::now() + Duration::from_secs(4);
    let reconnected = loop {
        let back = hookbox_backends(&mut admin);
        if back >= 1 || Instant::now() > deadline {
            break back;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(reconnected, 1, "the writer's new connection, and no other");
    let ready = server.get("/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.text());
    let after = message("after", "+1", "2025-01-15T10:00:01Z", None);
    let resp = server.post_webhook(after.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert!(db.stored_ids().contains("after"));
}

#[test]
fn what_waiting_cannot_fix_stops_startup_in_the_servers_own_words() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let url = db.url();
    let slash = url.rfind('/').unwrap();
    let missing = format!("{}/hookbox_no_such_database", &url[..slash]);
    let error = match hookbox::start(Config::for_postgres(missing, Some(SECRET))) {
        Ok(_) => panic!("started on a database that does not exist"),
        Err(error) => error.to_string(),
    };
    for says in ["FATAL 3D000", "does not exist", "127.0.0.1:5432"] {
        assert!(error.contains(says), "{says:?} missing from: {error}");
    }
    assert!(!error.contains("db error"), "{error}");
}

/// The second start finds the schema in place: PostgreSQL says "already exists, skipping" as
/// NOTICEs, which are the server's chatter, not the operator's business at INFO.
#[test]
fn notices_at_startup_stay_out_of_the_info_log() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    for _ in 0..2 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookbox"))
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATABASE_URL", db.url())
            .env("WEBHOOK_SECRET", SECRET)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the hookbox binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = Vec::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line.unwrap();
            let listening = line.contains("\"listening\"");
            lines.push(line);
            if listening {
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            lines.last().is_some_and(|line| line.contains("listening")),
            "{lines:#?}"
        );
        for line in &lines {
            assert!(!line.contains("skipping"), "a NOTICE at INFO: {line}");
        }
    }
}
