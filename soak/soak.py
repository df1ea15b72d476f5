#!/usr/bin/env python3
"""hookbox fault tests ("soak"): drive the release binary through crashes, signals, idle
connections, descriptor exhaustion and a full disk, and check that it keeps its promises.

Scenarios (each adds measured figures and pass/fail checks to the summary table):
  crash    SIGKILL under concurrent load at a random instant, 5 rounds on one database file:
           every acknowledged (200) message must be present after restart; integrity_check ok.
  sigterm  SIGTERM under the same load: exit 0 quickly, nothing acknowledged is lost.
  idle     1,000 idle keep-alive connections: latency of real traffic, RSS, threads per
           connection; and with the default read timeout the server closes them after ~10 s.
  fds      the server under `prlimit --nofile=256:256`, 600 connection attempts: once they
           close it must serve again (never a live process that accepts nothing).
  disk     the database on a 2 MiB tmpfs, filled up: /webhook answers 503 + Retry-After (never
           200 for an unstored row, never 500), and recovers without a restart once space frees.
  readonly the database and its WAL made unwritable while the server runs (`chattr +i`, which
           binds root too): 503 + Retry-After, /health/ready says so, reads still work; writes
           succeed again without a restart once the flag is removed.
  hostile  issue 7's attack, all at once against HOOKBOX_MAX_CONNECTIONS=4096 and
           HOOKBOX_HEADER_TIMEOUT_SECS=10: 64 pipelined-deferred connections (a signed webhook
           and eight GETs in one write), 64 absent bodies, 64 never-reading big-read pipelines,
           2,000 header dribblers (a byte a second), while an honest client sends 300 signed
           webhooks: all 200, p99 < 50 ms, peak RSS < 64 MiB, dribblers cut within 10 + 1 s,
           pipelined answers complete and in order.
  reads_1m the worst reads of issue 7 (q=e with offset 2^63-1, deep offsets, /stats, the busiest
           sender) in parallel on a 1,000,000-message store built with sqlite3 in the temp dir:
           peak RSS < 64 MiB, every answer 200 or 503 with Retry-After.

Python 3 standard library only; everything on 127.0.0.1 with OS-chosen ports; every loop is
bounded in count and time; a watchdog ends the whole suite after SOAK_BUDGET_SECS.
Exit status: 0 if every check passed (skips allowed), 1 otherwise.

Usage: soak/run.sh (builds the binary first), or python3 soak/soak.py [scenario ...]
Env:   SOAK_SEED (random seed), SOAK_BUDGET_SECS (default 520), SOAK_HOSTILE_KINDS (subset of
       pipelined,absent,never,dribblers for the hostile scenario; default all), SOAK_KEEP=1 (keep the temp dir)
"""

import atexit
import collections
import errno
import hashlib
import hmac
import http.client
import json
import multiprocessing
import os
import queue
import random
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "hookbox")
RESULTS_DIR = os.path.join(ROOT, "soak-results")
SECRET = "soak-secret"
RUN_ID = uuid.uuid4().hex[:8]
SEED = int(os.environ.get("SOAK_SEED", str(int(time.time()) % 1_000_000)))
BUDGET_SECS = float(os.environ.get("SOAK_BUDGET_SECS", "520"))
KEEP = os.environ.get("SOAK_KEEP") == "1"
SUITE_START = time.monotonic()
MIB = 1024 * 1024

# Load shape shared by the crash and SIGTERM scenarios.
LOAD_THREADS = 8
LOAD_MAX_PER_THREAD = 20_000  # far above what 2 s can send; a bound, not a target
CRASH_ROUNDS = 5
SIGTERM_ROUNDS = 3
SIGTERM_GRACE_SECS = 10.0
IDLE_CONNECTIONS = 1000
FD_LIMIT = 256
FD_ATTEMPTS = 600
FD_CYCLES = 2
FD_LIMITS = (256, 257)  # both parities: each connection costs the server 2 fds
DISK_HEADROOM = 192 * 1024
BURST_CONNECTIONS = 200
BURST_ROUNDS = 5
BURST_WAIT_SECS = 2.0

rng = random.Random(SEED)
WORKDIR = tempfile.mkdtemp(prefix=f"hookbox-soak-{RUN_ID}-")
SERVERS = []  # every Server started, so cleanup can kill the ones still alive
MOUNTS = []  # tmpfs mount points to unmount on exit


