//! What only PostgreSQL makes possible, and what it must survive: several hookbox instances on
//! one database (exactly-once across them, migrations started together), connections killed
//! under load, and an instance killed under load.
//!
//! These run on every pass when PostgreSQL is reachable (`support::postgres_available`: without
//! it they say SKIPPED loudly and pass, except under `CI=true`, where they fail). Every load here
//! goes to 127.0.0.1 only and is bounded in count and time.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hookbox::Config;
use serde_json::Value;

use crate::support::{
    PgDatabase, Rng, SECRET, TestServer, message, postgres_available, try_post_webhook,
};

const CREATED: &str = r#"webhook_requests_total{result="created"}"#;
const DUPLICATE: &str = r#"webhook_requests_total{result="duplicate"}"#;

/// Starts `count` servers on `db` at the same moment, so their migrations race for the lock.
fn start_together(db: &PgDatabase, count: usize, workers: usize) -> Vec<TestServer> {
    let barrier = Barrier::new(count);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..count)
            .map(|_| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let mut config = Config::for_postgres(db.url(), Some(SECRET));
                    config.workers = workers;
                    barrier.wait();
                    TestServer::start_on(config)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn three_instances_thirty_clients_the_same_forty_ids_store_forty_rows_each_created_once() {
    if !postgres_available() {
        return;
    }
    const CLIENTS: usize = 30;
    const IDS: usize = 40;
    const SENDERS: usize = 7;
    let db = PgDatabase::create();
    let servers = start_together(&db, 3, 4);
    let bodies: Vec<String> = (0..IDS)
        .map(|i| {
            let from = format!("+{}", i % SENDERS + 1);
            message(
                &format!("same-{i}"),
                &from,
                "2025-01-15T10:00:00Z",
                Some("x"),
            )
        })
        .collect();
    let barrier = Barrier::new(CLIENTS);
    thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (servers, bodies, barrier) = (&servers, &bodies, &barrier);
            scope.spawn(move || {
                let mut order: Vec<&String> = bodies.iter().collect();
                Rng::new(client as u64).shuffle(&mut order);
                let server = &servers[client % servers.len()];
                barrier.wait();
                for body in order {
                    let resp = server.post_webhook(body.as_bytes());
                    assert_eq!(resp.status, 200, "client {client}: {}", resp.text());
                }
            });
        }
    });

    let expected: HashSet<String> = (0..IDS).map(|i| format!("same-{i}")).collect();
    assert_eq!(db.stored_ids(), expected);
    let created: f64 = servers.iter().map(|s| s.metric(CREATED).unwrap()).sum();
    let duplicate: f64 = servers.iter().map(|s| s.metric(DUPLICATE).unwrap()).sum();
    assert_eq!(
        created, IDS as f64,
        "each id created exactly once, by one instance"
    );
    assert_eq!(duplicate, ((CLIENTS - 1) * IDS) as f64);
    for server in &servers {
        let page = server.get("/messages?limit=100").json();
        assert_eq!(page["total"], IDS);
        let stats = server.get("/stats").json();
        assert_eq!(stats["total_messages"], IDS, "{stats}");
        assert_eq!(stats["senders_count"], SENDERS, "{stats}");
        let counted: u64 = stats["messages_per_sender"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["count"].as_u64().unwrap())
            .sum();
        assert_eq!(counted, IDS as u64, "{stats}");
    }
    // The migrations ran once, whoever won the lock.
    let versions: i64 = db
        .client()
        .query_one("SELECT count(*) FROM hookbox_schema", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions, hookbox::store::postgres::SCHEMA_VERSION);
}

