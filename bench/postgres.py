"""SQLite against PostgreSQL, and 1, 2, 3 instances on one PostgreSQL (issue 9).

Runs only when BENCH_PG_URL names a PostgreSQL the benchmark may create databases in (say
postgres://root@127.0.0.1:5432/postgres); every run gets a throwaway database, dropped after.
Durable ingest only: N hookbox instances on the same database, one wrk per instance with its
own share of the pre-signed messages (BENCH_CONNECTIONS split between them), so the row counts
check exactly-once across instances. A single-instance SQLite run is interleaved with the
PostgreSQL ones, so the rows of the table compare under the same load on the machine.
On one small box PostgreSQL, every instance and wrk share the same cores: the figures show the
overhead of the shared store, not scaling.
"""

import json
import os
import shutil
import statistics
import subprocess
import urllib.parse

import lib
from lib import log

PG_URL = os.environ.get("BENCH_PG_URL", "")
INSTANCES = (1, 2, 3)


def psql(url, sql):
    return subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql], check=True,
                          capture_output=True, text=True).stdout.strip()


def database_url(name):
    return urllib.parse.urlsplit(PG_URL)._replace(path="/" + name).geturl()


def logged_results(server):
    with open(server.log_path) as f:
        return [json.loads(line).get("result") for line in f]


def run_once(binary, workdir, store, instances, requests, run):
    """One run: `instances` servers on one fresh store, one wrk each, all at the same time."""
    if store == "sqlite":
        db = os.path.join(workdir, f"pg-compare-sqlite-{run}.db")
        urls = [db]
    else:
        name = f"hookbox_bench_{os.getpid()}_{instances}_{run}"
        psql(PG_URL, f"DROP DATABASE IF EXISTS {name}")
        psql(PG_URL, f"CREATE DATABASE {name}")
        urls = [database_url(name)] * instances
    servers = []
    try:
        # One after another: the first one migrates, the others find the schema in place.
        for url in urls:
            servers.append(lib.Server(binary, workdir, url, {"HOOKBOX_SYNCHRONOUS": "FULL"}))
        connections = max(1, lib.CONNECTIONS // len(servers))
        wrks = [lib.start_wrk(s.url + "/webhook", "webhook.lua",
                              {"BENCH_REQUESTS": requests, "BENCH_SHARD": str(k),
                               "BENCH_SHARDS": str(len(servers))}, connections=connections)
                for k, s in enumerate(servers)]
        parts = [lib.wrk_result(w) for w in wrks]
        peak = max(s.status_kib("VmHWM") for s in servers) / 1024
    finally:
        for s in servers:
            s.stop()
    if store == "sqlite":
        rows = lib.row_count(urls[0])
        lib.remove_db(urls[0])
    else:
        rows = int(psql(urls[0], "SELECT count(*) FROM messages"))
        psql(PG_URL, f"DROP DATABASE {name} WITH (FORCE)")
    requests_done = sum(p["requests"] for p in parts)
    acknowledged = requests_done - sum(p["non2xx"] for p in parts)
    created = sum(logged_results(s).count("created") for s in servers)
    return {
        "rps": sum(p["rps"] for p in parts),
        "p99_ms": max(p["p99_ms"] for p in parts),  # the worst instance's
        "non2xx": sum(p["non2xx"] + p["socket_errors"] for p in parts),
        "lost": max(0, acknowledged - rows),
        "counter_mismatch": int(created != rows),
        "cs_per_request": sum(s.context_switches() for s in servers) / max(1, requests_done),
        "peak_rss_mib": peak,
    }


def run(workdir, bins, requests):
    """(markdown, data); requests is bench.py's file of distinct pre-signed messages."""
    binary = dict(bins)["new"]
    configs = [("sqlite", 1)] + [("postgres", n) for n in INSTANCES]
    results = {c: [] for c in configs}
    for run_index in range(lib.RUNS):
        for store, n in configs:
            log(f"{store} ×{n} run {run_index + 1}/{lib.RUNS} …")
            results[(store, n)].append(run_once(binary, workdir, store, n, requests, run_index))
    lines = [
        "## SQLite and PostgreSQL: durable ingest",
        "",
        f"{lib.CONNECTIONS} connections in all (split between the instances), {lib.DURATION}s per "
        f"run, median of {lib.RUNS}; PostgreSQL on the same machine.",
        "",
        "| store | instances | req/s (sum) | worst p99 ms | non-2xx | lost | counter≠rows "
        "| cs/req | peak RSS MiB (largest instance) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    data = []
    for (store, n), rs in results.items():
        med = lambda key: statistics.median(r[key] for r in rs)
        lines.append(
            f"| {store} | {n} | {med('rps'):.0f} | {med('p99_ms'):.2f} | "
            f"{sum(r['non2xx'] for r in rs)} | {sum(r['lost'] for r in rs)} | "
            f"{sum(r['counter_mismatch'] for r in rs)} | {med('cs_per_request'):.2f} | "
            f"{max(r['peak_rss_mib'] for r in rs):.1f} |")
        data.append({"store": store, "instances": n, "runs": rs})
    return "\n".join(lines), {"rows": data}


def available():
    return bool(PG_URL) and shutil.which("psql") is not None