def log(message):
    elapsed = time.monotonic() - SUITE_START
    print(f"[soak {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


class SuiteTimeout(BaseException):
    """Raised by the watchdog; a BaseException so scenario error handling does not swallow it."""


# --------------------------------------------------------------------------------------------
# Results


class Results:
    def __init__(self):
        self.rows = []  # (scenario, figure, value, requirement, outcome) outcome: PASS/FAIL/SKIP/""

    def figure(self, scenario, name, value):
        self.rows.append((scenario, name, fmt(value), "", ""))

    def check(self, scenario, name, value, ok, requirement):
        self.rows.append((scenario, name, fmt(value), requirement, "PASS" if ok else "FAIL"))
        if not ok:
            log(f"FAIL {scenario}: {name} = {fmt(value)} (required: {requirement})")
        return ok

    def skip(self, scenario, name, why):
        self.rows.append((scenario, name, "—", why, "SKIP"))
        log(f"SKIP {scenario}: {name}: {why}")

    def failures(self):
        return [row for row in self.rows if row[4] == "FAIL"]

    def markdown(self, header_lines):
        lines = list(header_lines) + [
            "",
            "| scenario | figure | value | requirement | result |",
            "|---|---|---:|---|---|",
        ]
        for scenario, name, value, requirement, outcome in self.rows:
            cell = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| {cell(scenario)} | {cell(name)} | {cell(value)} | {cell(requirement)} | {outcome} |"
            )
        failures = self.failures()
        skips = [row for row in self.rows if row[4] == "SKIP"]
        checks = [row for row in self.rows if row[4] in ("PASS", "FAIL")]
        lines += [
            "",
            f"**{len(checks) - len(failures)}/{len(checks)} checks passed**, "
            f"{len(failures)} failed, {len(skips)} skipped.",
        ]
        for scenario, name, value, requirement, _ in failures:
            lines.append(f"- FAIL {scenario}: {name} = {value} (required: {requirement})")
        for scenario, name, _, why, _ in skips:
            lines.append(f"- SKIP {scenario}: {name}: {why}")
        return "\n".join(lines)


def fmt(value):
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}" if abs(value) < 0.1 else f"{value:.2f}"
    return str(value)


RESULTS = Results()


# --------------------------------------------------------------------------------------------
# The server under test


