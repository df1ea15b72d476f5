#!/usr/bin/env python3
"""hookbox benchmark: drives the release binary with wrk on loopback and prints tables.

Four parts; throughput, reads and held bodies always, postgres when asked for:
- throughput (this file): every scenario starts a fresh server process on a fresh copy of its
  database, so the peak RSS (VmHWM) read after the run belongs to that scenario alone, and the
  context switches the kernel reports when the process is reaped belong to that run alone. Each
  scenario runs RUNS times; tables show medians. With a baseline binary (BENCH_BASELINE, which
  bench/run.sh builds from the previous release) every scenario runs for both binaries,
  interleaved run by run (old, new, old, new …) so that a noisy neighbour hurts both alike.
- postgres (bench/postgres.py, when BENCH_PG_URL is set): durable ingest on SQLite against 1, 2
  and 3 instances sharing one PostgreSQL.
- reads (bench/reads.py): single-client reads on a store of BENCH_ROWS messages loaded with
  `hookbox import`.
- held_bodies (bench/held_bodies.py): 1,500 clients each send 64 KiB of a larger body and stop;
  RSS and an honest client's latency meanwhile.
- feed (bench/feed.py): commit → feed latency, a feed page at BENCH_ROWS, ingest with and
  without a following consumer (new binary only).

Results go to stdout and to
bench-results/{latest,throughput,postgres,reads,held_bodies,feed}.{md,json}.

Usage: bench/run.sh   (builds the binaries, installs wrk if missing, then runs this)
Env:   BENCH_DURATION (seconds per run, default 5), BENCH_RUNS (default 3),
       BENCH_CONNECTIONS (default 64), BENCH_THREADS (wrk threads, default 2),
       BENCH_ONLY (comma-separated scenario names; `throughput`, `postgres`, `reads`,
       `held_bodies`, `feed`: a whole part),
       BENCH_BASELINE (path of the previous binary; unset or `none`: the new binary alone),
       BENCH_ROWS (messages in the read store, default 1000000), BENCH_READS_BASELINE (0: the
       reads for the new binary only),
       BENCH_PG_URL (a PostgreSQL to create throwaway databases in: adds the `postgres` part),
       BENCH_BINARY (the binary under test, default target/release/hookbox),
       BENCH_FASTAPI_RPS (the seed's FastAPI design on durable ingest, measured on this box:
       default 1100 webhooks/s; durable ingest is reported as a multiple of it)

CPU per request is the server's utime+stime (/proc/PID/stat) over the wrk run, divided by the
answered requests (ingest: the acknowledged ones, 2xx). Switches per request are voluntary plus
involuntary context switches of the whole process life (wait4's rusage) over the same count.
Both depend less on a noisy neighbour than req/s does: report them beside it.
"""

import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lib  # noqa: E402
import postgres  # noqa: E402
import feed  # noqa: E402
import held_bodies  # noqa: E402
import reads  # noqa: E402
from lib import log  # noqa: E402

SEED_ROWS = 100_000
UNIQUE_REQUESTS = 400_000
DUPLICATE_IDS = 1_000
WHATSAPP_REQUESTS = 40_000  # of WHATSAPP_BATCH messages each
WHATSAPP_BATCH = 5
INGEST = "ingest_full"  # the durable one: every 200 is fsynced
FASTAPI_RPS = float(os.environ.get("BENCH_FASTAPI_RPS", "1100"))


def message(i, prefix="bench"):
    """Message i of a realistic stream: opaque provider-style ids (random order, like the
    `wamid.…` ids real senders use), 50 senders, timestamps that move forward one second per
    message, and a short text."""
    digest = hashlib.sha256(f"{prefix}-{i}".encode()).hexdigest()[:24]
    instant = 1_736_899_200 + i  # 2025-01-15T00:00:00Z + i seconds
    return {
        "message_id": f"{prefix}.{digest}",
        "from": f"+91{i % 50:010d}",
        "to": "+14155550100",
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant)),
        "text": f"Hello {i} from the benchmark, with a little padding to look like a message",
    }


