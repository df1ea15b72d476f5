"""Shared pieces of the hookbox benchmark: settings, the server process, wrk, small helpers.

bench.py (throughput under wrk) and reads.py (single-client reads on a large store) both start
servers through `Server`, which reaps the process itself with `os.wait4`: the kernel then hands
back the rusage of every thread the server ever ran, which is where the context-switch counts
come from. Nothing here needs more than the standard library. Signing, waiting for the
`listening` line and /proc figures come from soak/harness.py, shared with the soak suite.
"""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "soak"))
import harness  # noqa: E402 (soak/harness.py, found through the line above)

BENCH_DIR = os.path.join(ROOT, "bench")
BINARY = os.environ.get("BENCH_BINARY") or os.path.join(ROOT, "target", "release", "hookbox")
# The previous release, run side by side with BINARY when set (bench/run.sh builds it).
BASELINE = os.environ.get("BENCH_BASELINE", "")
RESULTS_DIR = os.path.join(ROOT, "bench-results")
# Generated stores and dumps: gitignored, kept between runs because making them takes a while.
DATA_DIR = os.path.join(ROOT, "target", "bench-data")
SECRET = "bench-secret"
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))


def log(message):
    print(message, file=sys.stderr, flush=True)


def binaries():
    """(label, path) of each binary to measure, the baseline first: runs alternate in this order."""
    found = []
    if BASELINE and BASELINE != "none":
        if not os.path.exists(BASELINE):
            sys.exit(f"BENCH_BASELINE={BASELINE} not found")
        found.append(("old", BASELINE))
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found: run bench/run.sh, which builds it")
    found.append(("new", BINARY))
    return found


def sign(body):
    return harness.sign(SECRET, body)


def base_env(db_path, extra=None):
    env = dict(os.environ)
    env.update(
        {
            "WEBHOOK_SECRET": SECRET,
            "DATABASE_URL": db_path,
            "HOST": "127.0.0.1",
            "PORT": "0",
            "LOG_LEVEL": "INFO",
        }
    )
    env.update(extra or {})
    return env


class Server:
    """A hookbox binary on a free loopback port, logging to a file as it would in production.

    After `stop()`, `rusage` holds the resource usage of the whole process (all its threads,
    including the per-connection ones that have exited) as `os.wait4` reports it."""

    def __init__(self, binary, workdir, db_path, extra_env=None):
        self.log_path = os.path.join(workdir, f"server-{time.monotonic_ns()}.log")
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [binary], env=base_env(db_path, extra_env), stdout=self.log_file,
            stderr=subprocess.STDOUT, cwd=workdir,
        )
        self.rusage = None
        self.addr = self._wait_for_addr()
        self.url = f"http://{self.addr}"
        self.host, self.port = self.addr.rsplit(":", 1)
        self.idle_rss_kib = self.status_kib("VmRSS")

    def _wait_for_addr(self):
        try:
            # A migration of a large store may run first.
            return harness.wait_for_listening(self.log_path, self.process, 120)
        except RuntimeError:
            self.process.kill()
            with open(self.log_path) as f:
                raise RuntimeError(f"server did not start: {f.read()[-4000:]}") from None

    def status_kib(self, field):
        return harness.status_kib(self.process.pid, field)

    def stop(self, timeout=60):
        """SIGTERM, then reap with wait4 (not Popen.wait, which would throw the rusage away)."""
        self.process.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        while True:
            pid, status, rusage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                self.process.kill()
                pid, status, rusage = os.wait4(self.process.pid, 0)
                break
            time.sleep(0.02)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = rusage
        self.log_file.close()
        if self.process.returncode != 0:
            raise RuntimeError(f"server exited {self.process.returncode} on SIGTERM")

    def cpu_seconds(self):
        """utime + stime of the whole process so far (threads that have ended included), from
        /proc/PID/stat: read before and after a run, the difference is that run's CPU."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            # The command name may hold spaces; the fields after its closing parenthesis don't.
            fields = f.read().rsplit(")", 1)[1].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    def context_switches(self):
        """Voluntary plus involuntary switches over the whole life of the process."""
        return self.rusage.ru_nvcsw + self.rusage.ru_nivcsw


def start_wrk(url, script, env_extra=None, connections=None, threads=None):
    """wrk running in the background against url with one of bench/*.lua; see `wrk_result`."""
    connections = connections or CONNECTIONS
    threads = min(threads or THREADS, connections)
    env = dict(os.environ)
    env.update({"BENCH_DIR": BENCH_DIR, "BENCH_THREADS": str(threads)})
    env.update(env_extra or {})
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{DURATION}s", "--latency",
        "-s", os.path.join(BENCH_DIR, script), url,
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def wrk_result(process):
    """The JSON line bench/report.lua prints, once wrk has finished."""
    output, _ = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}:\n{output}")
    match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no BENCH line in wrk output:\n{output}")
    return json.loads(match.group(1))


def wrk(url, script, env_extra=None):
    return wrk_result(start_wrk(url, script, env_extra))


def row_count(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def remove_db(path):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def db_size_bytes(path):
    """The store's footprint on disk: the file plus whatever WAL and shared memory remain."""
    return sum(os.path.getsize(path + s) for s in ("", "-wal", "-shm") if os.path.exists(path + s))


def migrated_empty_db(binary, workdir, name):
    """An empty database with `binary`'s own schema, made by the server itself."""
    path = os.path.join(workdir, name)
    server = Server(binary, workdir, path)
    server.stop()
    return path


def insert_rows(db_path, messages, batch=50_000):
    """Writes messages (dicts with the NDJSON keys) straight into SQLite with the server's sort
    key: how a store is filled for a binary without `hookbox import`. The columns are those
    every schema so far has; aggregates in later schemas follow through their triggers."""
    sql = ("INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)"
           " VALUES (?, ?, ?, ?, ?, ?, ?)")
    with sqlite3.connect(db_path) as conn:
        rows = []
        for m in messages:
            rows.append((m["message_id"], m["from"], m["to"], m["ts"], m["ts"][:-1], m["text"],
                         "2026-01-01T00:00:00.000Z"))
            if len(rows) >= batch:
                conn.executemany(sql, rows)
                rows.clear()
        conn.executemany(sql, rows)
    with sqlite3.connect(db_path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def write_results(name, report, data):
    """bench-results/<name>.{md,json}; the caller also prints the report."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{name}.md"), "w") as f:
        f.write(report + "\n")
    with open(os.path.join(RESULTS_DIR, f"{name}.json"), "w") as f:
        json.dump(data, f, indent=1)