def base_env():
    """The caller's environment without anything that would configure the server."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HOOKBOX_")
        and key not in ("DATABASE_URL", "WEBHOOK_SECRET", "LOG_LEVEL", "HOST", "PORT")
    }
    env.update({"WEBHOOK_SECRET": SECRET, "HOST": "127.0.0.1", "PORT": "0", "LOG_LEVEL": "INFO"})
    return env


class Server:
    counter = 0

    def __init__(self, name, db_path, env=None, wrapper=(), start_timeout=20.0):
        Server.counter += 1
        self.name = f"{name}-{Server.counter}"
        self.log_path = os.path.join(WORKDIR, f"{self.name}.stdout")
        self.err_path = os.path.join(WORKDIR, f"{self.name}.stderr")
        environment = base_env()
        environment["DATABASE_URL"] = db_path
        environment.update(env or {})
        self.started = time.monotonic()
        with open(self.log_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                list(wrapper) + [BINARY],
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=WORKDIR,
            )
        SERVERS.append(self)
        self.addr = self._wait_for_listening(start_timeout)
        self.startup_secs = time.monotonic() - self.started
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def _wait_for_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                for line in f:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("msg") == "listening":
                        return record["addr"]
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited {self.process.returncode} before listening: "
                    f"{self.stdout_text()[-2000:]} {self.stderr_text()[-2000:]}"
                )
            time.sleep(0.02)
        raise RuntimeError(f"{self.name} did not log 'listening' within {timeout}s")

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def status_kib(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def threads(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def fds(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_limit(self):
        with open(f"/proc/{self.pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    parts = line.split()
                    return int(parts[3]), int(parts[4])
        return None

    def kill(self):
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def terminate(self, grace):
        """SIGTERM, then wait up to `grace` seconds. Returns (exit code or None, seconds)."""
        start = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            return None, time.monotonic() - start
        return code, time.monotonic() - start

    def stop(self, grace=20.0):
        """Graceful stop for housekeeping; raises if the server does not exit 0."""
        code, secs = self.terminate(grace)
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code} on SIGTERM after {secs:.1f}s")
        return secs

    def stdout_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr_text(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_records(self):
        """(records, number of lines that are not JSON objects)."""
        records, bad = [], 0
        for line in self.stdout_text().splitlines():
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError
                records.append(record)
            except ValueError:
                bad += 1
        return records, bad


def cleanup():
    for server in SERVERS:
        try:
            if server.alive():
                server.process.send_signal(signal.SIGKILL)
                server.process.wait(timeout=10)
        except Exception:
            pass
    for mount_point in MOUNTS[:]:
        if subprocess.run(["umount", mount_point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mount_point], capture_output=True)
        MOUNTS.remove(mount_point)
    if not KEEP:
        shutil.rmtree(WORKDIR, ignore_errors=True)


atexit.register(cleanup)


# --------------------------------------------------------------------------------------------
# HTTP


def sign(body):
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def make_message(message_id, seq, pad=0):
    """A valid message; the expected stored row is (from, to, ts, text)."""
    fields = {
        "message_id": message_id,
        "from": f"+91{seq % 97:010d}",
        "to": "+14155550100",
        "ts": f"2025-02-{1 + seq % 28:02d}T{seq % 24:02d}:{seq % 60:02d}:{(seq // 7) % 60:02d}.{seq % 1000:03d}Z",
        "text": f"soak {message_id}" + ("x" * pad),
    }
    body = json.dumps(fields, separators=(",", ":")).encode()
    return body, (fields["from"], fields["to"], fields["ts"], fields["text"])


CONNECTION_ERRORS = (OSError, http.client.HTTPException)


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects (and counts it) when the server closes."""

    def __init__(self, host, port, timeout=10.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
        except CONNECTION_ERRORS:
            self.close()
            raise
        if response.will_close:
            self.close()
            self.reconnects += 1
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def post_message(self, body):
        return self.request(
            "POST", "/webhook", body, {"X-Signature": sign(body), "Content-Type": "application/json"}
        )

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def one_request(host, port, method, path, body=None, headers=None, timeout=5.0):
    client = Client(host, port, timeout)
    try:
        return client.request(method, path, body, headers)
    finally:
        client.close()


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


# --------------------------------------------------------------------------------------------
# Load: LOAD_THREADS clients, each on its own keep-alive connection, sending unique messages


class Load:
    def __init__(self, server, prefix, threads=LOAD_THREADS, max_secs=30.0):
        self.host, self.port = server.host, server.port
        self.prefix = prefix
        self.stop_event = threading.Event()
        self.phase = "before"  # set to "after" once the fault is injected
        self.lock = threading.Lock()
        self.acked = {}  # message_id -> expected row, for every 200
        self.in_doubt = []  # sent, no answer (connection failed): may or may not be stored
        self.statuses = collections.Counter()  # (phase, status)
        self.errors = collections.Counter()  # (phase, exception name)
        self.no_retry_after = 0  # 503s without Retry-After
        self.max_secs = max_secs
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def start(self):
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()

    def stop(self, timeout=15.0):
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    def _run(self, index):
        client = Client(self.host, self.port, timeout=5.0)
        deadline = self.started + self.max_secs
        seq = 0
        while not self.stop_event.is_set() and seq < LOAD_MAX_PER_THREAD and time.monotonic() < deadline:
            message_id = f"{self.prefix}-t{index}-{seq}"
            body, expected = make_message(message_id, seq * LOAD_THREADS + index)
            seq += 1
            try:
                status, headers, _ = client.post_message(body)
            except CONNECTION_ERRORS as error:
                phase = self.phase
                refused = isinstance(error, ConnectionRefusedError)
                with self.lock:
                    self.errors[(phase, type(error).__name__)] += 1
                    if not refused:  # a refused connect sent nothing; anything else may have
                        self.in_doubt.append(message_id)
                if refused:
                    time.sleep(0.01)  # the server is gone; do not spin
                continue
            phase = self.phase
            with self.lock:
                self.statuses[(phase, status)] += 1
                if status == 200:
                    self.acked[message_id] = expected
                elif status == 503 and "retry-after" not in headers:
                    self.no_retry_after += 1
        client.close()

    def count(self, status=None, phase=None):
        with self.lock:
            return sum(
                n for (p, s), n in self.statuses.items()
                if (status is None or s == status) and (phase is None or p == phase)
            )

    def error_count(self, phase=None):
        with self.lock:
            return sum(n for (p, _), n in self.errors.items() if phase is None or p == phase)


# --------------------------------------------------------------------------------------------
# Verification


def read_db(db_path):
    """Opens the file read-only (server stopped). Returns (integrity_check result, rows by id)."""
    uri = "file:" + urllib.parse.quote(db_path) + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        integrity = ";".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))
        rows = {
            r[0]: (r[1], r[2], r[3], r[4])
            for r in conn.execute("SELECT message_id, sender, recipient, ts, text FROM messages")
        }
    finally:
        conn.close()
    return integrity, rows