def write_requests(path, count, prefix):
    """One `signature<TAB>body` line per request, for bench/webhook.lua."""
    with open(path, "w") as out:
        for i in range(count):
            body = json.dumps(message(i, prefix), separators=(",", ":"))
            out.write(f"{lib.sign(body)}\t{body}\n")


def write_whatsapp_requests(path, count):
    """WhatsApp Cloud API notifications of WHATSAPP_BATCH text messages each, signed as Meta
    signs them (bench/webhook.lua adds the `sha256=` prefix)."""
    with open(path, "w") as out:
        for i in range(count):
            batch = [message(i * WHATSAPP_BATCH + k, "wa") for k in range(WHATSAPP_BATCH)]
            notification = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
                {"field": "messages", "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "14155550100", "phone_number_id": "1"},
                    "messages": [{"from": m["from"][1:], "id": m["message_id"],
                                  "timestamp": str(1_736_899_200 + i), "type": "text",
                                  "text": {"body": m["text"]}} for m in batch]}}]}]}
            body = json.dumps(notification, separators=(",", ":"))
            out.write(f"{lib.sign(body)}\t{body}\n")


def scenarios(files):
    get = lambda path: {"script": "get.lua", "path": path}
    post = lambda requests: {"script": "webhook.lua", "path": "/webhook", "requests": requests}
    return [
        ("health_live", "empty", {}, get("/health/live")),
        ("ingest_full", "empty", {"HOOKBOX_SYNCHRONOUS": "FULL"}, post(files["unique"])),
        ("ingest_normal", "empty", {"HOOKBOX_SYNCHRONOUS": "NORMAL"}, post(files["unique"])),
        ("ingest_duplicates", "dups", {}, post(files["dups"])),
        # New binary only (the previous release has no /webhook/whatsapp); messages/s below.
        ("ingest_whatsapp_5", "empty", {"HOOKBOX_WHATSAPP_APP_SECRET": lib.SECRET},
         {"script": "webhook.lua", "path": "/webhook/whatsapp", "requests": files.get("whatsapp", ""),
          "per_request": WHATSAPP_BATCH, "new_only": True,
          "wrk_env": {"BENCH_PATH": "/webhook/whatsapp",
                      "BENCH_SIGNATURE_HEADER": "X-Hub-Signature-256",
                      "BENCH_SIGNATURE_PREFIX": "sha256="}}),
        ("messages_page", "seeded", {}, get("/messages")),
        ("messages_from", "seeded", {}, get("/messages?from=+910000000007&limit=100")),
        ("messages_since", "seeded", {}, get("/messages?since=2025-01-16T03:00:00Z")),
        ("messages_q", "seeded", {}, get("/messages?q=HELLO%204242")),
        ("messages_offset", "seeded", {}, get("/messages?offset=90000&limit=100")),
        ("stats", "seeded", {}, get("/stats")),
    ]


def selected(name):
    return not lib.ONLY or name in lib.ONLY or "throughput" in lib.ONLY


def templates(binary, label, workdir):
    """The databases the scenarios start from, each with `binary`'s own schema (an older binary
    cannot open a newer schema, and a newer one would migrate an older one on every start)."""
    empty = lib.migrated_empty_db(binary, workdir, f"{label}-empty.db")
    seeded = os.path.join(workdir, f"{label}-seeded.db")
    shutil.copy(empty, seeded)
    lib.insert_rows(seeded, (message(i, "seed") for i in range(SEED_ROWS)))
    dups = os.path.join(workdir, f"{label}-dups.db")
    shutil.copy(empty, dups)
    lib.insert_rows(dups, (message(i, "d") for i in range(DUPLICATE_IDS)))
    return {"empty": empty, "seeded": seeded, "dups": dups}


