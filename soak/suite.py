"""The soak suite's own machinery: settings, the results table, the server under test (a release
binary on a loopback port, killed at exit), load that records every acknowledged message, and
checks of a store after a restart. Scenarios (soak/scenarios/) import what they use from here
and from harness.py (shared with bench/).
"""

import atexit
import collections
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid

import harness
from harness import CONNECTION_ERRORS, one_request  # noqa: F401 (re-exported to scenarios)

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
LOAD_THREADS = 8
LOAD_MAX_PER_THREAD = 20_000  # far above what 2 s can send; a bound, not a target
rng = random.Random(SEED)
WORKDIR = tempfile.mkdtemp(prefix=f"hookbox-soak-{RUN_ID}-")
SERVERS = []  # every Server started, so cleanup can kill the ones still alive
MOUNTS = []  # tmpfs mount points to unmount on exit


def log(message):
    elapsed = time.monotonic() - SUITE_START
    print(f"[soak {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


class SuiteTimeout(BaseException):
    """Raised by the watchdog; a BaseException so scenario error handling does not swallow it."""


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
        try:
            return harness.wait_for_listening(self.log_path, self.process, timeout, self.name)
        except RuntimeError as error:
            raise RuntimeError(
                f"{error}: {self.stdout_text()[-2000:]} {self.stderr_text()[-2000:]}"
            ) from None

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def status_kib(self, field):
        return harness.status_kib(self.pid, field)

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


def sign(body):
    return harness.sign(SECRET, body)


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


class Client(harness.Client):
    """harness.Client signing with the suite's secret."""

    secret = SECRET


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


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def open_idle(host, port, count, timeout=5.0):
    sockets = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=timeout)
        # Blocking mode without a timeout: Python polls *before* recv on a socket with a timeout,
        # which would make the MSG_DONTWAIT peek in peer_closed wait for the whole timeout.
        s.settimeout(None)
        sockets.append(s)
    return sockets


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