def http_all_ids(server, page=100, max_pages=5000):
    """Every message_id through GET /messages paging; returns (ids, total reported)."""
    client = Client(server.host, server.port, timeout=30)
    ids, offset, total = set(), 0, None
    try:
        for _ in range(max_pages):
            status, _, data = client.request("GET", f"/messages?limit={page}&offset={offset}")
            if status != 200:
                raise RuntimeError(f"GET /messages answered {status}: {data[:200]!r}")
            document = json.loads(data)
            total = document["total"]
            ids.update(item["message_id"] for item in document["data"])
            offset += len(document["data"])
            if not document["data"] or offset >= total:
                break
    finally:
        client.close()
    return ids, total


def verify_after_restart(name, db_path, acked, env=None):
    """Restarts the server on `db_path`, checks readiness and the API's view of every acked id,
    stops it, then reads the file itself: integrity, every acked id present with its content.
    Returns a dict of figures."""
    server = Server(f"{name}-verify", db_path, env)
    figures = {"restart_secs": server.startup_secs}
    status, _, body = one_request(server.host, server.port, "GET", "/health/ready")
    figures["ready_status"] = status
    api_ids, api_total = http_all_ids(server)
    figures["api_missing"] = len(set(acked) - api_ids)
    figures["api_total"] = api_total
    server.stop()
    integrity, rows = read_db(db_path)
    figures["integrity"] = integrity
    figures["rows"] = len(rows)
    figures["lost"] = sum(1 for message_id in acked if message_id not in rows)
    figures["mismatched"] = sum(
        1 for message_id, expected in acked.items()
        if message_id in rows and rows[message_id] != expected
    )
    figures["api_rows_disagree"] = int(api_total != len(rows) or api_ids != set(rows))
    figures["rows_by_id"] = rows
    return figures


def stderr_panics(servers):
    return sum(s.stderr_text().count("panicked") for s in servers)


# --------------------------------------------------------------------------------------------
# Scenario 1: SIGKILL at a random instant under load