def check_ingest(result, server, spec, db_path, rows_before):
    """Every acknowledged message is stored, and the `created` count matches the rows added."""
    # After a graceful stop every answered request has its log line, so counting them is
    # exact (reading /metrics right after wrk would race the last answers).
    with open(server.log_path) as f:
        results = [json.loads(line).get("result") for line in f]
    created, duplicate = results.count("created"), results.count("duplicate")
    per_request = spec.get("per_request", 1)  # messages in one POST
    acknowledged = (result["requests"] - result["non2xx"]) * per_request
    rows = lib.row_count(db_path) - rows_before
    # wrk stops mid-flight: a few requests may be stored but not counted by wrk.
    result["lost"] = max(0, acknowledged - rows) if "dups" not in spec["requests"] else 0
    result["rows_added"] = rows
    result["counter_mismatch"] = int(created * per_request != rows)
    result["created"], result["duplicate"] = created, duplicate


def run_once(binary, workdir, name, db_template, env, spec, run):
    db_path = os.path.join(workdir, f"{name}-{run}.db")
    shutil.copy(db_template, db_path)
    server = lib.Server(binary, workdir, db_path, env)
    rows_before = lib.row_count(db_path)
    try:
        cpu_before = server.cpu_seconds()
        result = lib.wrk(server.url + spec["path"], spec["script"],
                         {"BENCH_REQUESTS": spec.get("requests", ""), **spec.get("wrk_env", {})})
        result["cpu_seconds"] = server.cpu_seconds() - cpu_before
        result["idle_rss_mib"] = server.idle_rss_kib / 1024
        result["peak_rss_mib"] = server.status_kib("VmHWM") / 1024
    finally:
        server.stop()
    # Startup and shutdown are in the count too; a few hundred switches against the tens of
    # thousands of requests of even a short run.
    answered = max(1, result["requests"] - result["non2xx"])
    result["context_switches"] = server.context_switches()
    result["cs_per_request"] = server.context_switches() / answered
    result["cpu_us_per_request"] = result["cpu_seconds"] * 1e6 / answered
    if spec["script"] == "webhook.lua":
        check_ingest(result, server, spec, db_path, rows_before)
    lib.remove_db(db_path)
    return result


def median(results, key):
    return statistics.median(r[key] for r in results)


def summarise(name, results):
    return {
        "scenario": name,
        "rps": median(results, "rps"),
        "p50_ms": median(results, "p50_ms"),
        "p99_ms": median(results, "p99_ms"),
        "non2xx": sum(r["non2xx"] + r["socket_errors"] for r in results),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "idle_rss_mib": median(results, "idle_rss_mib"),
        "cs_per_request": median(results, "cs_per_request"),
        "cpu_us_per_request": median(results, "cpu_us_per_request"),
        "lost": sum(r.get("lost", 0) for r in results),
        "counter_mismatch": sum(r.get("counter_mismatch", 0) for r in results),
        "runs": results,
    }


def request_files(workdir):
    """The pre-signed requests wrk sends, written on first use."""
    files = {"unique": os.path.join(workdir, "unique.tsv"),
             "dups": os.path.join(workdir, "dups.tsv"),
             "whatsapp": os.path.join(workdir, "whatsapp.tsv")}
    if not os.path.exists(files["dups"]):
        log(f"writing requests in {workdir} …")
        write_requests(files["unique"], UNIQUE_REQUESTS, "u")
        write_requests(files["dups"], DUPLICATE_IDS, "d")
    if selected("ingest_whatsapp_5") and not os.path.exists(files["whatsapp"]):
        write_whatsapp_requests(files["whatsapp"], WHATSAPP_REQUESTS)
    return files


