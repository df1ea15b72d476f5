#!/usr/bin/env bash
# make bench-pg: build the release binary, make sure wrk is there, run bench/pg.py against the
# PostgreSQL on 127.0.0.1:5432 (or BENCH_PG_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk …" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --locked
exec python3 bench/pg.py