def scenario_crash():
    S = "1 crash (SIGKILL)"
    db_path = os.path.join(WORKDIR, "crash.db")
    all_acked = {}
    total_in_doubt = total_in_doubt_stored = total_sent = 0
    lost_total = mismatched_total = 0
    integrity_ok = ready_ok = api_ok = True
    kill_at, rates, restarts = [], [], []
    non_200 = 0
    for round_no in range(1, CRASH_ROUNDS + 1):
        server = Server("crash", db_path)
        load = Load(server, f"{RUN_ID}-c{round_no}")
        delay = rng.uniform(0.5, 2.0)
        load.start()
        time.sleep(delay)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        load.phase = "after"
        killed_after = time.monotonic() - load.started
        stopped = load.stop()
        kill_at.append(killed_after)
        acked_round = dict(load.acked)
        all_acked.update(acked_round)
        total_sent += load.count() + load.error_count() - sum(
            n for (_, name), n in load.errors.items() if name == "ConnectionRefusedError")
        non_200 += load.count() - load.count(200)
        rates.append(len(acked_round) / killed_after)
        if not stopped:
            RESULTS.check(S, f"round {round_no}: load threads stopped", False, False, "all stop")
        figures = verify_after_restart("crash", db_path, all_acked)
        restarts.append(figures["restart_secs"])
        rows = figures["rows_by_id"]
        in_doubt = [m for m in load.in_doubt if m.startswith(f"{RUN_ID}-c{round_no}-")]
        total_in_doubt += len(in_doubt)
        total_in_doubt_stored += sum(1 for m in in_doubt if m in rows)
        lost_total = figures["lost"]  # cumulative over every round so far
        mismatched_total = figures["mismatched"]
        integrity_ok &= figures["integrity"] == "ok"
        ready_ok &= figures["ready_status"] == 200
        api_ok &= figures["api_missing"] == 0 and not figures["api_rows_disagree"]
        log(
            f"crash round {round_no}: killed at {killed_after:.2f}s, acked {len(acked_round)}, "
            f"in doubt {len(in_doubt)}, rows {figures['rows']}, lost {figures['lost']}, "
            f"integrity {figures['integrity']}"
        )
    RESULTS.figure(S, "rounds (8 clients, keep-alive)", CRASH_ROUNDS)
    RESULTS.figure(S, "SIGKILL at (s after load start)", ", ".join(f"{t:.2f}" for t in kill_at))
    RESULTS.figure(S, "requests sent (refused connects not counted)", total_sent)
    RESULTS.figure(S, "non-200 answers (503 = queue shed)", non_200)
    RESULTS.figure(S, "acked ingest rate (msg/s, median)", statistics.median(rates))
    RESULTS.check(S, "total acked (200)", len(all_acked), len(all_acked) > 0, "> 0")
    RESULTS.check(S, "acked but lost", lost_total, lost_total == 0, "0")
    RESULTS.check(S, "acked but stored differently", mismatched_total, mismatched_total == 0, "0")
    RESULTS.figure(S, "in flight at kill (no answer)", total_in_doubt)
    RESULTS.figure(S, "  of which stored anyway", total_in_doubt_stored)
    RESULTS.check(S, "PRAGMA integrity_check after every round", "ok" if integrity_ok else "NOT ok",
                  integrity_ok, "ok")
    RESULTS.check(S, "restart on crashed file: /health/ready", 200 if ready_ok else "not 200",
                  ready_ok, "200 every round")
    RESULTS.figure(S, "restart to listening (s, max)", max(restarts))
    RESULTS.check(S, "GET /messages paging sees every acked id, total = rows", "yes" if api_ok else "no",
                  api_ok, "yes")
    panics = stderr_panics([s for s in SERVERS if s.name.startswith("crash")])
    RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")


# --------------------------------------------------------------------------------------------
# Scenario 2: SIGTERM under load


def scenario_sigterm():
    S = "2 SIGTERM under load"
    db_path = os.path.join(WORKDIR, "sigterm.db")
    all_acked = {}
    exit_codes, stop_secs = [], []
    after_200 = after_503 = after_errors = before_503 = no_retry_after = 0
    error_kinds = collections.Counter()
    log_ok = True
    in_doubt = in_doubt_stored = 0
    lost = mismatched = 0
    integrity_ok = True
    for round_no in range(1, SIGTERM_ROUNDS + 1):
        server = Server("sigterm", db_path)
        load = Load(server, f"{RUN_ID}-t{round_no}")
        delay = rng.uniform(0.5, 2.0)
        load.start()
        time.sleep(delay)
        load.phase = "after"
        code, secs = server.terminate(grace=30.0)
        load.stop()
        exit_codes.append(code)
        stop_secs.append(secs)
        all_acked.update(load.acked)
        after_200 += load.count(200, "after")
        after_503 += load.count(503, "after")
        before_503 += load.count(503, "before")
        after_errors += load.error_count("after")
        no_retry_after += load.no_retry_after
        for (phase, name), n in load.errors.items():
            error_kinds[name] += n
        records, bad_lines = server.log_records()
        if bad_lines or not records or records[-1].get("msg") != "stopped":
            log_ok = False
        figures = verify_after_restart("sigterm", db_path, all_acked)
        lost, mismatched = figures["lost"], figures["mismatched"]
        in_doubt += len(load.in_doubt)
        in_doubt_stored += sum(1 for m in load.in_doubt if m in figures["rows_by_id"])
        integrity_ok &= figures["integrity"] == "ok"
        log(
            f"sigterm round {round_no}: SIGTERM at {delay:.2f}s, exit {code} after {secs:.2f}s, "
            f"acked {len(load.acked)}, after-signal 200/503/conn-errors "
            f"{load.count(200, 'after')}/{load.count(503, 'after')}/{load.error_count('after')}"
        )
    RESULTS.figure(S, "rounds (8 clients, keep-alive)", SIGTERM_ROUNDS)
    RESULTS.check(S, "exit codes", ", ".join(map(str, exit_codes)),
                  all(c == 0 for c in exit_codes), "all 0")
    RESULTS.check(S, "SIGTERM to exit (s, max)", max(stop_secs),
                  max(stop_secs) < SIGTERM_GRACE_SECS, f"< {SIGTERM_GRACE_SECS:.0f}")
    RESULTS.figure(S, "SIGTERM to exit (s, median)", statistics.median(stop_secs))
    RESULTS.check(S, "total acked (200)", len(all_acked), len(all_acked) > 0, "> 0")
    RESULTS.check(S, "acked but lost", lost, lost == 0, "0")
    RESULTS.check(S, "acked but stored differently", mismatched, mismatched == 0, "0")
    RESULTS.check(S, "PRAGMA integrity_check", "ok" if integrity_ok else "NOT ok", integrity_ok, "ok")
    RESULTS.figure(S, "after signal: 200 answers", after_200)
    RESULTS.figure(S, "after signal: 503 answers", after_503)
    RESULTS.figure(S, "after signal: connection errors", after_errors)
    RESULTS.figure(S, "requests without an answer (sent, then connection closed)", in_doubt)
    RESULTS.figure(S, "  of which stored anyway", in_doubt_stored)
    RESULTS.figure(S, "connection error kinds", ", ".join(f"{k} {v}" for k, v in error_kinds.most_common()) or "none")
    RESULTS.figure(S, "503 before the signal (queue shed)", before_503)
    RESULTS.check(S, "503 without Retry-After", no_retry_after, no_retry_after == 0, "0")
    RESULTS.check(S, "stdout all JSON lines, last is 'stopped'", "yes" if log_ok else "no", log_ok, "yes")
    panics = stderr_panics([s for s in SERVERS if s.name.startswith("sigterm")])
    RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")


