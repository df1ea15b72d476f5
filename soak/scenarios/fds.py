"""Scenario "fds": the server under `prlimit --nofile=256:256` (and 257), 600 connection attempts:
once they close it must serve again (never a live process that accepts nothing)."""

import errno
import os
import selectors
import shutil
import socket
import time

from harness import CONNECTION_ERRORS
from suite import (
    Client, RESULTS, RUN_ID, Server, WORKDIR, make_message, one_request, sign, wait_for
)


FD_LIMIT = 256
FD_ATTEMPTS = 600
FD_CYCLES = 2
FD_LIMITS = (256, 257)  # both parities: each connection costs the server 2 fds


def flood_connections(host, port, count, wait_secs=3.0):
    """Starts `count` non-blocking connects and waits up to `wait_secs` for them.
    Returns (sockets, connected, failed, pending)."""
    selector = selectors.DefaultSelector()
    sockets, failed = [], 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        code = s.connect_ex((host, port))
        if code not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
            continue
        sockets.append(s)
        selector.register(s, selectors.EVENT_WRITE)
    connected, pending = 0, set(sockets)
    deadline = time.monotonic() + wait_secs
    while pending and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            s = key.fileobj
            selector.unregister(s)
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
            else:
                failed += 1
    selector.close()
    return sockets, connected, failed, len(pending)


def try_live(host, port, timeout):
    try:
        status, _, _ = one_request(host, port, "GET", "/health/live", timeout=timeout)
        return status
    except CONNECTION_ERRORS as error:
        return type(error).__name__


def scenario_fds():
    for fd_limit in FD_LIMITS:
        fds_with_limit(fd_limit)


def fds_with_limit(fd_limit):
    S = f"4 out of fds (nofile {fd_limit})"
    prlimit = shutil.which("prlimit")
    if prlimit:
        wrapper = [prlimit, f"--nofile={fd_limit}:{fd_limit}", "--"]
        how = "prlimit"
    else:
        wrapper = ["bash", "-c", f'ulimit -n {fd_limit} && exec "$0"']
        how = "bash ulimit -n"
    server = Server("fds", os.path.join(WORKDIR, f"fds-{fd_limit}.db"), wrapper=wrapper)
    limit = server.fd_limit()
    RESULTS.check(S, f"server fd limit (via {how})", f"{limit[0]}:{limit[1]}",
                  limit == (fd_limit, fd_limit), f"{fd_limit}:{fd_limit}")
    keep = Client(server.host, server.port, timeout=5)  # accepted before the flood
    keep.request("GET", "/health/live")
    base_fds, base_threads = server.fds(), server.threads()
    RESULTS.figure(S, "server fds / threads at start (incl. 1 kept connection)",
                   f"{base_fds} / {base_threads}")
    all_recovered = True
    during_keep = []
    try:
        for cycle in range(1, FD_CYCLES + 1):
            sockets, connected, failed, pending = flood_connections(server.host, server.port, FD_ATTEMPTS)
            try:
                time.sleep(0.5)
                peak_fds, peak_threads = server.fds(), server.threads()
                during_fresh = try_live(server.host, server.port, timeout=1.0)
                try:
                    during_keep.append(keep.request("GET", "/health/live")[0])
                    body, _ = make_message(f"{RUN_ID}-fd-{fd_limit}-{cycle}", cycle)
                    during_keep.append(keep.post_message(body)[0])
                except CONNECTION_ERRORS as error:
                    during_keep.append(type(error).__name__)
                alive_during = server.alive()
            finally:
                for s in sockets:
                    s.close()
            closed_at = time.monotonic()
            recovered = None
            while time.monotonic() - closed_at < 15:
                if try_live(server.host, server.port, timeout=0.5) == 200:
                    recovered = time.monotonic() - closed_at
                    break
                time.sleep(0.05)
            RESULTS.figure(S, f"cycle {cycle}: {FD_ATTEMPTS} connects ok / failed / pending",
                           f"{connected} / {failed} / {pending}")
            RESULTS.figure(S, f"cycle {cycle}: server fds / threads at peak", f"{peak_fds} / {peak_threads}")
            RESULTS.figure(S, f"cycle {cycle}: fresh GET /health/live while exhausted", during_fresh)
            RESULTS.check(S, f"cycle {cycle}: process alive while exhausted",
                          "yes" if alive_during else "no", alive_during, "yes")
            if recovered is None:
                all_recovered = False
                last = try_live(server.host, server.port, timeout=1.0)
                RESULTS.check(S, f"cycle {cycle}: serves again after the connections close",
                              f"no 200 within 15 s (last try: {last}; process alive: "
                              f"{'yes' if server.alive() else 'no'})", False, "GET /health/live 200")
                break
            RESULTS.check(S, f"cycle {cycle}: time to recover after close (s)", recovered, recovered < 5,
                          "GET /health/live 200 within 5 s")
            body, _ = make_message(f"{RUN_ID}-fd-after-{fd_limit}-{cycle}", cycle)
            status = one_request(server.host, server.port, "POST", "/webhook", body,
                                 {"X-Signature": sign(body)})[0]
            RESULTS.check(S, f"cycle {cycle}: POST /webhook on a new connection after recovery",
                          status, status == 200, "200")
        bad_keep = sum(1 for status in during_keep if status not in (200, 503))
        RESULTS.check(S, "kept connection while exhausted: GET, POST answers",
                      ", ".join(map(str, during_keep)), bad_keep == 0, "each 200 or 503")
        if all_recovered:
            wait_for(lambda: server.fds() <= base_fds + 4, 12, 0.25)
            RESULTS.figure(S, "server fds after recovery", server.fds())
        records, _ = server.log_records()
        accept_warnings = sum(1 for r in records if "accept failed" in str(r.get("msg", "")))
        RESULTS.figure(S, "'accept failed, retrying' log lines", accept_warnings)
    finally:
        keep.close()
    panic_text = server.stderr_text()
    panics = panic_text.count("panicked")
    where = ""
    if panics:
        line = next((l for l in panic_text.splitlines() if "panicked at" in l), "")
        where = " at " + line.split("panicked at", 1)[1].strip().rstrip(":") if line else ""
    RESULTS.check(S, "panics on stderr", f"{panics}{where}", panics == 0, "0")
    if server.alive():
        code, secs = server.terminate(grace=15)
        RESULTS.check(S, "SIGTERM afterwards: exit code", code, code == 0, "0 within 15 s")
    else:
        RESULTS.check(S, "server alive at the end", "no", False, "yes")
