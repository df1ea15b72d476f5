"""Held bodies: memory and an honest client's latency while many clients hold partial bodies.

HELD_CLIENTS (default 1,500) connections each send a webhook head declaring a HELD_DECLARED
(128 KiB) body, then HELD_SENT (64 KiB) of it, and stop. The server reserves a body's bytes in
HOOKBOX_MAX_BODY_BUFFER_MIB before it reads them: those that fit are held until the body deadline,
the others are answered 503 and closed. Then an honest client sends HONEST signed webhooks, one at
a time. Reported per binary: clients held and refused, the server's RSS (VmRSS, and the peak
VmHWM, from /proc/PID/status), the body-buffer gauge, and the honest client's latencies.

Loopback only, bounded: every socket has a timeout, the scenario takes well under a minute and
closes everything it opened. Run alone: `python3 bench/held_bodies.py` (the release binary at
target/release/hookbox, or BENCH_BINARY); `make bench` runs it as the `held_bodies` part.
"""

import json
import os
import resource
import socket
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lib  # noqa: E402
from lib import log  # noqa: E402

HELD_CLIENTS = int(os.environ.get("HELD_CLIENTS", "1500"))
HELD_DECLARED = 128 * 1024
HELD_SENT = 64 * 1024
HONEST = 20
TIMEOUT = 10.0


def metrics(server):
    with urllib.request.urlopen(server.url + "/metrics", timeout=TIMEOUT) as answer:
        text = answer.read().decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def hold(host, port, index):
    """Opens one holder: the head, then HELD_SENT bytes of the body. Returns the socket."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    body_sig = lib.sign("held")
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nX-Signature: {body_sig}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {HELD_DECLARED}\r\n\r\n"
    ).encode()
    try:
        sock.sendall(head + b" " * HELD_SENT)
    except OSError:
        pass  # refused and closed while we were still sending: that is the budget at work
    return sock


def honest_webhook(host, port, index):
    body = json.dumps(
        {"message_id": f"honest-{index}", "from": "+15550001", "to": "+15550002",
         "ts": "2026-01-01T00:00:00Z", "text": "hello"}
    )
    request = (
        f"POST /webhook HTTP/1.1\r\nHost: {host}\r\nX-Signature: {lib.sign(body)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n{body}"
    ).encode()
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    took = time.monotonic() - started
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    return status, took


def one(label, binary, workdir):
    env = {
        # The declared body must be within the body limit for its bytes to be buffered at all.
        "HOOKBOX_MAX_BODY_BYTES": str(256 * 1024),
        # Holders stay held for the whole measurement.
        "HOOKBOX_READ_TIMEOUT_SECS": "60",
        "HOOKBOX_HEADER_TIMEOUT_SECS": "60",
        "HOOKBOX_MAX_CONNECTIONS": str(HELD_CLIENTS + 100),
    }
    server = lib.Server(binary, workdir, os.path.join(workdir, f"held-{label}.db"), env)
    holders = []
    try:
        idle_rss = server.status_kib("VmRSS")
        for i in range(HELD_CLIENTS):
            holders.append(hold(server.host, int(server.port), i))
        # Settled when the open-connection gauge stops moving (refused ones close at once,
        # after a lingering close of at most 0.5 s).
        deadline = time.monotonic() + 20
        previous = None
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = metrics(server).get("hookbox_connections_open")
            if now == previous:
                break
            previous = now
        seen = metrics(server)
        rss = server.status_kib("VmRSS")
        latencies, statuses = [], []
        for i in range(HONEST):
            status, took = honest_webhook(server.host, int(server.port), i)
            statuses.append(status)
            latencies.append(took)
        rss_after = server.status_kib("VmRSS")
        peak = server.status_kib("VmHWM")
        threads = server.status_kib("Threads")
    finally:
        for sock in holders:
            sock.close()
        server.stop()
    latencies.sort()
    return {
        "binary": label,
        "held_clients": HELD_CLIENTS,
        "open_while_held": seen.get("hookbox_connections_open"),
        "body_buffer_bytes": seen.get("hookbox_body_buffer_bytes"),
        "refused_503": seen.get('webhook_requests_total{result="unavailable"}', 0.0),
        "idle_rss_mib": round(idle_rss / 1024, 1),
        "rss_mib": round(max(rss, rss_after) / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "threads": threads,
        "honest_ok": sum(1 for s in statuses if s == 200),
        "honest_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "honest_max_ms": round(latencies[-1] * 1000, 1),
    }


def run(workdir, bins):
    # 1,500 client sockets here, as many on the server: raise our own descriptor limit (the
    # server inherits it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * HELD_CLIENTS + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    rows = []
    for label, binary in bins:
        log(f"held bodies: {label} ({HELD_CLIENTS} clients × {HELD_SENT // 1024} KiB of "
            f"{HELD_DECLARED // 1024} KiB)")
        rows.append(one(label, binary, workdir))
    lines = [
        f"## Held bodies: {HELD_CLIENTS} clients each send {HELD_SENT // 1024} KiB of a "
        f"{HELD_DECLARED // 1024} KiB body and stop; then {HONEST} honest webhooks",
        "",
        "| binary | open while held | body buffer | RSS | peak RSS | idle RSS | threads "
        "| honest 200 | honest p50 | honest max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        buffer = r["body_buffer_bytes"]
        buffer = "—" if buffer is None else f"{buffer / 1048576:.1f} MiB"
        lines.append(
            f"| {r['binary']} | {r['open_while_held']:.0f} | {buffer} | {r['rss_mib']} MiB "
            f"| {r['peak_rss_mib']} MiB | {r['idle_rss_mib']} MiB | {r['threads']} "
            f"| {r['honest_ok']}/{HONEST} | {r['honest_p50_ms']} ms | {r['honest_max_ms']} ms |"
        )
    return "\n".join(lines), rows


if __name__ == "__main__":
    workdir = tempfile.mkdtemp(prefix="hookbox-held-")
    report, data = run(workdir, lib.binaries())
    print(report)
    lib.write_results("held_bodies", report, data)
