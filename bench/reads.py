"""Reads on a large store: BENCH_ROWS messages (default 1,000,000), one client, median of 5.

The store is generated once as NDJSON into target/bench-data/ (gitignored, reused by later runs)
and loaded with `hookbox import`, the way an operator would move a store. A baseline binary that
has no `import` (it answers "unknown argument") gets the same rows written straight into its own
schema instead. The data is shaped like a real inbox rather than a uniform one, because the
read plans care about shape:
- 50 senders; the busiest sends 56% of the rows (a `from=` filter that matches most of the table);
- timestamps spread over a year, in arrival order with jitter (`since=` the last month);
- one rare word in 1 of every 1,000 texts and one common word in 1 of every 20 (for 1M rows:
  1,000 and 50,000 hits), both in mixed case; the rest of a text comes from a vocabulary that
  contains neither, with a little non-ASCII, and 1% of messages have no text at all.

Each read runs 5 times on one keep-alive connection after the server has started on the loaded
store; the peak RSS (VmHWM) is read after each read, so the table shows which one raised it.
A last phase sends every read from 4 clients at once (the shape of the memory attack in issue 7).
The store's size on disk is reported with HOOKBOX_TEXT_INDEX=on and =off.
"""

import calendar
import hashlib
import http.client
import json
import os
import random
import statistics
import subprocess
import threading
import time
import urllib.parse

import lib
from lib import log

ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
# The previous binary buffers LIMIT+OFFSET rows for the overflow read: ~200 MiB per client at
# 1M rows, ten times that at 10M. BENCH_READS_BASELINE=0 measures the new binary alone.
WITH_BASELINE = os.environ.get("BENCH_READS_BASELINE", "1") != "0"
TIMED = 5
CONCURRENT_CLIENTS = 4
DATA_VERSION = 1  # bump when the generator changes: the file name carries it
START = calendar.timegm((2025, 1, 1, 0, 0, 0))
SPAN = 365 * 86_400
BUSIEST = "+919876500000"
SENDERS = [BUSIEST] + [f"+9198765{n:05d}" for n in range(1, 50)]
RECIPIENT = "+14155550100"
RARE, COMMON = "quetzal", "invoice"
SINCE = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(START + SPAN - 30 * 86_400))
VOCAB = (
    "hello hi thanks ok okay yes no please order delivery tomorrow today morning evening call "
    "me back when where what price payment received sent shipped tracking number address "
    "change cancel refund status update confirm booking table for two at pm am the a is my "
    "your our can you we will be there soon sorry late meeting office home kindly share "
    "details photo document link app login password reset otp code balance account support "
    "team great good bad issue problem fixed working not still waiting olá gracias merci "
    "danke नमस्ते शुक्रिया 👍 🙏 ✅ café naïve"
).split()
assert not any(RARE in w.lower() or COMMON in w.lower() for w in VOCAB)


def data_path():
    return os.path.join(lib.DATA_DIR, f"messages-{ROWS}-v{DATA_VERSION}.ndjson")


def generated_message(rng, i):
    """Message i of the store (in arrival order); deterministic for a given rng state."""
    sender = BUSIEST if rng.random() < 0.56 else SENDERS[rng.randrange(1, 50)]
    slot = SPAN / ROWS
    instant = START + int(i * slot + rng.random() * slot)
    text = None
    if rng.random() >= 0.01 or i % 1000 == 7 or i % 20 == 3:
        words = rng.choices(VOCAB, k=rng.randint(3, 14))
        if rng.random() < 0.2:
            words.append(str(rng.randrange(100, 99_999)))
        if i % 1000 == 7:
            words.insert(rng.randrange(len(words) + 1), rng.choice((RARE, RARE.title())))
        if i % 20 == 3:
            words.insert(rng.randrange(len(words) + 1), rng.choice((COMMON, COMMON.title())))
        text = " ".join(words)
        text = text[0].upper() + text[1:]
    return {
        "message_id": "wamid." + hashlib.blake2b(i.to_bytes(8, "big"), digest_size=15).hexdigest(),
        "from": sender,
        "to": RECIPIENT,
        "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant)),
        "text": text,
    }


