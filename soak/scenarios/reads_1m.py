"""Scenario "reads_1m": the worst reads of issue 7 (q=e with offset 2^63-1, deep offsets, /stats,
the busiest sender) in parallel on a 1,000,000-message store built with sqlite3 in the temp dir:
peak RSS < 64 MiB, every answer 200 or 503 with Retry-After."""

import collections
import os
import threading
import time
import urllib.parse

from harness import CONNECTION_ERRORS
from suite import MIB, RESULTS, RssSampler, Server, WORKDIR, build_store, one_request


READS_1M_ROWS = 1_000_000
READS_1M_THREADS = 6
READS_1M_SECS = 25.0


def scenario_reads_1m():
    """The worst reads of issue 7, in parallel, on a 1,000,000-message store: memory stays
    bounded and every answer is 200 or 503 with Retry-After."""
    S = "reads 1M"
    db_path = os.path.join(WORKDIR, "reads-1m.db")
    t = time.monotonic()
    busiest = build_store(db_path, READS_1M_ROWS)
    RESULTS.figure(S, "store built with sqlite3 (s, MiB)",
                   f"{time.monotonic() - t:.1f}, {os.path.getsize(db_path) / MIB:.0f}")
    # The server migrates the store at start; give that a generous but bounded time.
    server = Server("reads-1m", db_path, start_timeout=180.0)
    RESULTS.figure(S, "server start incl. migration (s)", server.startup_secs)
    sampler = RssSampler(server)
    targets = [
        "/messages?q=e&offset=9223372036854775807",
        "/messages?q=e",
        "/messages?offset=999900&limit=100",
        "/messages?offset=500000&limit=100",
        "/stats",
        f"/messages?from={urllib.parse.quote(busiest)}&limit=100",
        f"/messages?from={urllib.parse.quote(busiest)}&offset=150000&limit=100",
    ]
    lock = threading.Lock()
    statuses = collections.Counter()
    slowest = collections.defaultdict(float)
    bad = []
    stop = threading.Event()
    base_rss = server.status_kib("VmRSS")

    def reader(index):
        # A fresh connection per request: a keep-alive connection the server closes while idle
        # (a normal race) must not count as a failed read.
        k = index
        while not stop.is_set():
            target = targets[k % len(targets)]
            k += 1
            t = time.perf_counter()
            try:
                status, headers, _ = one_request(server.host, server.port, "GET", target,
                                                 timeout=60.0)
            except CONNECTION_ERRORS as error:
                with lock:
                    statuses[type(error).__name__] += 1
                    bad.append(f"{target}: {type(error).__name__}")
                continue
            took = time.perf_counter() - t
            with lock:
                statuses[status] += 1
                slowest[target] = max(slowest[target], took)
                if not (status == 200 or (status == 503 and "retry-after" in headers)):
                    bad.append(f"{target}: {status}")

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(READS_1M_THREADS)]
    try:
        for thread in threads:
            thread.start()
        stop.wait(READS_1M_SECS)
        stop.set()
        deadline = time.monotonic() + 70
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        stuck = sum(1 for thread in threads if thread.is_alive())
        alive = server.alive()
        peak_rss, hwm = sampler.stop()
        code, stop_secs = server.terminate(grace=20) if alive else (None, 0)
    finally:
        stop.set()
        sampler.stop()
    RESULTS.figure(S, "answers", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
    RESULTS.check(S, "answers other than 200 / 503 + Retry-After", len(bad), not bad,
                  "0" + (f" (first: {bad[0]})" if bad else ""))
    for target in targets:
        if target in slowest:
            RESULTS.figure(S, f"slowest {target} (s)", slowest[target])
    RESULTS.check(S, "readers finished within 70 s of the stop", stuck, stuck == 0, "0 stuck")
    RESULTS.figure(S, "RSS before the reads (MiB)", base_rss / 1024)
    RESULTS.check(S, "peak RSS sampled every 100 ms (MiB)", peak_rss / 1024, peak_rss < 64 * 1024, "< 64")
    RESULTS.check(S, "VmHWM (MiB)", hwm / 1024, 0 < hwm < 64 * 1024, "< 64")
    RESULTS.check(S, "server alive throughout", "yes" if alive else "no", alive, "yes")
    RESULTS.check(S, "SIGTERM afterwards: exit code", f"{code} after {stop_secs:.1f}s", code == 0, "0")
    os.remove(db_path)