# --------------------------------------------------------------------------------------------
# Scenario 3: idle connections


def open_idle(host, port, count, timeout=5.0):
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=timeout)
        # Blocking mode without a timeout: Python polls *before* recv on a socket with a timeout,
        # which would make the MSG_DONTWAIT peek in peer_closed wait for the whole timeout.
        s.settimeout(None)
        sockets.append(s)
    return sockets


def peer_closed(sock):
    """True if the server closed this connection (EOF or reset); False while it is open."""
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b""


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


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


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


# --------------------------------------------------------------------------------------------
# Scenario 4: out of file descriptors


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


# --------------------------------------------------------------------------------------------
# Scenario 5: disk full


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


# --------------------------------------------------------------------------------------------
# Hostile clients (issue 7) and reads on a 1M-message store


def build_store(db_path, count, text_len=40, senders=97, busiest_share=0.2):
    """Writes a schema-1 store (sql/001_init.sql, `PRAGMA user_version = 1`) directly with
    sqlite3: much faster than webhooks. The server migrates it at start. Returns the busiest
    sender. The file lives in WORKDIR (under /tmp), never in the repository."""
    with open(os.path.join(ROOT, "sql", "001_init.sql")) as f:
        schema = f.read()
    conn = sqlite3.connect(db_path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(schema)
        busiest = "+910000000000"
        filler = ("the quick brown fox jumps over the lazy dog " * (text_len // 40 + 1))[:text_len]

        def rows():
            for i in range(count):
                sender = busiest if i % 100 < busiest_share * 100 else f"+91{1 + i % senders:010d}"
                ts = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}Z"
                yield (f"m{i:08d}", sender, "+14155550100", ts, ts[:19], f"{i} {filler}",
                       "2025-01-01T00:00:00.000Z")

        with conn:
            conn.executemany(
                "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)", rows())
        conn.execute("PRAGMA user_version = 1")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return busiest


class RssSampler:
    """Samples VmRSS every 100 ms in a thread; `stop()` returns (peak sampled KiB, VmHWM KiB)."""

    def __init__(self, server):
        self.server = server
        self.peak = 0
        self.samples = 0
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_event.is_set():
            try:
                self.peak = max(self.peak, self.server.status_kib("VmRSS"))
                self.samples += 1
            except OSError:
                return
            self.stop_event.wait(0.1)

    def stop(self):
        self.stop_event.set()
        self.thread.join(2)
        try:
            hwm = self.server.status_kib("VmHWM")
        except OSError:
            hwm = 0
        return self.peak, hwm


def raw_request(method, target, headers=(), body=b"", close=False):
    lines = [f"{method} {target} HTTP/1.1", "Host: hookbox"]
    lines += [f"{name}: {value}" for name, value in headers]
    if method == "POST" or body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def take_responses(buffer):
    """Complete responses at the front of `buffer` (a bytearray, consumed): [(status, headers)]."""
    out = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            return out
        head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
        try:
            status = int(head[0].split(" ")[1])
        except (IndexError, ValueError):
            status = -1
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        if len(buffer) < end + 4 + length:
            return out
        del buffer[:end + 4 + length]
        if status >= 200 or status < 0:
            out.append((status, headers))


def tcp_state(sock):
    """The kernel's TCP state of `sock` (1 ESTABLISHED, 7 CLOSE, 8 CLOSE_WAIT …), or 0."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return 0


HOSTILE_EACH = 64
HOSTILE_DRIBBLERS = 2000
HOSTILE_HONEST = 300
HOSTILE_HEADER_TIMEOUT = 10
HOSTILE_PHASE_SECS = 30.0
# Which attacks run (all by default); e.g. SOAK_HOSTILE_KINDS=absent,never,dribblers to see the
# others on a server that the pipelined packet hangs outright.
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


def peer_closed_nb(sock):
    """`peer_closed` for a non-blocking socket: EOF or reset, without consuming data."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return data == b"" or data.startswith(b"H")  # an answer (408) counts as cut


def recv_available(sock):
    """Everything readable now (b"" if nothing yet), or None once the peer closed."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return b"".join(chunks)
        except OSError:
            return None
        if not data:
            return None if not chunks else b"".join(chunks)
        chunks.append(data)


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


# --------------------------------------------------------------------------------------------


SCENARIOS = [
    ("crash", scenario_crash),
    ("sigterm", scenario_sigterm),
    ("idle", scenario_idle),
    ("fds", scenario_fds),
    ("disk", scenario_disk),
    ("readonly", scenario_readonly),
    ("hostile", scenario_hostile),
    ("reads_1m", scenario_reads_1m),
]


def on_alarm(signum, frame):
    raise SuiteTimeout(f"suite watchdog: over {BUDGET_SECS:.0f}s")


def on_term(signum, frame):
    raise SystemExit(f"soak interrupted by signal {signum}")


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "vendor", "Cargo.toml"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (+ uncommitted changes in src/)" if dirty else "")
    except OSError:
        return "unknown"


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found: run soak/run.sh, which builds it")
    wanted = set(sys.argv[1:])
    unknown = wanted - {name for name, _ in SCENARIOS}
    if unknown:
        sys.exit(f"unknown scenario(s) {sorted(unknown)}; choose from {[n for n, _ in SCENARIOS]}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 8192 if hard == resource.RLIM_INFINITY else min(hard, 8192)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(BUDGET_SECS))
    log(f"run {RUN_ID}, seed {SEED}, workdir {WORKDIR}, binary {BINARY}")
    durations = {}
    try:
        for name, function in SCENARIOS:
            if wanted and name not in wanted:
                continue
            log(f"scenario {name} …")
            t = time.monotonic()
            try:
                function()
            except Exception as error:  # a broken scenario is a failed check, not a crash
                RESULTS.check(name, "scenario ran to completion", f"{type(error).__name__}: {error}",
                              False, "no error")
            finally:
                for server in SERVERS:
                    if server.alive():
                        server.kill()
            durations[name] = time.monotonic() - t
            log(f"scenario {name} done in {durations[name]:.1f}s")
    except SuiteTimeout as timeout:
        RESULTS.check("suite", "finished within budget", str(timeout), False, f"< {BUDGET_SECS:.0f} s")
    finally:
        signal.alarm(0)

    total = time.monotonic() - SUITE_START
    header = [
        "# hookbox soak results",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} · git {git_revision()} · {os.cpu_count()} CPUs · "
        f"Python {sys.version.split()[0]} · SQLite (client) {sqlite3.sqlite_version} · seed {SEED}",
        f"release binary {os.path.getsize(BINARY) / MIB:.2f} MiB · suite {total:.0f} s ("
        + ", ".join(f"{n} {d:.0f} s" for n, d in durations.items()) + ")",
    ]
    report = RESULTS.markdown(header)
    print(report)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "latest.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(RESULTS_DIR, "latest.json"), "w") as f:
        json.dump({
            "seed": SEED, "run": RUN_ID, "seconds": total, "durations": durations,
            "rows": [dict(zip(("scenario", "figure", "value", "requirement", "result"), row))
                     for row in RESULTS.rows],
        }, f, indent=1)
    return 1 if RESULTS.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