def run_throughput(workdir, bins):
    """{label: [summary per scenario]}, every run of every binary interleaved."""
    files = request_files(workdir)
    dbs = {label: templates(binary, label, workdir) for label, binary in bins}
    tables = {label: [] for label, _ in bins}
    for name, db, env, spec in scenarios(files):
        if not selected(name):
            continue
        runs_for = [(label, binary) for label, binary in bins
                    if label == "new" or not spec.get("new_only")]
        results = {label: [] for label, _ in runs_for}
        for run in range(lib.RUNS):
            for label, binary in runs_for:
                log(f"{name} run {run + 1}/{lib.RUNS} ({label}) …")
                results[label].append(
                    run_once(binary, workdir, name, dbs[label][db], env, spec, run))
        for label, _ in runs_for:
            summary = summarise(name, results[label])
            summary["per_request"] = spec.get("per_request", 1)
            tables[label].append(summary)
    return tables


def ingest_ratio(table):
    by_name = {s["scenario"]: s for s in table}
    if "health_live" in by_name and INGEST in by_name:
        return by_name[INGEST]["rps"] / by_name["health_live"]["rps"]
    return None


def cost_lines(tables):
    """What a request costs the server, /health/live beside durable ingest, new beside the
    previous release; and durable ingest against the seed's FastAPI design."""
    rows = []
    for name in ("health_live", INGEST):
        cells = []
        for label in ("old", "new"):
            found = [s for s in tables.get(label, []) if s["scenario"] == name]
            cells.append(found[0] if found else None)
        if cells[1] is None:
            continue
        old, new = cells
        fmt = lambda s, key, digits: f"{s[key]:.{digits}f}" if s else "–"
        rows.append(f"| {name} | {fmt(old, 'cpu_us_per_request', 1)} | "
                    f"{fmt(new, 'cpu_us_per_request', 1)} | {fmt(old, 'cs_per_request', 2)} | "
                    f"{fmt(new, 'cs_per_request', 2)} |")
    if not rows:
        return []
    lines = ["", "### Cost per request (ingest: per acknowledged webhook), medians", "",
             "| scenario | old CPU µs | new CPU µs | old switches | new switches |",
             "|---|---:|---:|---:|---:|"] + rows + [""]
    for label in ("old", "new"):
        found = [s for s in tables.get(label, []) if s["scenario"] == INGEST]
        if found:
            lines.append(f"- {label}: durable ingest {found[0]['rps']:.0f} req/s = "
                         f"**{found[0]['rps'] / FASTAPI_RPS:.1f}×** the seed's FastAPI design "
                         f"({FASTAPI_RPS:.0f} webhooks/s on this box, BENCH_FASTAPI_RPS)")
    return lines


def against_previous(new, old_by_name):
    """The issues' no-regression targets: issue 7 asks for at least the previous req/s on
    durable ingest and /health/live, issue 8 for at least 90% on durable ingest."""
    lines = []
    for name, floor in ((INGEST, "≥ 1.00 (issue 7), ≥ 0.90 (issue 8)"),
                        ("health_live", "≥ 1.00 (issue 7)")):
        mine = [s for s in new if s["scenario"] == name]
        if mine and name in old_by_name:
            ratio = mine[0]["rps"] / old_by_name[name]["rps"]
            lines.append(f"- {name} new/old: **{ratio:.2f}** (target {floor})")
    return lines


