"""Scenario "idle": 1,000 idle keep-alive connections: latency of real traffic, RSS, threads per
connection; with the default read timeout the server closes them after ~10 s; and bursts of
connections above the cap."""

import os
import selectors
import socket
import statistics
import time

from harness import peer_closed, percentile
from suite import (
    Client, RESULTS, RUN_ID, SERVERS, Server, WORKDIR, make_message, open_idle, stderr_panics,
    wait_for
)


IDLE_CONNECTIONS = 1000
BURST_CONNECTIONS = 200
BURST_ROUNDS = 5
BURST_WAIT_SECS = 2.0


def measure_latency(server, tag, gets=500, posts=200):
    get_client = Client(server.host, server.port)
    post_client = Client(server.host, server.port)
    get_ms, post_ms, bad = [], [], 0
    try:
        for _ in range(gets):
            t = time.perf_counter()
            status, _, _ = get_client.request("GET", "/health/live")
            get_ms.append((time.perf_counter() - t) * 1000)
            bad += status != 200
        for i in range(posts):
            body, _ = make_message(f"{RUN_ID}-lat-{tag}-{i}", i)
            t = time.perf_counter()
            status, _, _ = post_client.post_message(body)
            post_ms.append((time.perf_counter() - t) * 1000)
            bad += status != 200
    finally:
        get_client.close()
        post_client.close()
    return {
        "get_p50": percentile(get_ms, 50), "get_p99": percentile(get_ms, 99),
        "post_p50": percentile(post_ms, 50), "post_p99": percentile(post_ms, 99),
        "bad": bad, "reconnects": get_client.reconnects + post_client.reconnects,
    }


def scenario_idle():
    S = "3 idle connections"
    db_path = os.path.join(WORKDIR, "idle.db")
    server = Server("idle", db_path, {"HOOKBOX_READ_TIMEOUT_SECS": "60"})
    idle = []
    try:
        time.sleep(0.3)
        start_rss, start_threads = server.status_kib("VmRSS"), server.threads()
        before = measure_latency(server, "before")
        time.sleep(0.2)
        base_rss, base_threads, base_fds = server.status_kib("VmRSS"), server.threads(), server.fds()
        t = time.monotonic()
        idle = open_idle(server.host, server.port, IDLE_CONNECTIONS)
        open_secs = time.monotonic() - t
        wait_for(lambda: server.threads() >= base_threads + IDLE_CONNECTIONS * 0.95, 15)
        time.sleep(0.5)
        idle_rss, idle_threads, idle_fds = server.status_kib("VmRSS"), server.threads(), server.fds()
        during = measure_latency(server, "idle")
        peak_rss = server.status_kib("VmHWM")
        still_open = sum(1 for s in idle if not peer_closed(s))
        alive = server.alive()
        for s in idle:
            s.close()
        idle = []
        t = time.monotonic()
        released = wait_for(lambda: server.threads() <= base_threads + 8, 12, 0.25)
        release_secs = time.monotonic() - t
        after_threads, after_rss = server.threads(), server.status_kib("VmRSS")
        server.stop()
    finally:
        for s in idle:
            s.close()

    RESULTS.figure(S, "RSS at start (MiB) / threads", f"{start_rss / 1024:.1f} / {start_threads}")
    RESULTS.figure(S, f"opening {IDLE_CONNECTIONS} idle connections took (s)", open_secs)
    RESULTS.check(S, "idle connections still open at measurement (timeout 60 s)",
                  still_open, still_open == IDLE_CONNECTIONS, f"{IDLE_CONNECTIONS}")
    RESULTS.figure(S, "GET /health/live p50 / p99 ms, no idle conns",
                   f"{before['get_p50']:.2f} / {before['get_p99']:.2f}")
    RESULTS.figure(S, "POST /webhook p50 / p99 ms, no idle conns",
                   f"{before['post_p50']:.2f} / {before['post_p99']:.2f}")
    RESULTS.figure(S, f"GET /health/live p50 ms, {IDLE_CONNECTIONS} idle", during["get_p50"])
    RESULTS.check(S, f"GET /health/live p99 ms, {IDLE_CONNECTIONS} idle", during["get_p99"],
                  during["get_p99"] < 200, "< 200")
    RESULTS.figure(S, f"POST /webhook p50 ms, {IDLE_CONNECTIONS} idle", during["post_p50"])
    RESULTS.check(S, f"POST /webhook p99 ms, {IDLE_CONNECTIONS} idle", during["post_p99"],
                  during["post_p99"] < 200, "< 200")
    RESULTS.check(S, "non-200 answers during measurement", before["bad"] + during["bad"],
                  before["bad"] + during["bad"] == 0, "0")
    RESULTS.figure(S, "RSS MiB before idle / with idle", f"{base_rss / 1024:.1f} / {idle_rss / 1024:.1f}")
    RESULTS.check(S, "RSS with idle connections (MiB)", idle_rss / 1024, idle_rss < 128 * 1024, "< 128")
    RESULTS.figure(S, "peak RSS VmHWM (MiB)", peak_rss / 1024)
    RESULTS.figure(S, "threads before idle / with idle", f"{base_threads} / {idle_threads}")
    RESULTS.figure(S, "fds before idle / with idle", f"{base_fds} / {idle_fds}")
    RESULTS.figure(S, "cost per idle connection: RSS KiB", (idle_rss - base_rss) / IDLE_CONNECTIONS)
    RESULTS.figure(S, "cost per idle connection: threads", (idle_threads - base_threads) / IDLE_CONNECTIONS)
    RESULTS.figure(S, "cost per idle connection: fds", (idle_fds - base_fds) / IDLE_CONNECTIONS)
    RESULTS.check(S, "threads back near baseline after close", f"{after_threads} after {release_secs:.1f}s",
                  released, f"<= {base_threads + 8} within 12 s")
    RESULTS.figure(S, "RSS after idle connections closed (MiB)", after_rss / 1024)
    RESULTS.check(S, "server alive throughout", "yes" if alive else "no", alive, "yes")

    # With the default read timeout (10 s) the server closes idle connections by itself.
    server = Server("idle-default", os.path.join(WORKDIR, "idle-default.db"))
    idle = []
    try:
        opened = {}
        idle = open_idle(server.host, server.port, IDLE_CONNECTIONS)
        now = time.monotonic()
        for s in idle:
            opened[s] = now
        closed_after = {}
        deadline = now + 25
        premature = 0
        while len(closed_after) < len(idle) and time.monotonic() < deadline:
            for s in idle:
                if s not in closed_after and peer_closed(s):
                    closed_after[s] = time.monotonic() - opened[s]
            time.sleep(0.2)
        premature = sum(1 for v in closed_after.values() if v < 9.0)
        threads_when_closed = server.threads()
        alive = server.alive()
        server.stop()
    finally:
        for s in idle:
            s.close()
    times = sorted(closed_after.values())
    RESULTS.check(S, "default timeout: idle connections closed by server",
                  f"{len(times)}/{IDLE_CONNECTIONS}", len(times) == IDLE_CONNECTIONS,
                  f"{IDLE_CONNECTIONS} within 25 s")
    if times:
        late = sum(1 for v in times if v > 12.0)
        RESULTS.figure(S, "default timeout: closed after (s) min / median / max",
                       f"{times[0]:.1f} / {statistics.median(times):.1f} / {times[-1]:.1f}")
        RESULTS.check(S, "default timeout: closed before 9 s / after 12 s", f"{premature} / {late}",
                      premature == 0 and late == 0, "0 / 0 (all at ~10 s)")
    RESULTS.figure(S, "default timeout: server threads right after they closed", threads_when_closed)
    RESULTS.check(S, "default timeout: server alive", "yes" if alive else "no", alive, "yes")
    connection_burst(S)
    panics = stderr_panics([s for s in SERVERS if s.name.startswith("idle")])
    RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")


