//! PostgreSQL restarted in immediate mode (a crash, as far as clients can tell) under load.
//!
//! A test binary of its own, because the restart is machine-wide: cargo runs test binaries one
//! after another, so no other test of ours is using PostgreSQL while this one restarts it. It
//! restarts the machine's cluster, so it runs only when asked: `HOOKBOX_TEST_PG_RESTART=1` (set
//! by CI, never by `make test` on a developer's machine). It needs a Debian cluster
//! (`pg_ctlcluster`, run as root as in CI); without one it says SKIPPED and passes. Load goes
//! to 127.0.0.1 only, bounded in count and time; the outage is one restart, a few seconds at
//! most. (A stall without touching the cluster is tests/it/pg_stall.rs.)

#[path = "it/support/mod.rs"]
mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use hookbox::Config;
use support::{PgDatabase, SECRET, TestServer, message, postgres_available};

/// The newest local cluster's version, as `pg_ctlcluster` names it.
fn local_cluster() -> Option<String> {
    let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    versions.sort_by_key(|version| version.parse::<u32>().unwrap_or(0));
    versions.pop()
}

#[test]
fn postgres_restarted_in_immediate_mode_under_load_gives_503s_never_500s_and_hookbox_recovers() {
    if std::env::var("HOOKBOX_TEST_PG_RESTART").as_deref() != Ok("1") {
        eprintln!("SKIPPED: restarting the machine's PostgreSQL needs HOOKBOX_TEST_PG_RESTART=1");
        return;
    }
    if !postgres_available() {
        return;
    }
    let Some(version) =
        local_cluster().filter(|_| Command::new("pg_ctlcluster").arg("--help").output().is_ok())
    else {
        eprintln!("SKIPPED: no Debian PostgreSQL cluster (pg_ctlcluster, /etc/postgresql) here");
        return;
    };
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 80;
    let db = PgDatabase::create();
    let mut config = Config::for_postgres(db.url(), Some(SECRET));
    config.workers = 2;
    let server = TestServer::start_on(config);
    let answers = Mutex::new(Vec::new());
    let acked = Mutex::new(HashSet::new());
    let reads = Mutex::new(Vec::new());
    let writing = AtomicUsize::new(WRITERS);
    let sent = AtomicUsize::new(0);
    let restart_took = thread::scope(|scope| {
        for writer in 0..WRITERS {
            let (server, answers, acked, writing, sent) =
                (&server, &answers, &acked, &writing, &sent);
            scope.spawn(move || {
                for i in 0..PER_WRITER {
                    let id = format!("r-{writer}-{i}");
                    let body = message(&id, "+1", "2025-01-15T10:00:00Z", Some("restart"));
                    // Retried like a sender honouring Retry-After, but faster, within a bound.
                    for _ in 0..1000 {
                        sent.fetch_add(1, Ordering::SeqCst);
                        let resp = server.post_webhook(body.as_bytes());
                        let retry_after = resp.header("retry-after").is_some();
                        answers.lock().unwrap().push((resp.status, retry_after));
                        if resp.status == 200 {
                            acked.lock().unwrap().insert(id.clone());
                            break;
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                }
                writing.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let (server, reads, writing) = (&server, &reads, &writing);
        scope.spawn(move || {
            while writing.load(Ordering::SeqCst) > 0 {
                for target in ["/messages?limit=5", "/stats", "/health/ready"] {
                    reads
                        .lock()
                        .unwrap()
                        .push((target, server.get(target).status));
                }
                thread::sleep(Duration::from_millis(5));
            }
        });
        // Restart once the load is under way.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent.load(Ordering::SeqCst) < WRITERS * PER_WRITER / 4 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        let started = Instant::now();
        let status = Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &version,
                "main",
                "restart",
                "-m",
                "immediate",
            ])
            .status()
            .expect("pg_ctlcluster runs");
        assert!(status.success(), "pg_ctlcluster restart failed: {status}");
        started.elapsed()
    });

    let answers = answers.into_inner().unwrap();
    let unavailable = answers.iter().filter(|(status, _)| *status == 503).count();
    for (status, retry_after) in &answers {
        assert!(
            *status == 200 || (*status == 503 && *retry_after),
            "a webhook answered {status} (Retry-After: {retry_after})"
        );
    }
    assert!(unavailable > 0, "nothing noticed the restart");
    for (target, status) in reads.into_inner().unwrap() {
        assert!(status == 200 || status == 503, "{target} answered {status}");
    }
    let acked = acked.into_inner().unwrap();
    assert_eq!(
        acked.len(),
        WRITERS * PER_WRITER,
        "every id stored in the end"
    );
    let stored = db.stored_ids();
    assert_eq!(stored, acked, "an acknowledged message is missing");
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/health/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "restart took {restart_took:?}; {unavailable} of {} webhook answers were 503",
        answers.len()
    );
}
