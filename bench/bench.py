#!/usr/bin/env python3
"""hookbox benchmark: drives the release binary with wrk on loopback and prints a table.

Every scenario starts a fresh server process on a fresh copy of its database, so the peak RSS
(VmHWM) read after the run belongs to that scenario alone. Each scenario runs RUNS times and the
table shows medians. Results go to stdout and to bench-results/latest.{md,json}.

Usage: bench/run.sh   (builds the binary, installs wrk if missing, then runs this)
Env:   BENCH_DURATION (seconds per run, default 5), BENCH_RUNS (default 3),
       BENCH_CONNECTIONS (default 64), BENCH_THREADS (wrk threads, default 2),
       BENCH_ONLY (comma-separated scenario names)
"""

import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_DIR = os.path.join(ROOT, "bench")
BINARY = os.path.join(ROOT, "target", "release", "hookbox")
SECRET = "bench-secret"
DURATION = int(os.environ.get("BENCH_DURATION", "5"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = int(os.environ.get("BENCH_THREADS", "2"))
SEED_ROWS = 100_000
UNIQUE_REQUESTS = 400_000
DUPLICATE_IDS = 1_000


def log(message):
    print(message, file=sys.stderr, flush=True)


def sign(body):
    return hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()


def message(i, prefix="bench"):
    """Message i of a realistic stream: opaque provider-style ids (random order, like the
    `wamid.…` ids real senders use), 50 senders, timestamps that move forward one second per
    message, and a short text."""
    digest = hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest()[:24]
    instant = 1_736_899_200 + i  # 2025-01-15T00:00:00Z + i seconds
    return json.dumps(
        {
            "message_id": f"{prefix}.{digest}",
            "from": f"+91{i % 50:010d}",
            "to": "+14155550100",
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant)),
            "text": f"Hello {i} from the benchmark, with a little padding to look like a message",
        },
        separators=(",", ":"),
    )


def write_requests(path, count, prefix):
    with open(path, "w") as out:
        for i in range(count):
            body = message(i, prefix)
            out.write(f"{sign(body)}\t{body}\n")


class Server:
    """The release binary on a free loopback port, logging to a file as it would in production."""

    def __init__(self, workdir, db_path, extra_env=None):
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
        env.update(extra_env or {})
        self.log_path = os.path.join(workdir, f"server-{time.monotonic_ns()}.log")
        self.log_file = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [BINARY], env=env, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=workdir
        )
        self.addr = self._wait_for_addr()
        self.url = f"http://{self.addr}"
        self.idle_rss_kib = self.status_kib("VmRSS")

    def _wait_for_addr(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            with open(self.log_path) as f:
                for line in f:
                    record = json.loads(line)
                    if record.get("msg") == "listening":
                        return record["addr"]
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {open(self.log_path).read()}")
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def status_kib(self, field):
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log_file.close()
        if code != 0:
            raise RuntimeError(f"server exited {code} on SIGTERM")


def wrk(url, script, env_extra=None):
    env = dict(os.environ)
    env.update({"BENCH_DIR": BENCH_DIR, "BENCH_THREADS": str(THREADS)})
    env.update(env_extra or {})
    command = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}s", "--latency",
        "-s", os.path.join(BENCH_DIR, script), url,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^BENCH (\{.*\})$", output, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no BENCH line in wrk output:\n{output}")
    return json.loads(match.group(1))


def row_count(db_path):
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def migrated_empty_db(workdir):
    """An empty database with the current schema, made by the server itself."""
    path = os.path.join(workdir, "empty.db")
    server = Server(workdir, path)
    server.stop()
    return path


def seeded_db(workdir, empty_db):
    """SEED_ROWS messages written straight into SQLite (fast), with the server's sort key."""
    path = os.path.join(workdir, "seeded.db")
    shutil.copy(empty_db, path)
    rows = []
    for i in range(SEED_ROWS):
        m = json.loads(message(i, "seed"))
        rows.append((m["message_id"], m["from"], m["to"], m["ts"], m["ts"][:-1], m["text"],
                     "2026-01-01T00:00:00.000Z"))
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


def scenarios(files):
    get = lambda path: {"script": "get.lua", "path": path}
    post = lambda requests: {"script": "webhook.lua", "path": "/webhook", "requests": requests}
    return [
        ("health_live", "empty", {}, get("/health/live")),
        ("ingest_full", "empty", {"HOOKBOX_SYNCHRONOUS": "FULL"}, post(files["unique"])),
        ("ingest_normal", "empty", {"HOOKBOX_SYNCHRONOUS": "NORMAL"}, post(files["unique"])),
        ("ingest_duplicates", "dups", {}, post(files["dups"])),
        ("messages_page", "seeded", {}, get("/messages")),
        ("messages_from", "seeded", {}, get("/messages?from=+910000000007&limit=100")),
        ("messages_since", "seeded", {}, get("/messages?since=2025-01-16T03:00:00Z")),
        ("messages_q", "seeded", {}, get("/messages?q=HELLO%204242")),
        ("messages_offset", "seeded", {}, get("/messages?offset=90000&limit=100")),
        ("stats", "seeded", {}, get("/stats")),
    ]


