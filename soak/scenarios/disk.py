"""Scenario "disk": the database on a 2 MiB tmpfs, filled up: /webhook answers 503 + Retry-After
(never 200 for an unstored row, never 500), and recovers without a restart once space frees."""

import collections
import errno
import os
import subprocess
import time

from harness import CONNECTION_ERRORS
from suite import (
    Client, MOUNTS, RESULTS, RUN_ID, Server, WORKDIR, http_all_ids, make_message, one_request,
    read_db, stderr_panics
)


DISK_HEADROOM = 192 * 1024


def fill_disk(path):
    """Writes `path` until the filesystem is full; returns bytes written."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for chunk_size in (256 * 1024, 16 * 1024, 1024, 64):
            chunk = b"\0" * chunk_size
            for _ in range(10_000):
                try:
                    written += f.write(chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
        try:
            os.fsync(f.fileno())
        except OSError:
            pass
    return written


def scenario_disk():
    S = "5 disk full"
    mount_point = os.path.join(WORKDIR, "tmpfs")
    os.makedirs(mount_point)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", mount_point],
                            capture_output=True, text=True)
    if result.returncode != 0:
        RESULTS.skip(S, "disk-full scenario", "cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): "
                     + (result.stderr.strip() or f"mount exit {result.returncode}"))
        return
    MOUNTS.append(mount_point)
    db_path = os.path.join(mount_point, "full.db")
    filler = os.path.join(mount_point, "filler")
    acked = {}
    server = Server("disk", db_path)
    client = Client(server.host, server.port, timeout=10)
    try:
        for i in range(20):
            body, expected = make_message(f"{RUN_ID}-disk-pre-{i}", i, pad=1000)
            status, _, _ = client.post_message(body)
            if status == 200:
                acked[f"{RUN_ID}-disk-pre-{i}"] = expected
        RESULTS.check(S, "POSTs before the disk fills", f"{len(acked)}/20 200", len(acked) == 20, "20/20 200")
        # Fill the disk, then give back DISK_HEADROOM so the POST flood itself fills the rest:
        # the store must go from 200 to 503 mid-flood without ever acknowledging a lost row.
        filled = fill_disk(filler)
        os.truncate(filler, max(0, filled - DISK_HEADROOM))
        free = os.statvfs(mount_point)
        RESULTS.figure(S, "filler (KiB) / free before the flood (KiB)",
                       f"{(filled - DISK_HEADROOM) // 1024} / {free.f_bavail * free.f_frsize // 1024}")

        statuses = collections.Counter()
        no_retry_after = 0
        consecutive_503 = 0
        last_503_body = None
        t = time.monotonic()
        for i in range(3000):
            if consecutive_503 >= 30 or time.monotonic() - t > 30:
                break
            message_id = f"{RUN_ID}-disk-full-{i}"
            body, expected = make_message(message_id, i, pad=3000)
            try:
                status, headers, _ = client.post_message(body)
            except CONNECTION_ERRORS as error:
                statuses[type(error).__name__] += 1
                continue
            statuses[status] += 1
            if status == 200:
                acked[message_id] = expected
                consecutive_503 = 0
            elif status == 503:
                consecutive_503 += 1
                last_503_body = (message_id, body, expected)
                if "retry-after" not in headers:
                    no_retry_after += 1
        flood_secs = time.monotonic() - t
        RESULTS.figure(S, "flood while full: answers", ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
        RESULTS.figure(S, "flood while full: duration (s)", flood_secs)
        RESULTS.check(S, "200 answers while space remained (flood fills the disk)", statuses[200],
                      statuses[200] > 0, "> 0")
        RESULTS.check(S, "503 answers once full", statuses[503], statuses[503] >= 30, "≥ 30 (the store refuses)")
        RESULTS.check(S, "500 answers", statuses[500], statuses[500] == 0, "0")
        other = sum(n for k, n in statuses.items() if k not in (200, 503))
        RESULTS.check(S, "answers other than 200/503 (incl. conn errors)", other, other == 0, "0")
        RESULTS.check(S, "503 without Retry-After", no_retry_after, no_retry_after == 0, "0")
        ready = one_request(server.host, server.port, "GET", "/health/ready")
        RESULTS.figure(S, "/health/ready while full", f"{ready[0]} {ready[2].decode()[:120]}")
        live = one_request(server.host, server.port, "GET", "/health/live")[0]
        RESULTS.check(S, "/health/live while full", live, live == 200, "200")
        listing = one_request(server.host, server.port, "GET", "/messages?limit=1")[0]
        RESULTS.figure(S, "GET /messages while full", listing)

        os.remove(filler)
        freed_at = time.monotonic()
        recovered = None
        retry_statuses = collections.Counter()
        if last_503_body is not None:
            message_id, body, expected = last_503_body
            for _ in range(200):
                if time.monotonic() - freed_at > 10:
                    break
                status = client.post_message(body)[0]
                retry_statuses[status] += 1
                if status == 200:
                    recovered = time.monotonic() - freed_at
                    acked[message_id] = expected
                    break
                time.sleep(0.05)
        RESULTS.check(S, "retry of a refused message after freeing space: time to 200 (s)",
                      recovered if recovered is not None else f"never ({dict(retry_statuses)})",
                      recovered is not None and recovered < 5, "< 5 s, no restart")
        later = 0
        for i in range(20):
            message_id = f"{RUN_ID}-disk-post-{i}"
            body, expected = make_message(message_id, i, pad=1000)
            status = client.post_message(body)[0]
            if status == 200:
                later += 1
                acked[message_id] = expected
        RESULTS.check(S, "POSTs after freeing space", f"{later}/20 200", later == 20, "20/20 200")
        ready_after = one_request(server.host, server.port, "GET", "/health/ready")[0]
        RESULTS.check(S, "/health/ready after freeing space", ready_after, ready_after == 200, "200")
        api_ids, _ = http_all_ids(server)
        api_missing = len(set(acked) - api_ids)
        RESULTS.check(S, "acked ids missing from GET /messages (same process)", api_missing,
                      api_missing == 0, "0")
        client.close()
        code, secs = server.terminate(grace=15)
        RESULTS.check(S, "SIGTERM afterwards: exit code", code, code == 0, "0")
        integrity, rows = read_db(db_path)
        lost = sum(1 for m in acked if m not in rows)
        RESULTS.check(S, "total acked / lost in the file", f"{len(acked)} / {lost}", lost == 0, "0 lost")
        RESULTS.check(S, "PRAGMA integrity_check", integrity, integrity == "ok", "ok")
        RESULTS.figure(S, "rows in the file", len(rows))
        panics = stderr_panics([server])
        RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")
    finally:
        client.close()
        if server.alive():
            server.kill()
        if subprocess.run(["umount", mount_point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        if mount_point in MOUNTS:
            MOUNTS.remove(mount_point)