def ensure_data():
    """The NDJSON store, generated on first use (about 10 s per million rows)."""
    path = data_path()
    if os.path.exists(path):
        return path
    os.makedirs(lib.DATA_DIR, exist_ok=True)
    log(f"generating {ROWS} messages into {path} …")
    rng = random.Random(20261201)
    partial = path + ".partial"
    with open(partial, "w") as out:
        for i in range(ROWS):
            out.write(json.dumps(generated_message(rng, i), ensure_ascii=False,
                                 separators=(",", ":")) + "\n")
    os.rename(partial, path)
    return path


def read_ndjson(path):
    with open(path) as f:
        for line in f:
            yield json.loads(line)


def import_store(binary, label, workdir, ndjson, text_index):
    """Loads ndjson into a new store with `binary import`; returns (db_path, load facts).
    A binary without `import` gets the rows through SQLite directly (method "sql")."""
    db_path = os.path.join(workdir, f"{label}-reads-{text_index}.db")
    lib.remove_db(db_path)
    out_path, err_path = db_path + ".import.log", db_path + ".import.err"
    env = lib.base_env(f"sqlite:///{db_path}", {"HOOKBOX_TEXT_INDEX": text_index})
    started = time.monotonic()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        code = subprocess.run([binary, "import", ndjson], env=env, stdout=out, stderr=err,
                              cwd=workdir).returncode
    seconds = time.monotonic() - started
    with open(out_path) as f, open(err_path) as g:
        logs, output = f.read(), g.read()  # JSON logs on stdout; progress, summary on stderr
    if code == 2 and "unknown argument" in logs + output:
        log(f"{label}: no `hookbox import`; writing the rows straight into SQLite …")
        lib.remove_db(db_path)
        empty = lib.migrated_empty_db(binary, workdir, os.path.basename(db_path))
        started = time.monotonic()
        lib.insert_rows(empty, read_ndjson(ndjson))
        return empty, {"method": "sql", "seconds": time.monotonic() - started,
                       "size_bytes": lib.db_size_bytes(empty)}
    if code != 0:
        raise RuntimeError(f"{label}: hookbox import exited {code}:\n{(logs + output)[-2000:]}")
    summary = output.strip().splitlines()[-1] if output.strip() else ""
    return db_path, {"method": "import", "seconds": seconds, "rate": ROWS / seconds,
                     "summary": summary, "size_bytes": lib.db_size_bytes(db_path)}


def read_requests():
    """(name, path, issue 8's target at 1M rows)."""
    busiest = urllib.parse.quote(BUSIEST)
    deep = ROWS * 9 // 10
    return [
        ("stats", "/stats", "≤ 5"),
        ("messages first page", "/messages", "≤ 5"),
        ("from= busiest (56%)", f"/messages?from={busiest}", "≤ 5"),
        ("since= last month", f"/messages?since={SINCE}", "≤ 5"),
        (f"offset={deep}", f"/messages?offset={deep}", "≤ 100"),
        (f"q= rare ({ROWS // 1000} hits)", f"/messages?q={RARE}", "≤ 25"),
        (f"q= common ({ROWS // 20} hits)", f"/messages?q={COMMON}", "≤ 100"),
        ("q= rare + from=", f"/messages?q={RARE}&from={busiest}", "≤ 25"),
        ("q=e&offset=2^63-1", "/messages?q=e&offset=9223372036854775807", "RSS < 64 MiB"),
    ]


def timed_get(conn, path):
    """(milliseconds to the last byte of the answer, status, the answer's JSON or None)."""
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    return elapsed, response.status, payload


def total_of(payload):
    if isinstance(payload, dict):
        for key in ("total", "total_messages"):
            if key in payload:
                return payload[key]
    return None


def single_client(server):
    conn = http.client.HTTPConnection(server.host, int(server.port), timeout=600)
    rows = []
    for name, path, target in read_requests():
        times, statuses, total = [], set(), None
        for _ in range(TIMED):
            elapsed, status, payload = timed_get(conn, path)
            times.append(elapsed)
            statuses.add(status)
            total = total_of(payload)
        rows.append({"read": name, "path": path, "target_ms": target,
                     "median_ms": statistics.median(times), "max_ms": max(times),
                     "statuses": sorted(statuses), "total": total,
                     "vmhwm_mib": server.status_kib("VmHWM") / 1024})
    conn.close()
    return rows