/// Posts `ids` to `server` until each is answered 200, noting every other answer; gives up on
/// an id after a bounded number of attempts (the test then fails on the missing row).
fn post_until_stored(
    server: &TestServer,
    ids: &[String],
    answers: &Mutex<Vec<(u16, bool)>>,
    acked: &Mutex<HashSet<String>>,
) {
    for id in ids {
        let body = message(id, "+1", "2025-01-15T10:00:00Z", Some("load"));
        for _ in 0..200 {
            let resp = server.post_webhook(body.as_bytes());
            let retry_after = resp.header("retry-after").is_some();
            answers.lock().unwrap().push((resp.status, retry_after));
            if resp.status == 200 {
                acked.lock().unwrap().insert(id.clone());
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn connections_killed_under_load_answer_503_with_retry_after_never_500_and_recover_by_themselves() {
    if !postgres_available() {
        return;
    }
    const WRITERS: usize = 4;
    const PER_WRITER: usize = 60;
    const KILLS: usize = 6;
    let db = PgDatabase::create();
    let server = TestServer::start_on(Config::for_postgres(db.url(), Some(SECRET)));
    let answers = Mutex::new(Vec::new());
    let acked = Mutex::new(HashSet::new());
    let reads = Mutex::new(Vec::new());
    let writing = AtomicUsize::new(WRITERS);
    let terminated = AtomicUsize::new(0);
    thread::scope(|scope| {
        for writer in 0..WRITERS {
            let ids: Vec<String> = (0..PER_WRITER).map(|i| format!("k-{writer}-{i}")).collect();
            let (server, answers, acked, writing) = (&server, &answers, &acked, &writing);
            scope.spawn(move || {
                post_until_stored(server, &ids, answers, acked);
                writing.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let (server, reads, writing) = (&server, &reads, &writing);
        scope.spawn(move || {
            while writing.load(Ordering::SeqCst) > 0 {
                for target in ["/messages?limit=5", "/stats", "/health/ready"] {
                    let resp = server.get(target);
                    reads.lock().unwrap().push((target, resp.status));
                }
            }
        });
        // Ends every connection hookbox has to the database, a few times, while it works.
        let mut admin = db.client();
        for _ in 0..KILLS {
            thread::sleep(Duration::from_millis(60));
            let killed: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                    &[],
                )
                .unwrap()
                .get(0);
            terminated.fetch_add(killed as usize, Ordering::SeqCst);
        }
    });

    assert!(
        terminated.load(Ordering::SeqCst) >= KILLS,
        "the kills hit nothing"
    );
    let answers = answers.into_inner().unwrap();
    // Whether any write got a 503 is timing luck: a batch whose connection was killed is sent
    // once more on a new one (pg_stall.rs pins that down), so often none does.
    for (status, retry_after) in &answers {
        assert!(
            *status == 200 || (*status == 503 && *retry_after),
            "a webhook answered {status} (Retry-After: {retry_after})"
        );
    }
    for (target, status) in reads.into_inner().unwrap() {
        assert!(status == 200 || status == 503, "{target} answered {status}");
    }
    // Nothing acknowledged is missing, and every id got its 200 in the end: recovered.
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), WRITERS * PER_WRITER);
    assert_eq!(db.stored_ids(), acked);
    // Ready again without a restart, and the aggregates agree with the rows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.get("/health/ready").status != 200 {
        assert!(Instant::now() < deadline, "never ready again");
        thread::sleep(Duration::from_millis(20));
    }
    let mut stats = server.get("/stats");
    for _ in 0..10 {
        if stats.status == 200 {
            break;
        }
        stats = server.get("/stats");
    }
    assert_eq!(stats.json()["total_messages"], WRITERS * PER_WRITER);
}

/// A hookbox process on `url`, killed on drop.
struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Instance {
    fn start(url: &str) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbox"))
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATABASE_URL", url)
            .env("WEBHOOK_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the hookbox binary starts");
        // The `listening` line carries the address the OS chose.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("hookbox exited before listening")
                .unwrap();
            let json: Value = serde_json::from_str(&line).unwrap();
            if let Some(addr) = json["addr"].as_str() {
                break addr.parse().unwrap();
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Instance { child, addr }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn killing_one_of_three_instances_under_load_loses_no_acknowledged_message() {
    if !postgres_available() {
        return;
    }
    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 80;
    let db = PgDatabase::create();
    let instances: Vec<Mutex<Instance>> = (0..3)
        .map(|_| Mutex::new(Instance::start(&db.url())))
        .collect();
    let addrs: Vec<SocketAddr> = instances.iter().map(|i| i.lock().unwrap().addr).collect();
    let dead = AtomicBool::new(false);
    let acked = Mutex::new(HashSet::new());
    let sent = AtomicUsize::new(0);
    thread::scope(|scope| {
        for client in 0..CLIENTS {
            let (addrs, dead, acked, sent) = (&addrs, &dead, &acked, &sent);
            scope.spawn(move || {
                for i in 0..PER_CLIENT {
                    let id = format!("n-{client}-{i}");
                    let body = message(&id, "+1", "2025-01-15T10:00:00Z", None);
                    // Like a load balancer: the client's own instance, the next one on failure.
                    let mut target = client % addrs.len();
                    for _ in 0..100 {
                        if target == 0 && dead.load(Ordering::SeqCst) {
                            target = 1;
                        }
                        sent.fetch_add(1, Ordering::SeqCst);
                        match try_post_webhook(addrs[target], body.as_bytes()) {
                            Ok(resp) if resp.status == 200 => {
                                acked.lock().unwrap().insert(id.clone());
                                break;
                            }
                            Ok(resp) => {
                                assert_eq!(resp.status, 503, "{}", resp.text());
                                assert!(resp.header("retry-after").is_some());
                            }
                            Err(_) => {
                                target = (target + 1) % addrs.len();
                            }
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                }
            });
        }
        // Kill the first instance (SIGKILL: no graceful anything) once the load is under way.
        let deadline = Instant::now() + Duration::from_secs(20);
        while sent.load(Ordering::SeqCst) < CLIENTS * PER_CLIENT / 4 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        let mut victim = instances[0].lock().unwrap();
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        dead.store(true, Ordering::SeqCst);
    });

    let acked = acked.into_inner().unwrap();
    let stored = db.stored_ids();
    let lost: Vec<&String> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert_eq!(
        acked.len(),
        CLIENTS * PER_CLIENT,
        "every id was stored in the end"
    );
    // The survivors agree on the totals.
    for addr in &addrs[1..] {
        let resp = crate::support::request_bytes(*addr, "GET", "/stats", &[], b"");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        std::io::Write::write_all(&mut stream, &resp).unwrap();
        let stats = crate::support::read_response(&mut stream).json();
        assert_eq!(stats["total_messages"], CLIENTS * PER_CLIENT);
    }
}

// ---- the store itself (its model test, for both stores, is tests/it/store_model.rs) -----------

use hookbox::message::Message;
use hookbox::store::{Inserted, Retention, Store};

use crate::store_model::{assert_aggregates_recount, random_message};

#[test]
fn retention_by_days_and_one_purger_at_a_time() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let config = Config::for_postgres(db.url(), Some(SECRET));
    let mut store = Store::open(&config.store_options()).unwrap();
    store.migrate().unwrap();
    let mut rng = Rng::new(7);
    let old: Vec<Message> = (0..30).map(|i| random_message(&mut rng, i)).collect();
    let new: Vec<Message> = (30..40).map(|i| random_message(&mut rng, i)).collect();
    store
        .insert_batch(&old, "2001-01-01T00:00:00.000Z")
        .unwrap();
    store
        .insert_batch(&new, &hookbox::timestamp::now_utc())
        .unwrap();
    let retention = Retention {
        keep_messages: 0,
        keep_days: 1,
    };
    // While another instance holds the purge lock, this one leaves purging to it.
    let mut other = db.client();
    other
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&hookbox::store::postgres::PURGE_LOCK],
        )
        .unwrap();
    assert_eq!(store.purge(&retention, 25).unwrap(), 0);
    other
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&hookbox::store::postgres::PURGE_LOCK],
        )
        .unwrap();
    assert_eq!(store.purge(&retention, 25).unwrap(), 25);
    assert_eq!(store.purge(&retention, 25).unwrap(), 5);
    assert_eq!(store.purge(&retention, 25).unwrap(), 0);
    assert_eq!(store.stats().unwrap().total_messages, 10);
    // A purged id may be stored again.
    let now = hookbox::timestamp::now_utc();
    assert_eq!(
        store.insert_batch(&old[..1], &now).unwrap(),
        [Inserted::Created]
    );
    store.close();
}

#[test]
fn the_documented_migration_sqlite_export_piped_into_postgres_import_is_byte_identical() {
    if !postgres_available() {
        return;
    }
    use crate::export::{filled, hookbox};
    use crate::support::TestDb;
    let (sqlite, pg) = (TestDb::new_sqlite(), TestDb::new_postgres());
    filled(&sqlite);
    let exported = hookbox(&sqlite, &["export"], b"");
    assert!(exported.status.success());
    assert_eq!(exported.stdout.iter().filter(|&&b| b == b'\n').count(), 200);
    let imported = hookbox(&pg, &["import"], &exported.stdout);
    let stderr = String::from_utf8_lossy(&imported.stderr);
    assert!(imported.status.success(), "{stderr}");
    assert!(
        stderr.contains("created=200 duplicate=0 invalid=0"),
        "{stderr}"
    );
    let again = hookbox(&pg, &["export"], b"");
    assert!(again.status.success());
    assert!(
        again.stdout == exported.stdout,
        "PostgreSQL's export differs from SQLite's"
    );
    // And back: PostgreSQL → SQLite is the same path the other way.
    let back = TestDb::new_sqlite();
    assert!(hookbox(&back, &["import"], &again.stdout).status.success());
    assert!(hookbox(&back, &["export"], b"").stdout == exported.stdout);
}

#[test]
fn three_instances_ingesting_and_purging_at_once_keep_the_aggregates_exact() {
    if !postgres_available() {
        return;
    }
    const KEEP: u64 = 50;
    const CLIENTS: usize = 6;
    const PER_CLIENT: usize = 60;
    let db = PgDatabase::create();
    let servers: Vec<TestServer> = (0..3)
        .map(|_| {
            let mut config = Config::for_postgres(db.url(), Some(SECRET));
            config.retain_messages = KEEP;
            config.max_batch = 8;
            TestServer::start_on(config)
        })
        .collect();
    thread::scope(|scope| {
        for client in 0..CLIENTS {
            let server = &servers[client % servers.len()];
            scope.spawn(move || {
                for i in 0..PER_CLIENT {
                    let from = format!("+{}", (client * 7 + i) % 9 + 1);
                    let id = format!("p-{client}-{i}");
                    let resp = server.post_message(&id, &from, "2025-01-15T10:00:00Z", None);
                    assert_eq!(resp.status, 200, "{}", resp.text());
                }
            });
        }
    });
    // The last purges run after the last answers went out, and a purge's rows are gone a
    // moment before its counter moves: wait until every created message is either counted as
    // purged or still there (a row lost or counted twice never gets there), within a bound.
    let purged_so_far = || -> f64 {
        servers
            .iter()
            .map(|s| s.metric("hookbox_purged_messages_total").unwrap())
            .sum()
    };
    let created: f64 = servers.iter().map(|s| s.metric(CREATED).unwrap()).sum();
    assert_eq!(created, (CLIENTS * PER_CLIENT) as f64);
    let mut client = db.client();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (purged, left) = loop {
        let purged = purged_so_far();
        let left: i64 = client
            .query_one("SELECT count(*) FROM messages", &[])
            .unwrap()
            .get(0);
        if purged + left as f64 == created || Instant::now() > deadline {
            break (purged, left);
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        purged + left as f64,
        created,
        "purged {purged}, left {left}"
    );
    assert!(purged > 0.0);
    // Stop the servers so nothing moves while the aggregates are recounted.
    drop(servers);
    let rows = assert_aggregates_recount(&db);
    // What is left is at least KEEP (a purger that finds another one at work leaves the rest to
    // the next commit).
    assert!(rows >= KEEP as i64, "{rows} rows");
}

#[test]
fn a_next_link_from_one_instance_is_followed_on_another() {
    if !postgres_available() {
        return;
    }
    let db = PgDatabase::create();
    let servers = start_together(&db, 2, 2);
    for i in 0..25 {
        let ts = format!("2025-01-{:02}T10:00:00Z", 1 + i % 5);
        let resp = servers[i % 2].post_message(&format!("c{i:02}"), "+1", &ts, None);
        assert_eq!(resp.status, 200);
    }
    let everything = servers[0].get("/messages?limit=100").json();
    let mut seen = Vec::new();
    let mut target = "/messages?limit=10".to_owned();
    for hop in 0.. {
        // Each page from the other instance than the last.
        let resp = servers[hop % 2].get(&target);
        assert_eq!(resp.status, 200, "{}", resp.text());
        let page = resp.json();
        assert_eq!(page["total"], 25);
        seen.extend(page["data"].as_array().unwrap().iter().cloned());
        let Some(link) = resp.header("link") else {
            break;
        };
        target = link
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(url, _)| url.to_owned())
            .unwrap_or_else(|| panic!("not a Link: {link}"));
        assert!(hop < 10, "the links never end");
    }
    assert_eq!(serde_json::Value::Array(seen), everything["data"]);
}
