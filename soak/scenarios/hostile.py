"""Scenario "hostile": issue 7's attack, all at once against HOOKBOX_MAX_CONNECTIONS=4096 and
HOOKBOX_HEADER_TIMEOUT_SECS=10: pipelined-deferred connections, absent bodies, never-reading
big-read pipelines and header dribblers, while an honest client sends signed webhooks
(SOAK_HOSTILE_KINDS picks a subset of pipelined,absent,never,dribblers)."""

import collections
import multiprocessing
import os
import queue
import resource
import socket
import statistics
import time

from harness import (
    CONNECTION_ERRORS, peer_closed_nb, percentile, raw_request, recv_available, take_responses,
    tcp_state
)
from suite import (
    Client, RESULTS, RUN_ID, RssSampler, Server, WORKDIR, build_store, make_message, one_request,
    sign, stderr_panics
)


HOSTILE_EACH = 64
HOSTILE_DRIBBLERS = 2000
HOSTILE_HONEST = 300
HOSTILE_HEADER_TIMEOUT = 10
HOSTILE_PHASE_SECS = 30.0
HOSTILE_KINDS = set(os.environ.get("SOAK_HOSTILE_KINDS", "pipelined,absent,never,dribblers").split(","))


def hostile_honest(host, port, go, stop, results):
    """The honest client of the hostile scenario, in its own process (forked before any hostile
    socket exists) so the attack loop's Python work cannot inflate its latencies. Sends
    HOSTILE_HONEST signed webhooks on one keep-alive connection once `go` is set; puts
    (latencies ms, bad statuses, errors) on `results`."""
    latencies, bad, errors = [], collections.Counter(), collections.Counter()
    go.wait(60)
    client = Client(host, port, timeout=5.0)
    consecutive_failures = 0
    for i in range(HOSTILE_HONEST):
        if stop.is_set() or consecutive_failures >= 5:
            errors["not sent (gave up)"] += HOSTILE_HONEST - i
            break
        body, _ = make_message(f"{RUN_ID}-honest-{i}", 1000 + i)
        t = time.perf_counter()
        try:
            status, _, _ = client.post_message(body)
        except CONNECTION_ERRORS as error:
            errors[type(error).__name__] += 1
            consecutive_failures += 1
            continue
        latencies.append((time.perf_counter() - t) * 1000)
        consecutive_failures = 0 if status == 200 else consecutive_failures + 1
        if status != 200:
            bad[status] += 1
        time.sleep(0.02)  # spread the 300 over the whole attack
    client.close()
    results.put((latencies, dict(bad), dict(errors)))


