"""Scenario "readonly": the database and its WAL made unwritable while the server runs
(`chattr +i`, which binds root too): 503 + Retry-After, /health/ready says so, reads still work;
writes succeed again without a restart once the flag is removed."""

import collections
import os
import subprocess
import time

from suite import (
    Client, RESULTS, RUN_ID, Server, WORKDIR, make_message, one_request, read_db, stderr_panics
)


def scenario_readonly():
    S = "6 read-only file"
    directory = os.path.join(WORKDIR, "readonly")
    os.makedirs(directory)
    db_path = os.path.join(directory, "ro.db")
    protected = [db_path, db_path + "-wal"]
    acked = {}
    server = Server("readonly", db_path)
    client = Client(server.host, server.port, timeout=10)

    def chattr(flag):
        return [subprocess.run(["chattr", flag, path], capture_output=True, text=True)
                for path in protected if os.path.exists(path)]

    try:
        for i in range(10):
            message_id = f"{RUN_ID}-ro-pre-{i}"
            body, expected = make_message(message_id, i)
            if client.post_message(body)[0] == 200:
                acked[message_id] = expected
        RESULTS.check(S, "POSTs before", f"{len(acked)}/10 200", len(acked) == 10, "10/10 200")
        results = chattr("+i")
        if not results or any(r.returncode != 0 for r in results):
            why = "; ".join(r.stderr.strip() for r in results) or "no files to protect"
            RESULTS.skip(S, "read-only scenario", f"chattr +i is not supported here: {why}")
            return
        statuses = collections.Counter()
        no_retry_after = 0
        refused = []
        for i in range(20):
            message_id = f"{RUN_ID}-ro-{i}"
            body, expected = make_message(message_id, 100 + i)
            status, headers, _ = client.post_message(body)
            statuses[status] += 1
            if status == 200:
                acked[message_id] = expected
            else:
                refused.append((message_id, body, expected))
                if status == 503 and "retry-after" not in headers:
                    no_retry_after += 1
        RESULTS.figure(S, "POSTs while unwritable: answers",
                       ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())))
        RESULTS.check(S, "POSTs while unwritable answered 503", statuses[503],
                      statuses[503] == 20, "20 of 20 (never 200 or 500)")
        RESULTS.check(S, "503 without Retry-After", no_retry_after, no_retry_after == 0, "0")
        ready = one_request(server.host, server.port, "GET", "/health/ready")
        RESULTS.check(S, "/health/ready while unwritable", f"{ready[0]} {ready[2].decode()[:100]}",
                      ready[0] == 503, "503 with a reason")
        listing = one_request(server.host, server.port, "GET", "/messages?limit=1")[0]
        RESULTS.check(S, "GET /messages while unwritable", listing, listing == 200, "200")

        chattr("-i")
        freed_at = time.monotonic()
        recovered = None
        message_id, body, expected = refused[0] if refused else (None, None, None)
        while body is not None and time.monotonic() - freed_at < 10:
            if client.post_message(body)[0] == 200:
                recovered = time.monotonic() - freed_at
                acked[message_id] = expected
                break
            time.sleep(0.05)
        RESULTS.check(S, "retry after the flag is removed: time to 200 (s)",
                      recovered if recovered is not None else "never",
                      recovered is not None and recovered < 5, "< 5 s, no restart")
        ready_after = one_request(server.host, server.port, "GET", "/health/ready")[0]
        RESULTS.check(S, "/health/ready after recovery", ready_after, ready_after == 200, "200")
        client.close()
        code, _ = server.terminate(grace=15)
        RESULTS.check(S, "SIGTERM afterwards: exit code", code, code == 0, "0")
        integrity, rows = read_db(db_path)
        lost = sum(1 for m in acked if m not in rows)
        stored_refused = sum(1 for m, _, _ in refused[1:] if m in rows)
        RESULTS.check(S, "acked / lost", f"{len(acked)} / {lost}", lost == 0, "0 lost")
        RESULTS.check(S, "refused messages stored anyway", stored_refused, stored_refused == 0, "0")
        RESULTS.check(S, "PRAGMA integrity_check", integrity, integrity == "ok", "ok")
        panics = stderr_panics([server])
        RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")
    finally:
        chattr("-i")
        client.close()
        if server.alive():
            server.kill()