def concurrent_mix(server):
    """Every read once from each of CONCURRENT_CLIENTS clients at the same time."""
    statuses, lock = {}, threading.Lock()

    def client(order):
        conn = http.client.HTTPConnection(server.host, int(server.port), timeout=600)
        for _, path, _ in order:
            _, status, _ = timed_get(conn, path)
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    requests = read_requests()
    threads = [threading.Thread(target=client, args=(requests[k:] + requests[:k],))
               for k in range(CONCURRENT_CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"clients": CONCURRENT_CLIENTS, "seconds": time.monotonic() - started,
            "statuses": statuses, "vmhwm_mib": server.status_kib("VmHWM") / 1024}


def measure(binary, label, workdir, ndjson):
    db_path, load = import_store(binary, label, workdir, ndjson, "on")
    result = {"load": load}
    server = lib.Server(binary, workdir, db_path, {"HOOKBOX_TEXT_INDEX": "on"})
    try:
        result["idle_rss_mib"] = server.idle_rss_kib / 1024
        log(f"{label}: single-client reads …")
        result["reads"] = single_client(server)
        result["single_peak_rss_mib"] = server.status_kib("VmHWM") / 1024
        log(f"{label}: {CONCURRENT_CLIENTS} concurrent clients …")
        result["concurrent"] = concurrent_mix(server)
    finally:
        server.stop()
    lib.remove_db(db_path)
    if load["method"] == "import":
        # The cost of the text index on disk: the same rows once more, without it.
        off_path, off = import_store(binary, label, workdir, ndjson, "off")
        result["load_text_index_off"] = off
        lib.remove_db(off_path)
    return result


def mib(n_bytes):
    return f"{n_bytes / (1024 * 1024):.1f}"


def report(results):
    labels = [label for label in ("old", "new") if label in results]
    lines = [f"## Reads on {ROWS:,} messages", "",
             f"One client, one keep-alive connection, median of {TIMED} (ms to the last byte).", ""]
    head = ["read", "target ms (1M)"] + [f"{label} ms" for label in labels]
    head += ["new status", "new total"] + [f"{label} VmHWM MiB after" for label in labels]
    lines += ["| " + " | ".join(head) + " |",
              "|---|---:|" + "---:|" * len(labels) + "---|---:|" + "---:|" * len(labels)]
    by_label = {label: {r["read"]: r for r in results[label]["reads"]} for label in labels}
    for row in results["new"]["reads"]:
        same = [by_label[label][row["read"]] for label in labels]
        cells = [f"`{row['path']}` ({row['read']})", row["target_ms"]]
        cells += [f"{r['median_ms']:.1f}" for r in same]
        cells += [",".join(map(str, row["statuses"])), str(row["total"])]
        cells += [f"{r['vmhwm_mib']:.1f}" for r in same]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for label in labels:
        r = results[label]
        load = r["load"]
        c = r["concurrent"]
        how = (f"`hookbox import` {load['seconds']:.1f} s ({load['rate']:,.0f} msg/s)"
               if load["method"] == "import" else
               f"rows written straight into SQLite ({load['seconds']:.1f} s; no `import`)")
        lines.append(
            f"- **{label}**: loaded with {how}; idle RSS {r['idle_rss_mib']:.1f} MiB; peak RSS "
            f"{r['single_peak_rss_mib']:.1f} MiB after the single-client reads, "
            f"{c['vmhwm_mib']:.1f} MiB after {c['clients']} clients sent every read at once "
            f"({c['seconds']:.1f} s, statuses {c['statuses']}).")
        if load["method"] == "import":
            off = r["load_text_index_off"]
            lines.append(f"  Store on disk: {mib(load['size_bytes'])} MiB with "
                         f"HOOKBOX_TEXT_INDEX=on, {mib(off['size_bytes'])} MiB with =off. "
                         f"Import summary: {load['summary']}")
        else:
            lines.append(f"  Store on disk: {mib(load['size_bytes'])} MiB.")
    return "\n".join(lines)


def run(workdir, bins):
    """Measures every binary in turn on the same rows; returns (markdown, data)."""
    ndjson = ensure_data()
    results = {}
    for label, binary in bins:
        if label == "new" or WITH_BASELINE:
            results[label] = measure(binary, label, workdir, ndjson)
    return report(results), {"rows": ROWS, "data": ndjson, "binaries": dict(bins),
                             "results": results}