def connection_burst(S):
    """BURST_ROUNDS times, on a fresh server: BURST_CONNECTIONS new connections, each sending
    one GET /health/live at once and then staying open (keep-alive, read timeout 60 s). Every
    request must be answered promptly, not only once some other connection ends. (A fresh server
    has a few idle connection threads waiting: the state in which a burst can get a connection
    queued with no thread to serve it.)"""
    request = b"GET /health/live HTTP/1.1\r\nHost: soak\r\n\r\n"
    unanswered, slowest = [], 0.0
    for round_no in range(BURST_ROUNDS):
        server = Server("idle-burst", os.path.join(WORKDIR, f"idle-burst-{round_no}.db"),
                        {"HOOKBOX_READ_TIMEOUT_SECS": "60"})
        sockets = []
        selector = selectors.DefaultSelector()
        try:
            started = time.monotonic()
            for _ in range(BURST_CONNECTIONS):
                s = socket.create_connection((server.host, server.port), timeout=5)
                s.sendall(request)
                s.setblocking(False)
                sockets.append(s)
                selector.register(s, selectors.EVENT_READ)
            answered = 0
            while answered < len(sockets) and time.monotonic() - started < BURST_WAIT_SECS:
                for key, _ in selector.select(timeout=0.1):
                    selector.unregister(key.fileobj)
                    answered += 1
                    slowest = max(slowest, time.monotonic() - started)
            unanswered.append(len(sockets) - answered)
        finally:
            selector.close()
            for s in sockets:
                s.close()
        server.stop()
    RESULTS.check(S, f"burst: {BURST_CONNECTIONS} new keep-alive connections at once, 1 request each, "
                     f"on {BURST_ROUNDS} fresh servers: unanswered after {BURST_WAIT_SECS:.0f} s",
                  " / ".join(map(str, unanswered)), sum(unanswered) == 0, "0 each")
    RESULTS.figure(S, "burst: slowest answered request (s)", slowest)
