//! Reads at scale: bounded in time (the query timeout) and in memory (offsets of any size),
//! keyset paging, and totals that stay exact (SPEC Part 2, "Growth" and "Hostile clients").

use hookbox::Config;
use hookbox::message::Message;
use hookbox::store::Store;

use crate::support::{SECRET, TestDb, TestServer};

/// A message with id `m{i:06}`, from one of three senders, a ts spread over a month, and text.
fn numbered(i: usize) -> Message {
    let ts = format!("2025-01-{:02}T{:02}:{:02}:00Z", 1 + i % 28, i % 24, i % 60);
    Message {
        message_id: format!("m{i:06}"),
        from: format!("+9100{}", i % 3),
        to: "+14155550100".to_owned(),
        ts_key: hookbox::timestamp::sort_key(&ts).unwrap(),
        ts,
        text: Some(format!(
            "message number {i} says {}",
            ["hello", "world", "Hola"][i % 3]
        )),
    }
}

/// A config on `dir` whose database already holds `count` numbered messages, stored through the
/// store itself (much faster than HTTP).
fn preloaded(dir: &TestDb, count: usize) -> Config {
    let config = dir.config(Some(SECRET));
    let mut store = Store::open(&config.store_options()).unwrap();
    store.migrate().unwrap();
    store.use_text_index(config.text_index).unwrap();
    let messages: Vec<Message> = (0..count).map(numbered).collect();
    for chunk in messages.chunks(10_000) {
        store
            .insert_batch(chunk, "2025-02-01T00:00:00.000Z")
            .unwrap();
    }
    store.close();
    config
}

fn ids(body: &serde_json::Value) -> Vec<String> {
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_read_past_the_query_timeout_is_stopped_answered_503_with_retry_after_and_counted() {
    let dir = TestDb::new();
    let mut config = preloaded(&dir, 30_000);
    config.query_timeout = std::time::Duration::from_millis(1);
    let server = TestServer::start_in(dir, config);
    assert_eq!(server.metric("hookbox_query_timeouts_total"), Some(0.0));
    // A one-character needle tests every row: far more than a millisecond.
    let resp = server.get("/messages?q=e");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(resp.json()["detail"].as_str().unwrap().contains("too long"));
    assert_eq!(server.metric("hookbox_query_timeouts_total"), Some(1.0));
    // The connection that was interrupted serves the next request normally.
    for _ in 0..8 {
        assert_eq!(server.get("/health/ready").status, 200);
    }
}

#[test]
fn a_huge_offset_reads_nothing_whatever_the_filters() {
    let dir = TestDb::new();
    let config = preloaded(&dir, 3_000);
    let server = TestServer::start_in(dir, config);
    for filters in [
        "",
        "&q=hello",
        "&q=e",
        "&from=%2B91001",
        "&since=2025-01-10T00:00:00Z",
        "&q=hola&from=%2B91002",
        // Rare enough (4%) to be served by the text index rather than a scan.
        "&q=NUMBER%2012",
        "&q=number%2012&since=2025-01-10T00:00:00Z",
    ] {
        let body = server.get(&format!("/messages?limit=100{filters}")).json();
        let total = body["total"].as_u64().unwrap();
        assert!(total > 0, "{filters}");
        // The last row is still reachable by offset…
        let last = server.get(&format!(
            "/messages?limit=100&offset={}{filters}",
            total - 1
        ));
        assert_eq!(ids(&last.json()).len(), 1, "{filters}");
        // …and past it, up to the largest offset, nothing is read (SQLite would take an
        // overflowed LIMIT + OFFSET for "no limit" and return every row).
        for offset in [total, total + 1, i64::MAX as u64 - 100, i64::MAX as u64] {
            let resp = server.get(&format!("/messages?limit=100&offset={offset}{filters}"));
            assert_eq!(resp.status, 200, "{filters} {offset}: {}", resp.text());
            let body = resp.json();
            assert_eq!(ids(&body), Vec::<String>::new(), "{filters} {offset}");
            assert_eq!(body["total"].as_u64(), Some(total));
            assert_eq!(body["offset"].as_u64(), Some(offset));
        }
    }
}

/// The target of a `Link: <…>; rel="next"` header, if the response has one.
fn next_link(resp: &crate::support::Resp) -> Option<String> {
    let link = resp.header("link")?;
    let target = link.strip_prefix('<')?.split_once(">; rel=\"next\"")?.0;
    Some(target.to_owned())
}

/// Every page by following next links from `first`: the ids in order, and the totals seen.
fn follow(
    server: &TestServer,
    first: &str,
    mut between: impl FnMut(usize),
) -> (Vec<String>, Vec<i64>) {
    let (mut seen, mut totals) = (Vec::new(), Vec::new());
    let mut target = Some(first.to_owned());
    let mut pages = 0;
    while let Some(next) = target {
        let resp = server.get(&next);
        assert_eq!(resp.status, 200, "{next}: {}", resp.text());
        let body = resp.json();
        assert_eq!(body["offset"], 0, "{next}");
        let page = ids(&body);
        let limit = body["limit"].as_u64().unwrap() as usize;
        // A full page links on; a short one ends the walk.
        assert_eq!(next_link(&resp).is_some(), page.len() == limit, "{next}");
        seen.extend(page);
        totals.push(body["total"].as_i64().unwrap());
        target = next_link(&resp);
        pages += 1;
        assert!(pages < 1000, "the walk does not end");
        between(pages);
    }
    (seen, totals)
}

#[test]
fn following_next_links_visits_exactly_the_rows_offset_paging_visits() {
    let dir = TestDb::new();
    let config = preloaded(&dir, 500);
    let server = TestServer::start_in(dir, config);
    for filters in [
        "",
        "&from=+91001",
        "&from=%2B91002&since=2025-01-14T12:00:00Z",
        "&q=HELLO",
        "&q=o",
        "&q=hola&from=%2B91002",
        "&since=2025-01-20T00:00:00Z&q=number%201",
        "&q=number%2012",
        "&from=%2B91000&q=r%2012",
    ] {
        for limit in [1, 7, 100] {
            // Offset paging, page by page.
            let mut by_offset = Vec::new();
            let total = loop {
                let body = server
                    .get(&format!(
                        "/messages?limit={limit}&offset={}{filters}",
                        by_offset.len()
                    ))
                    .json();
                let page = ids(&body);
                let done = page.len() < limit;
                by_offset.extend(page);
                if done {
                    break body["total"].as_i64().unwrap();
                }
            };
            assert_eq!(by_offset.len() as i64, total, "{filters}");
            let (by_cursor, totals) = follow(
                &server,
                &format!("/messages?limit={limit}{filters}"),
                |_| {},
            );
            assert_eq!(by_cursor, by_offset, "{filters} limit={limit}");
            assert!(totals.iter().all(|t| *t == total), "{filters}: {totals:?}");
        }
    }
}

#[test]
fn next_links_visit_every_row_once_while_rows_arrive_between_pages() {
    let dir = TestDb::new();
    let config = preloaded(&dir, 300);
    let server = TestServer::start_in(dir, config);
    let initial = ids(&server.get("/messages?limit=100&offset=0").json()).len();
    assert_eq!(initial, 100);
    let mut rng = crate::support::Rng::new(11);
    let mut arrived = Vec::new();
    let (seen, totals) = follow(&server, "/messages?limit=9&q=message", |page| {
        // Two new rows per page, anywhere in the order: before the walk's position (never
        // visited), after it (visited later), or on the same instant as the rows around it.
        for k in 0..2 {
            let id = format!("new-{page}-{k}");
            let ts = format!(
                "2025-01-{:02}T{:02}:30:00Z",
                1 + rng.below(28),
                rng.below(24)
            );
            let resp = server.post_message(&id, "+91009", &ts, Some("late message"));
            assert_eq!(resp.status, 200);
            arrived.push((hookbox::timestamp::sort_key(&ts).unwrap(), id));
        }
    });
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "a row was visited twice");
    // Every original row, once, in order.
    let originals: Vec<&String> = seen.iter().filter(|id| id.starts_with('m')).collect();
    let expected: Vec<String> = (0..300).map(|i| format!("m{i:06}")).collect();
    let mut in_order: Vec<(String, String)> = (0..300)
        .map(|i| {
            let m = numbered(i);
            (m.ts_key, m.message_id)
        })
        .collect();
    in_order.sort();
    assert_eq!(originals.len(), expected.len());
    assert_eq!(
        originals,
        in_order.iter().map(|(_, id)| id).collect::<Vec<_>>()
    );
    // The totals grew as rows arrived: total always counts every matching row.
    assert!(totals.windows(2).all(|w| w[0] <= w[1]), "{totals:?}");
    // (The last page was answered before the last two arrived.)
    assert_eq!(*totals.last().unwrap(), 300 + arrived.len() as i64 - 2);
    // New rows: visited exactly when they sort after where the walk was when they arrived
    // (after page p, the walk stands on the last row of that page: pages are full, 9 rows).
    let key_of = |id: &String| -> (String, String) {
        in_order
            .iter()
            .chain(arrived.iter())
            .find(|(_, other)| other == id)
            .cloned()
            .unwrap()
    };
    let mut expected_new = Vec::new();
    for (index, row) in arrived.iter().enumerate() {
        let page = index / 2 + 1;
        let Some(position) = seen.get(page * 9 - 1) else {
            continue;
        };
        if row > &key_of(position) {
            expected_new.push(row.1.clone());
        }
    }
    let mut visited_new: Vec<String> = seen
        .iter()
        .filter(|id| id.starts_with("new-"))
        .cloned()
        .collect();
    visited_new.sort();
    expected_new.sort();
    assert_eq!(visited_new, expected_new);
    assert!(!visited_new.is_empty() && visited_new.len() < arrived.len());
}