def run_once(workdir, name, db_template, env, spec, run):
    db_path = os.path.join(workdir, f"{name}-{run}.db")
    shutil.copy(db_template, db_path)
    server = Server(workdir, db_path, env)
    rows_before = row_count(db_path)
    try:
        result = wrk(server.url + spec["path"], spec["script"],
                     {"BENCH_REQUESTS": spec.get("requests", "")})
        result["idle_rss_mib"] = server.idle_rss_kib / 1024
        result["peak_rss_mib"] = server.status_kib("VmHWM") / 1024
    finally:
        server.stop()
    if spec["script"] == "webhook.lua":
        # After a graceful stop every answered request has its log line, so counting them is
        # exact (reading /metrics right after wrk would race the last answers).
        with open(server.log_path) as f:
            results = [json.loads(line).get("result") for line in f]
        created, duplicate = results.count("created"), results.count("duplicate")
        acknowledged = result["requests"] - result["non2xx"]
        rows = row_count(db_path) - rows_before
        # wrk stops mid-flight: a few requests may be stored but not counted by wrk.
        result["lost"] = max(0, acknowledged - rows) if "dups" not in spec["requests"] else 0
        result["rows_added"] = rows
        result["counter_mismatch"] = int(created != rows)
        result["created"], result["duplicate"] = created, duplicate
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db_path + suffix):
            os.remove(db_path + suffix)
    return result


def median(results, key):
    return statistics.median(r[key] for r in results)


def main():
    if not os.path.exists(BINARY):
        sys.exit(f"{BINARY} not found: run bench/run.sh, which builds it")
    only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
    workdir = tempfile.mkdtemp(prefix="hookbox-bench-")
    try:
        log(f"preparing in {workdir} …")
        files = {"unique": os.path.join(workdir, "unique.tsv"),
                 "dups": os.path.join(workdir, "dups.tsv")}
        write_requests(files["unique"], UNIQUE_REQUESTS, "u")
        write_requests(files["dups"], DUPLICATE_IDS, "d")
        empty = migrated_empty_db(workdir)
        dbs = {"empty": empty, "seeded": seeded_db(workdir, empty)}
        dups_db = os.path.join(workdir, "dups.db")
        shutil.copy(empty, dups_db)
        with sqlite3.connect(dups_db) as conn:
            conn.executemany(
                "INSERT INTO messages (message_id, sender, recipient, ts, ts_key, text, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(m["message_id"], m["from"], m["to"], m["ts"], m["ts"][:-1], m["text"], "x")
                 for m in (json.loads(message(i, "d")) for i in range(DUPLICATE_IDS))])
        dbs["dups"] = dups_db

        table = []
        for name, db, env, spec in scenarios(files):
            if only and name not in only:
                continue
            results = []
            for run in range(RUNS):
                log(f"{name} run {run + 1}/{RUNS} …")
                results.append(run_once(workdir, name, dbs[db], env, spec, run))
            summary = {
                "scenario": name,
                "rps": median(results, "rps"),
                "p50_ms": median(results, "p50_ms"),
                "p99_ms": median(results, "p99_ms"),
                "non2xx": sum(r["non2xx"] + r["socket_errors"] for r in results),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
                "idle_rss_mib": median(results, "idle_rss_mib"),
                "lost": sum(r.get("lost", 0) for r in results),
                "counter_mismatch": sum(r.get("counter_mismatch", 0) for r in results),
                "runs": results,
            }
            table.append(summary)

        binary_mib = os.path.getsize(BINARY) / (1024 * 1024)
        lines = [
            f"wrk: {THREADS} threads, {CONNECTIONS} connections, {DURATION}s per run, "
            f"median of {RUNS} runs; release binary {binary_mib:.2f} MiB",
            "",
            "| scenario | req/s | p50 ms | p99 ms | non-2xx | peak RSS MiB | idle RSS MiB | lost | counter≠rows |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in table:
            lines.append(
                f"| {s['scenario']} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                f"{s['non2xx']} | {s['peak_rss_mib']:.1f} | {s['idle_rss_mib']:.1f} | "
                f"{s['lost']} | {s['counter_mismatch']} |")
        by_name = {s["scenario"]: s for s in table}
        if "health_live" in by_name and "ingest_full" in by_name:
            ratio = by_name["ingest_full"]["rps"] / by_name["health_live"]["rps"]
            lines += ["", f"durable ingest / health_live throughput: {ratio:.0%}"]
        report = "\n".join(lines)
        print(report)
        out_dir = os.path.join(ROOT, "bench-results")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "latest.md"), "w") as f:
            f.write(report + "\n")
        with open(os.path.join(out_dir, "latest.json"), "w") as f:
            json.dump({"binary_mib": binary_mib, "scenarios": table}, f, indent=1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
