#!/usr/bin/env bash
# make bench: build the release binary and the previous release's, make sure wrk is there, run
# the scenarios side by side.
#
# The baseline (the binary every throughput figure is compared with, run by run):
#   BENCH_BASELINE=/path/to/hookbox   use that binary; BENCH_BASELINE=none: no baseline
#   otherwise                         the release at BENCH_BASELINE_REV (default 04f4cef, the
#                                     last landed release), built once from git into
#                                     target/baseline/ and reused; an existing clean worktree of
#                                     that commit with a release build is reused as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null; then
  echo "installing wrk …" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi

# Prints the path of a release binary of commit $1, building it if need be.
baseline_binary() {
  local rev cached checkout path head
  rev=$(git rev-parse --verify "$1^{commit}")
  cached="target/baseline/hookbox-${rev:0:12}"
  if [ -x "$cached" ]; then echo "$PWD/$cached"; return; fi
  # A worktree already checked out at that commit (say ../prev) with a release build: use it.
  while read -r key value; do
    case "$key" in
      worktree) path=$value ;;
      HEAD) head=$value
        if [ "$head" = "$rev" ] && [ -x "$path/target/release/hookbox" ] \
          && [ -z "$(git -C "$path" status --porcelain --untracked-files=no)" ]; then
          echo "$path/target/release/hookbox"; return
        fi ;;
    esac
  done < <(git worktree list --porcelain)
  # A temporary checkout outside this workspace (cargo would take a nested checkout for a
  # stray member of ours); its build cache stays in target/baseline/ for next time.
  checkout=$(mktemp -d /tmp/hookbox-baseline.XXXXXX)
  echo "building the baseline ${rev:0:12} in $checkout …" >&2
  git worktree add --detach "$checkout" "$rev" >&2
  mkdir -p target/baseline
  (cd "$checkout" && CARGO_TARGET_DIR="$OLDPWD/target/baseline/cargo" \
    cargo build --release --locked >&2)
  git worktree remove --force "$checkout" >&2
  cp target/baseline/cargo/release/hookbox "$cached"
  echo "$PWD/$cached"
}

cargo build --release --locked
if [ -z "${BENCH_BASELINE:-}" ]; then
  BENCH_BASELINE=$(baseline_binary "${BENCH_BASELINE_REV:-04f4cef}")
fi
export BENCH_BASELINE
echo "baseline: $BENCH_BASELINE" >&2
exec python3 bench/bench.py
