#!/usr/bin/env bash
# make soak: build the release binary, then run the fault tests against it.
# Everything runs on 127.0.0.1 with OS-chosen ports and temporary directories; the suite stops by
# itself (soak.py has its own watchdog; `timeout` here is the last resort) and exits non-zero if
# any check fails. Results: stdout and soak-results/latest.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked
exec timeout --signal=TERM --kill-after=15 570 python3 soak/soak.py "$@"
