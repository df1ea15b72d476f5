"""The feed (issue 13), on SQLite, new binary only (the previous release has no /feed):

- commit → feed latency: a consumer long-polls `GET /feed?wait=10` on one keep-alive connection
  while messages are posted one at a time with pauses; for each message, the time from the
  webhook's 200 (the commit is just before it) to the feed's answer holding it, and from sending
  the webhook (an upper bound). p50/p99 over BENCH_FEED_MESSAGES (default 200).
- page cost at BENCH_ROWS (default 1M, the store reads.py loads): `GET /feed?after=<token>&limit=100`
  from random positions, one client, median and p99 of 200 reads (target ≤ 5 ms median).
- ingest with and without a follower: wrk posting unique messages for BENCH_DURATION seconds,
  alone, then with a consumer following the feed (limit=1000, wait=5) as fast as it can; the
  consumer's lag at the end is reported (target: ≤ 10% less throughput with it).
"""

import hashlib
import http.client
import json
import os
import random
import statistics
import threading
import time

import lib
import reads
from lib import log

MESSAGES = int(os.environ.get("BENCH_FEED_MESSAGES", "200"))
PAGE_READS = 200


def post(conn, index, prefix):
    body = json.dumps({"message_id": f"{prefix}-{index}", "from": "+919876543210",
                       "to": "+14155550100", "ts": "2025-01-15T10:00:00Z",
                       "text": "feed bench"}).encode()
    conn.request("POST", "/webhook", body,
                 {"X-Signature": lib.sign(body), "Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"webhook answered {response.status}")


def get_json(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
    return json.loads(body)


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def latency(binary, workdir):
    db = os.path.join(workdir, "feed-latency.db")
    lib.remove_db(db)
    server = lib.Server(binary, workdir, db)
    try:
        reader = http.client.HTTPConnection(server.host, int(server.port), timeout=30)
        writer = http.client.HTTPConnection(server.host, int(server.port), timeout=30)
        next_token = get_json(reader, "/feed?after=now")["next"]
        arrived = {}
        done = threading.Event()

        def follow():
            nonlocal next_token
            while not done.is_set():
                page = get_json(reader, f"/feed?after={next_token}&wait=10")
                now = time.perf_counter()
                for row in page["data"]:
                    arrived[row["message_id"]] = now
                next_token = page["next"]

        follower = threading.Thread(target=follow)
        follower.start()
        sent, acked = {}, {}
        rng = random.Random(13)
        for i in range(MESSAGES):
            # Let the consumer park again between messages.
            time.sleep(0.005 + rng.random() * 0.015)
            sent[f"lat-{i}"] = time.perf_counter()
            post(writer, i, "lat")
            acked[f"lat-{i}"] = time.perf_counter()
        deadline = time.time() + 10
        while len(arrived) < MESSAGES and time.time() < deadline:
            time.sleep(0.01)
        done.set()
        post(writer, MESSAGES, "lat-end")  # wakes the last long poll
        follower.join()
    finally:
        server.stop()
    from_ack = [(arrived[i] - acked[i]) * 1000 for i in acked if i in arrived]
    from_send = [(arrived[i] - sent[i]) * 1000 for i in sent if i in arrived]
    return {"messages": MESSAGES, "delivered": len(from_ack),
            "from_ack_ms": {"p50": percentile(from_ack, 0.5), "p99": percentile(from_ack, 0.99)},
            "from_send_ms": {"p50": percentile(from_send, 0.5),
                             "p99": percentile(from_send, 0.99)}}


def page_cost(binary, workdir):
    ndjson = reads.ensure_data()
    db, load = reads.import_store(binary, "feed", workdir, ndjson, "on")
    server = lib.Server(binary, workdir, f"sqlite:///{db}")
    try:
        conn = http.client.HTTPConnection(server.host, int(server.port), timeout=30)
        first = get_json(conn, "/feed?limit=1")["next"]
        store_id, position, _ = first.split(".")
        end = get_json(conn, "/feed?after=now")["next"]
        last = int(end.split(".")[1])
        rng = random.Random(1)
        # Random positions with a full page after them (an imported store numbers rows 1..N).
        tokens = [encode(store_id, rng.randrange(int(position) - 1, last - 100))
                  for _ in range(PAGE_READS)]
        times = []
        for token in tokens:
            elapsed, status, payload = reads.timed_get(conn, f"/feed?after={token}&limit=100")
            if status != 200 or len(payload["data"]) != 100:
                raise RuntimeError(f"feed page: {status}")
            times.append(elapsed)
    finally:
        server.stop()
    return {"rows": reads.ROWS, "reads": len(times), "median_ms": statistics.median(times),
            "p99_ms": percentile(times, 0.99), "load": load}


def encode(store_id, position):
    """A position token as the server writes it (src/handlers/feed.rs)."""
    check = hashlib.sha256(f"f1\n{store_id}\n{position}".encode()).hexdigest()[:12]
    return f"{store_id}.{position}.{check}"


def ingest(binary, workdir, requests, follow):
    db = os.path.join(workdir, f"feed-ingest-{follow}.db")
    lib.remove_db(db)
    server = lib.Server(binary, workdir, db)
    stats = {"seen": 0}
    done = threading.Event()

    def consumer():
        conn = http.client.HTTPConnection(server.host, int(server.port), timeout=30)
        token = get_json(conn, "/feed?after=now")["next"]
        while not done.is_set():
            page = get_json(conn, f"/feed?after={token}&limit=1000&wait=5")
            stats["seen"] += len(page["data"])
            token = page["next"]

    try:
        follower = threading.Thread(target=consumer) if follow else None
        if follower:
            follower.start()
        result = lib.wrk(server.url, "webhook.lua", {"BENCH_REQUESTS": requests})
        stored = get_json(http.client.HTTPConnection(server.host, int(server.port)),
                          "/stats")["total_messages"]
        done.set()
        if follower:
            post(http.client.HTTPConnection(server.host, int(server.port)), 0, "wake")
            follower.join()
    finally:
        server.stop()
    return {"rps": result["rps"], "wrk": result,
            "stored": stored, "consumer_seen": stats["seen"] if follow else None}


def run(workdir, bins, requests):
    binary = dict(bins)["new"]
    log("feed: commit → feed latency …")
    lat = latency(binary, workdir)
    log("feed: ingest with and without a follower …")
    runs = {False: [], True: []}
    for _ in range(lib.RUNS):
        for follow in (False, True):
            runs[follow].append(ingest(binary, workdir, requests, follow))
    alone = statistics.median(r["rps"] for r in runs[False])
    followed = statistics.median(r["rps"] for r in runs[True])
    log(f"feed: page cost at {reads.ROWS} rows …")
    page = page_cost(binary, workdir)
    lines = [
        "## Feed (issue 13), SQLite",
        "",
        f"commit → feed, {lat['delivered']}/{lat['messages']} messages, one long-polling consumer:"
        f" from the webhook's 200 p50 {lat['from_ack_ms']['p50']:.2f} ms,"
        f" p99 {lat['from_ack_ms']['p99']:.2f} ms; from sending it p50"
        f" {lat['from_send_ms']['p50']:.2f} ms, p99 {lat['from_send_ms']['p99']:.2f} ms"
        " (target: 50 ms)",
        "",
        f"page of 100 from a random position at {page['rows']:,} rows: median"
        f" {page['median_ms']:.2f} ms, p99 {page['p99_ms']:.2f} ms over {page['reads']} reads"
        " (target: ≤ 5 ms median)",
        "",
        f"ingest (median of {lib.RUNS} × {lib.DURATION} s, {lib.CONNECTIONS} connections):"
        f" alone {alone:.0f}/s, with a following consumer {followed:.0f}/s"
        f" ({followed / alone:.0%}; target ≥ 90%); the consumer saw"
        f" {', '.join(str(r['consumer_seen']) + '/' + str(r['stored']) for r in runs[True])}"
        " of the rows stored when wrk ended",
    ]
    return "\n".join(lines), {"latency": lat, "page": page,
                              "ingest": {"alone": runs[False], "followed": runs[True]}}
