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

Layout: harness.py (what bench/ shares: signing, process start, HTTP clients), suite.py (settings,
results, the server under test, load, verification), scenarios/<name>.py (one per scenario), and
this file (the order, the watchdog and the report).

Usage: soak/run.sh (builds the binary first), or python3 soak/soak.py [scenario ...]
Env:   SOAK_SEED (random seed), SOAK_BUDGET_SECS (default 520), SOAK_HOSTILE_KINDS (subset of
       pipelined,absent,never,dribblers for the hostile scenario; default all), SOAK_KEEP=1 (keep the temp dir)
"""

import json
import os
import resource
import signal
import subprocess
import sqlite3
import sys
import time

from scenarios import crash, disk, fds, hostile, idle, readonly, reads_1m, sigterm
from suite import (
    BINARY, BUDGET_SECS, MIB, RESULTS, RESULTS_DIR, ROOT, RUN_ID, SEED, SERVERS, SUITE_START,
    WORKDIR, SuiteTimeout, log,
)


SCENARIOS = [
    ("crash", crash.scenario_crash),
    ("sigterm", sigterm.scenario_sigterm),
    ("idle", idle.scenario_idle),
    ("fds", fds.scenario_fds),
    ("disk", disk.scenario_disk),
    ("readonly", readonly.scenario_readonly),
    ("hostile", hostile.scenario_hostile),
    ("reads_1m", reads_1m.scenario_reads_1m),
]


def on_alarm(signum, frame):
    raise SuiteTimeout(f"suite watchdog: over {BUDGET_SECS:.0f}s")


def on_term(signum, frame):
    raise SystemExit(f"soak interrupted by signal {signum}")


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "src", "Cargo.toml"],
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