def throughput_report(tables, bins):
    new = tables["new"]
    binary_mib = os.path.getsize(lib.BINARY) / (1024 * 1024)
    lines = [
        "## Throughput",
        "",
        f"wrk: {lib.THREADS} threads, {lib.CONNECTIONS} connections, {lib.DURATION}s per run, "
        f"median of {lib.RUNS} runs; release binary {binary_mib:.2f} MiB",
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx | peak RSS MiB | idle RSS MiB "
        "| CPU µs/req | cs/req | lost | counter≠rows |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in new:
        lines.append(
            f"| {s['scenario']} | {s['rps']:.0f} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
            f"{s['non2xx']} | {s['peak_rss_mib']:.1f} | {s['idle_rss_mib']:.1f} | "
            f"{s['cpu_us_per_request']:.1f} | {s['cs_per_request']:.2f} | {s['lost']} | "
            f"{s['counter_mismatch']} |")
    for s in new:
        if s["per_request"] > 1:
            lines += ["", f"{s['scenario']}: {s['per_request']} messages per POST, "
                          f"**{s['rps'] * s['per_request']:.0f} messages/s**"]
    ratio = ingest_ratio(new)
    if ratio is not None:
        lines += ["", f"durable ingest / health_live throughput: {ratio:.0%}"]
    lines += cost_lines(tables)
    if "old" in tables:
        old_by_name = {s["scenario"]: s for s in tables["old"]}
        old_mib = os.path.getsize(dict(bins)["old"]) / (1024 * 1024)
        lines += [
            "",
            f"### Side by side with the previous binary ({old_mib:.2f} MiB), runs interleaved",
            "",
            "| scenario | old req/s | new req/s | new/old | old p99 ms | new p99 ms "
            "| old cs/req | new cs/req | old peak RSS MiB | new peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in new:
            if s["scenario"] not in old_by_name:
                continue  # new binary only
            o = old_by_name[s["scenario"]]
            lines.append(
                f"| {s['scenario']} | {o['rps']:.0f} | {s['rps']:.0f} | {s['rps'] / o['rps']:.2f} "
                f"| {o['p99_ms']:.2f} | {s['p99_ms']:.2f} | {o['cs_per_request']:.2f} "
                f"| {s['cs_per_request']:.2f} | {o['peak_rss_mib']:.1f} | {s['peak_rss_mib']:.1f} |")
        old_ratio = ingest_ratio(tables["old"])
        if old_ratio is not None:
            lines += ["", f"durable ingest / health_live, previous binary: {old_ratio:.0%}"]
        lines += [""] + against_previous(new, old_by_name)
    return "\n".join(lines), {"binary_mib": binary_mib, "binaries": dict(bins),
                              "scenarios": tables}


def main():
    bins = lib.binaries()
    workdir = tempfile.mkdtemp(prefix="hookbox-bench-")
    sections, data = [], {}
    try:
        if any(selected(name) for name, *_ in scenarios({"unique": "", "dups": ""})):
            report, data["throughput"] = throughput_report(run_throughput(workdir, bins), bins)
            print(report + "\n", flush=True)
            lib.write_results("throughput", report, data["throughput"])
            sections.append(report)
        if postgres.available() and (not lib.ONLY or "postgres" in lib.ONLY):
            files = request_files(workdir)
            report, data["postgres"] = postgres.run(workdir, bins, files["unique"])
            print(report + "\n", flush=True)
            lib.write_results("postgres", report, data["postgres"])
            sections.append(report)
        elif "postgres" in lib.ONLY:
            sys.exit("BENCH_ONLY=postgres needs BENCH_PG_URL (and psql)")
        if not lib.ONLY or "reads" in lib.ONLY:
            report, data["reads"] = reads.run(workdir, bins)
            print(report + "\n", flush=True)
            lib.write_results("reads", report, data["reads"])
            sections.append(report)
        if not lib.ONLY or "held_bodies" in lib.ONLY:
            report, data["held_bodies"] = held_bodies.run(workdir, bins)
            print(report + "\n", flush=True)
            lib.write_results("held_bodies", report, data["held_bodies"])
            sections.append(report)
        if not lib.ONLY or "feed" in lib.ONLY:
            report, data["feed"] = feed.run(workdir, bins, request_files(workdir)["unique"])
            print(report + "\n", flush=True)
            lib.write_results("feed", report, data["feed"])
            sections.append(report)
        if not sections:
            sys.exit(f"BENCH_ONLY={','.join(sorted(lib.ONLY))} names no scenario")
        lib.write_results("latest", "\n\n".join(sections), data)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
