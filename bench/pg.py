#!/usr/bin/env python3
"""make bench-pg: durable ingest on SQLite vs PostgreSQL, and 1, 2, 3 instances on one PostgreSQL.

Each run starts fresh: a new SQLite file, or a new throwaway PostgreSQL database
(`hookbox_bench_<pid>_<n>`, dropped afterwards). With N instances, N wrk processes run at once,
each against its own instance with CONNECTIONS/N connections and its own distinct messages (so
every request is a real insert); the table adds their throughput and shows the worst p50/p99.
After a graceful stop the rows are counted: an acknowledged message missing from the store
would show in `lost`.

On a 2-core machine hookbox, wrk and PostgreSQL share the same two cores, so more instances
show the cost of the extra hops, not scaling (see docs/BENCHMARKS.md).

Usage: bench/run-pg.sh    Env: as bench.py (BENCH_DURATION, BENCH_RUNS, BENCH_CONNECTIONS),
       BENCH_PG_URL (maintenance database, default postgres://postgres@127.0.0.1:5432/postgres)
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the shared server, wrk and request helpers)

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
REQUESTS_PER_INSTANCE = 200_000


def psql(url, sql):
    out = subprocess.run(["psql", url, "-Atqc", sql], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def database_url(name):
    base, _, _ = PG_URL.rpartition("/")
    return f"{base}/{name}"


def run_once(workdir, store, instances, files, run):
    name = f"hookbox_bench_{os.getpid()}_{store}_{instances}_{run}"
    if store == "postgres":
        psql(PG_URL, f"CREATE DATABASE {name}")
        url = database_url(name)
    else:
        url = os.path.join(workdir, f"{name}.db")
    servers = []
    try:
        # The first instance migrates alone; the others find the schema in place.
        servers = [bench.Server(workdir, url) for _ in range(instances)]
        results = [None] * instances
        connections = max(1, bench.CONNECTIONS // instances)

        def drive(index):
            results[index] = wrk_one(servers[index].url, files[index], connections)

        threads = [threading.Thread(target=drive, args=(i,)) for i in range(instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak_rss = max(server.status_kib("VmHWM") for server in servers) / 1024
    finally:
        for server in servers:
            server.stop()
    acknowledged = sum(r["requests"] - r["non2xx"] for r in results)
    if store == "postgres":
        rows = int(psql(url, "SELECT count(*) FROM messages"))
        psql(PG_URL, f"DROP DATABASE {name} WITH (FORCE)")
    else:
        rows = bench.row_count(url)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(url + suffix):
                os.remove(url + suffix)
    return {
        "rps": sum(r["rps"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "non2xx": sum(r["non2xx"] + r["socket_errors"] for r in results),
        # wrk stops mid-flight: a few requests may be stored without wrk counting them.
        "lost": max(0, acknowledged - rows),
        "peak_rss_mib": peak_rss,
    }


def wrk_one(url, requests, connections):
    """One wrk process with one thread and `connections` connections on `requests`."""
    env = dict(os.environ)
    env.update({"BENCH_DIR": bench.BENCH_DIR, "BENCH_THREADS": "1", "BENCH_REQUESTS": requests})
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{bench.DURATION}s", "--latency",
        "-s", os.path.join(bench.BENCH_DIR, "webhook.lua"), url + "/webhook",
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    line = next(l for l in output.splitlines() if l.startswith("BENCH "))
    return json.loads(line[len("BENCH "):])


def main():
    if not os.path.exists(bench.BINARY):
        sys.exit(f"{bench.BINARY} not found: run bench/run-pg.sh, which builds it")
    psql(PG_URL, "SELECT 1")
    workdir = tempfile.mkdtemp(prefix="hookbox-bench-pg-")
    try:
        bench.log(f"preparing in {workdir} …")
        files = []
        for index in range(3):
            path = os.path.join(workdir, f"unique-{index}.tsv")
            bench.write_requests(path, REQUESTS_PER_INSTANCE, f"i{index}")
            files.append(path)
        table = []
        for store, instances in [("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3)]:
            results = []
            for run in range(bench.RUNS):
                bench.log(f"{store} x{instances} run {run + 1}/{bench.RUNS} …")
                results.append(run_once(workdir, store, instances, files, run))
            table.append({
                "scenario": f"ingest {store} x{instances}",
                "rps": statistics.median(r["rps"] for r in results),
                "p50_ms": statistics.median(r["p50_ms"] for r in results),
                "p99_ms": statistics.median(r["p99_ms"] for r in results),
                "non2xx": sum(r["non2xx"] for r in results),
                "lost": sum(r["lost"] for r in results),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
                "runs": results,
            })
        lines = [
            f"wrk: {bench.CONNECTIONS} connections in all, {bench.DURATION}s per run, "
            f"median of {bench.RUNS} runs; durable commits (SQLite FULL, synchronous_commit on)",
            "",
            "| scenario | req/s | p50 ms | p99 ms | non-2xx | lost | peak RSS MiB (per instance) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for s in table:
            lines.append(
                f"| {s['scenario']} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                f"{s['non2xx']} | {s['lost']} | {s['peak_rss_mib']:.1f} |")
        report = "\n".join(lines)
        print(report)
        out_dir = os.path.join(bench.ROOT, "bench-results")
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "postgres.md"), "w") as f:
            f.write(report + "\n")
        with open(os.path.join(out_dir, "postgres.json"), "w") as f:
            json.dump(table, f, indent=1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
