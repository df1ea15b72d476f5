"""Scenario "crash": SIGKILL under concurrent load at a random instant, CRASH_ROUNDS rounds on one
database file: every acknowledged (200) message must be present after restart; integrity_check ok."""

import os
import signal
import statistics
import time

from suite import (
    Load, RESULTS, RUN_ID, SERVERS, Server, WORKDIR, log, rng, stderr_panics, verify_after_restart
)


CRASH_ROUNDS = 5


def scenario_crash():
    S = "1 crash (SIGKILL)"
    db_path = os.path.join(WORKDIR, "crash.db")
    all_acked = {}
    total_in_doubt = total_in_doubt_stored = total_sent = 0
    lost_total = mismatched_total = 0
    integrity_ok = ready_ok = api_ok = True
    kill_at, rates, restarts = [], [], []
    non_200 = 0
    for round_no in range(1, CRASH_ROUNDS + 1):
        server = Server("crash", db_path)
        load = Load(server, f"{RUN_ID}-c{round_no}")
        delay = rng.uniform(0.5, 2.0)
        load.start()
        time.sleep(delay)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=10)
        load.phase = "after"
        killed_after = time.monotonic() - load.started
        stopped = load.stop()
        kill_at.append(killed_after)
        acked_round = dict(load.acked)
        all_acked.update(acked_round)
        total_sent += load.count() + load.error_count() - sum(
            n for (_, name), n in load.errors.items() if name == "ConnectionRefusedError")
        non_200 += load.count() - load.count(200)
        rates.append(len(acked_round) / killed_after)
        if not stopped:
            RESULTS.check(S, f"round {round_no}: load threads stopped", False, False, "all stop")
        figures = verify_after_restart("crash", db_path, all_acked)
        restarts.append(figures["restart_secs"])
        rows = figures["rows_by_id"]
        in_doubt = [m for m in load.in_doubt if m.startswith(f"{RUN_ID}-c{round_no}-")]
        total_in_doubt += len(in_doubt)
        total_in_doubt_stored += sum(1 for m in in_doubt if m in rows)
        lost_total = figures["lost"]  # cumulative over every round so far
        mismatched_total = figures["mismatched"]
        integrity_ok &= figures["integrity"] == "ok"
        ready_ok &= figures["ready_status"] == 200
        api_ok &= figures["api_missing"] == 0 and not figures["api_rows_disagree"]
        log(
            f"crash round {round_no}: killed at {killed_after:.2f}s, acked {len(acked_round)}, "
            f"in doubt {len(in_doubt)}, rows {figures['rows']}, lost {figures['lost']}, "
            f"integrity {figures['integrity']}"
        )
    RESULTS.figure(S, "rounds (8 clients, keep-alive)", CRASH_ROUNDS)
    RESULTS.figure(S, "SIGKILL at (s after load start)", ", ".join(f"{t:.2f}" for t in kill_at))
    RESULTS.figure(S, "requests sent (refused connects not counted)", total_sent)
    RESULTS.figure(S, "non-200 answers (503 = queue shed)", non_200)
    RESULTS.figure(S, "acked ingest rate (msg/s, median)", statistics.median(rates))
    RESULTS.check(S, "total acked (200)", len(all_acked), len(all_acked) > 0, "> 0")
    RESULTS.check(S, "acked but lost", lost_total, lost_total == 0, "0")
    RESULTS.check(S, "acked but stored differently", mismatched_total, mismatched_total == 0, "0")
    RESULTS.figure(S, "in flight at kill (no answer)", total_in_doubt)
    RESULTS.figure(S, "  of which stored anyway", total_in_doubt_stored)
    RESULTS.check(S, "PRAGMA integrity_check after every round", "ok" if integrity_ok else "NOT ok",
                  integrity_ok, "ok")
    RESULTS.check(S, "restart on crashed file: /health/ready", 200 if ready_ok else "not 200",
                  ready_ok, "200 every round")
    RESULTS.figure(S, "restart to listening (s, max)", max(restarts))
    RESULTS.check(S, "GET /messages paging sees every acked id, total = rows", "yes" if api_ok else "no",
                  api_ok, "yes")
    panics = stderr_panics([s for s in SERVERS if s.name.startswith("crash")])
    RESULTS.check(S, "panics on stderr", panics, panics == 0, "0")
