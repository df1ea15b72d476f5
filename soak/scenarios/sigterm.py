"""Scenario "sigterm": SIGTERM under the same load as "crash": exit 0 quickly, nothing acknowledged
is lost."""

import collections
import os
import statistics
import time

from suite import (
    Load, RESULTS, RUN_ID, SERVERS, Server, WORKDIR, log, rng, stderr_panics, verify_after_restart
)


SIGTERM_ROUNDS = 3
SIGTERM_GRACE_SECS = 10.0


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