def scenario_hostile():
    """64 connections of each hostile kind from issue 7 and 2,000 header dribblers, while an
    honest client sends 300 signed webhooks."""
    S = "hostile"
    needed = HOSTILE_DRIBBLERS + 3 * HOSTILE_EACH + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed and (hard == resource.RLIM_INFINITY or hard >= needed):
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = needed
    if soft < needed:
        RESULTS.skip(S, "hostile connections", f"RLIMIT_NOFILE {soft} < {needed} and cannot be raised")
        return
    db_path = os.path.join(WORKDIR, "hostile.db")
    # 300 rows of ~4,000 characters: every `limit=100` page is ~400 KB, so never-readers fill
    # their socket buffers and the server has to stop writing to them.
    build_store(db_path, 300, text_len=4000)
    server = Server("hostile", db_path, {
        "HOOKBOX_MAX_CONNECTIONS": "4096",
        "HOOKBOX_HEADER_TIMEOUT_SECS": str(HOSTILE_HEADER_TIMEOUT),
    })
    sampler = RssSampler(server)
    opened = []
    honest_ms, honest_bad, honest_errors = [], collections.Counter(), collections.Counter()
    fork = multiprocessing.get_context("fork")
    go, stop_honest, honest_results = fork.Event(), fork.Event(), fork.Queue()
    honest_process = None
    try:
        base_rss = server.status_kib("VmRSS")
        honest_process = fork.Process(
            target=hostile_honest, args=(server.host, server.port, go, stop_honest, honest_results),
            daemon=True)
        honest_process.start()

        def connect(rcvbuf=None):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf:  # before connect, so the window the server sees is small from the start
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.settimeout(5)
            s.connect((server.host, server.port))
            s.setblocking(False)
            opened.append(s)
            return s

        def send_all(s, data, within=2.0):
            """Non-blocking send of as much of `data` as the kernel takes within `within`."""
            deadline = time.monotonic() + within
            view = memoryview(data)
            while view and time.monotonic() < deadline:
                try:
                    view = view[s.send(view):]
                except BlockingIOError:
                    time.sleep(0.005)
                except OSError:
                    return False
            return not view

        attack_start = time.monotonic()
        # Pipelined-deferred: one write holding a signed webhook and eight GETs.
        pipelined = []
        for i in range(HOSTILE_EACH if "pipelined" in HOSTILE_KINDS else 0):
            body, _ = make_message(f"{RUN_ID}-pipe-{i}", i)
            packet = raw_request("POST", "/webhook", [("X-Signature", sign(body)),
                                                      ("X-Request-ID", f"p{i}-0")], body)
            for k in range(1, 9):
                packet += raw_request("GET", "/health/live", [("X-Request-ID", f"p{i}-{k}")])
            s = connect()
            send_all(s, packet)
            pipelined.append({"sock": s, "buf": bytearray(), "answers": [], "closed": False})
        # Absent bodies: a body announced and never sent.
        absent = []
        for i in range(HOSTILE_EACH if "absent" in HOSTILE_KINDS else 0):
            s = connect()
            send_all(s, b"POST /webhook HTTP/1.1\r\nHost: hookbox\r\nX-Signature: 00\r\n"
                        b"Content-Length: 60000\r\n\r\n")
            absent.append({"sock": s, "opened": time.monotonic(), "buf": bytearray(),
                           "status": None, "closed_at": None})
        # Never-readers: 100 pipelined big reads each, answers never read.
        reads = b"".join(raw_request("GET", "/messages?limit=100") for _ in range(100))
        never = []
        for i in range(HOSTILE_EACH if "never" in HOSTILE_KINDS else 0):
            # A real attacker keeps its own buffers small; what the server buffers is its own
            # (its send buffer plus whatever it holds in memory), and that is what is measured.
            s = connect(rcvbuf=4096)
            send_all(s, reads)
            never.append({"sock": s, "opened": time.monotonic(), "closed_at": None})
        # Header dribblers: one byte a second, never finishing the head.
        prefix = b"GET /health/live HTTP/1.1\r\nHost: hookbox\r\nX-Dribble: "
        dribblers = []
        for i in range(HOSTILE_DRIBBLERS if "dribblers" in HOSTILE_KINDS else 0):
            try:
                s = connect()
            except OSError as error:
                RESULTS.figure(S, "dribbler connect failed", f"#{i}: {type(error).__name__}")
                break
            dribblers.append({"sock": s, "opened": time.monotonic(), "sent": 0, "cut_at": None})
        setup_secs = time.monotonic() - attack_start

        go.set()

        last_dribble = 0.0
        longest_pass = 0.0  # the resolution of every "closed after" figure below
        phase_end = attack_start + HOSTILE_PHASE_SECS
        while time.monotonic() < phase_end:
            now = time.monotonic()
            if now - last_dribble >= 1.0:
                last_dribble = now
                for d in dribblers:
                    if d["cut_at"] is not None:
                        continue
                    byte = prefix[d["sent"]:d["sent"] + 1] or b"a"
                    try:
                        d["sock"].send(byte)
                        d["sent"] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        d["cut_at"] = now - d["opened"]
            for d in dribblers:
                if d["cut_at"] is None and peer_closed_nb(d["sock"]):
                    d["cut_at"] = time.monotonic() - d["opened"]
            for p in pipelined:
                if p["closed"]:
                    continue
                data = recv_available(p["sock"])
                if data is None:
                    p["closed"] = True
                else:
                    p["buf"] += data
                    p["answers"] += take_responses(p["buf"])
            for a in absent:
                if a["closed_at"] is not None:
                    continue
                data = recv_available(a["sock"])
                if data:
                    a["buf"] += data
                    got = take_responses(a["buf"])
                    if got and a["status"] is None:
                        a["status"] = got[0][0]
                if data is None:
                    a["closed_at"] = time.monotonic() - a["opened"]
            for n in never:
                if n["closed_at"] is None and tcp_state(n["sock"]) != 1:
                    n["closed_at"] = time.monotonic() - n["opened"]
            done_dribbling = all(d["cut_at"] is not None for d in dribblers)
            done_never = all(n["closed_at"] is not None for n in never)
            done_absent = all(a["closed_at"] is not None for a in absent)
            done_pipe = all(len(p["answers"]) >= 9 for p in pipelined)
            if done_dribbling and done_never and done_absent and done_pipe and not honest_process.is_alive():
                break
            longest_pass = max(longest_pass, time.monotonic() - now)
            time.sleep(0.1)
        stop_honest.set()
        try:
            latencies, bad, errors = honest_results.get(timeout=30)
            honest_ms += latencies
            honest_bad.update(bad)
            honest_errors.update(errors)
        except queue.Empty:
            honest_errors["honest client did not report"] += 1
        honest_process.join(5)
        if honest_process.is_alive():
            honest_process.kill()
        alive = server.alive()
        threads_peak = server.threads() if alive else 0
        # The server's own count of open connections (this request's included). A never-reader
        # whose answers all fit in the socket buffers is closed by the server at its idle
        # deadline, but its FIN waits behind data the client never reads, so the client still
        # sees ESTABLISHED: only the server can say it is gone.
        server_open = None
        if alive:
            status, _, metrics_body = one_request(server.host, server.port, "GET", "/metrics")
            if status == 200:
                for line in metrics_body.decode().splitlines():
                    if line.startswith("hookbox_connections_open "):
                        server_open = float(line.split()[1])
        peak_rss, hwm = sampler.stop()
        sampler = None
        for s in opened:
            s.close()
        opened = []
        code, stop_secs = server.terminate(grace=20) if alive else (None, 0)
    finally:
        stop_honest.set()
        go.set()
        if honest_process is not None and honest_process.is_alive():
            honest_process.kill()
        if sampler is not None:
            sampler.stop()
        for s in opened:
            s.close()

    ok = len(honest_ms) - sum(honest_bad.values())
    if HOSTILE_KINDS != {"pipelined", "absent", "never", "dribblers"}:
        RESULTS.figure(S, "attacks run (SOAK_HOSTILE_KINDS)", ",".join(sorted(HOSTILE_KINDS)))
    RESULTS.figure(S, "longest pass of the attack loop (ms; + 100 ms sleep = timing resolution)",
                   longest_pass * 1000)
    RESULTS.figure(S, "attack set-up (s): connections opened", f"{setup_secs:.1f}: {len(pipelined) + len(absent) + len(never) + len(dribblers)}")
    RESULTS.check(S, f"honest webhooks answered 200 (of {HOSTILE_HONEST})", ok, ok == HOSTILE_HONEST,
                  f"{HOSTILE_HONEST}")
    if honest_bad or honest_errors:
        RESULTS.figure(S, "honest failures", ", ".join(f"{k}: {v}" for k, v in
                                                      list(honest_bad.items()) + list(honest_errors.items())))
    p99 = percentile(honest_ms, 99)
    RESULTS.figure(S, "honest webhook p50 ms", percentile(honest_ms, 50))
    RESULTS.check(S, "honest webhook p99 ms", p99, bool(honest_ms) and p99 < 50, "< 50")
    RESULTS.figure(S, "RSS before the attack (MiB)", base_rss / 1024)
    RESULTS.check(S, "peak RSS sampled every 100 ms (MiB)", peak_rss / 1024, peak_rss < 64 * 1024, "< 64")
    RESULTS.check(S, "VmHWM (MiB)", hwm / 1024, 0 < hwm < 64 * 1024, "< 64")
    RESULTS.figure(S, "server threads at the end of the attack", threads_peak)
    cut = [d["cut_at"] for d in dribblers if d["cut_at"] is not None]
    late = sum(1 for v in cut if v > HOSTILE_HEADER_TIMEOUT + 1)
    RESULTS.check(S, f"header dribblers cut within {HOSTILE_HEADER_TIMEOUT} + 1 s",
                  f"{len(cut) - late}/{len(dribblers)}",
                  len(cut) == len(dribblers) and late == 0, f"{len(dribblers)}/{len(dribblers)}")
    if cut:
        RESULTS.figure(S, "dribblers cut after (s) min / median / max",
                       f"{min(cut):.1f} / {statistics.median(cut):.1f} / {max(cut):.1f}")
    in_order = sum(
        1 for i, p in enumerate(pipelined)
        if [(st, h.get("x-request-id")) for st, h in p["answers"][:9]]
        == [(200, f"p{i}-{k}") for k in range(9)]
    )
    RESULTS.check(S, "pipelined-deferred connections answered 9/9 in order", f"{in_order}/{len(pipelined)}",
                  in_order == len(pipelined), f"{len(pipelined)}/{len(pipelined)}")
    got_408 = sum(1 for a in absent if a["status"] == 408)
    absent_closed = [a["closed_at"] for a in absent if a["closed_at"] is not None]
    RESULTS.check(S, "absent bodies: 408 / closed", f"{got_408} / {len(absent_closed)}",
                  got_408 == len(absent) and len(absent_closed) == len(absent),
                  f"{len(absent)} / {len(absent)} (at the 10 s body deadline)")
    if absent_closed:
        RESULTS.figure(S, "absent bodies closed after (s) max", max(absent_closed))
    never_closed = [n["closed_at"] for n in never if n["closed_at"] is not None]
    # A never-reader stuck writing is cut at the write deadline (10 s). One whose later reads
    # were refused (503: HOOKBOX_MAX_HELD_ANSWERS_MIB) holds nothing: its small answers fit in
    # the socket buffers, and it is closed at the idle timeout after its last answer (10 s more).
    RESULTS.check(S, "attack connections the server still holds at the end (its own gauge)",
                  "unknown" if server_open is None else f"{server_open:.0f} (the /metrics request itself: 1)",
                  server_open is not None and server_open <= 2, "≤ 2")
    RESULTS.figure(S, "never-readers the client saw closed (a FIN behind unread data is invisible)",
                   f"{len(never_closed)}/{len(never)}"
                   + (f", max {max(never_closed):.1f} s" if never_closed else ""))
    RESULTS.figure(S, "never-readers closed within 13 s (stuck writing, cut at the write deadline)",
                   f"{sum(1 for t in never_closed if t < 13)}/{len(never)}")
    RESULTS.check(S, "server alive throughout", "yes" if alive else "no", alive, "yes")
    RESULTS.check(S, "SIGTERM afterwards: exit code", f"{code} after {stop_secs:.1f}s", code == 0, "0")
    panics = stderr_panics([server])
    RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")