#[test]
fn a_foreign_or_garbled_cursor_or_one_with_an_offset_is_422_on_the_cursor() {
    let dir = TestDb::new();
    let config = preloaded(&dir, 5);
    let server = TestServer::start_in(dir, config);
    let first = server.get("/messages?limit=2");
    let next = next_link(&first).unwrap();
    let cursor = next.split_once("cursor=").unwrap().1.to_owned();
    assert_eq!(server.get(&next).status, 200);
    assert_eq!(server.get(&format!("{next}&offset=0")).status, 200);
    let mut garbled = cursor.clone();
    garbled.replace_range(4..5, if &cursor[4..5] == "a" { "b" } else { "a" });
    for target in [
        format!("/messages?cursor={garbled}"),
        "/messages?cursor=eyJ0cyI6IjIwMjUifQ".to_owned(),
        "/messages?cursor=".to_owned(),
        format!("{next}&offset=2"),
    ] {
        let resp = server.get(&target);
        assert_eq!(resp.status, 422, "{target}: {}", resp.text());
        let detail = &resp.json()["detail"];
        assert_eq!(detail.as_array().unwrap().len(), 1, "{target}");
        assert_eq!(
            detail[0]["loc"],
            serde_json::json!(["query", "cursor"]),
            "{target}"
        );
    }
    // The last page is short and has no next link; the body keeps its four keys.
    let last = server.get(&next_link(&server.get(&next)).unwrap());
    assert!(next_link(&last).is_none());
    let body = last.json();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["data", "limit", "offset", "total"]);
    assert_eq!((body["total"].as_i64(), ids(&body).len()), (Some(5), 1));
}
