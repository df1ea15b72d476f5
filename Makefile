# hookbox — the everyday commands. `make help` lists them.
.PHONY: help up down logs run test test-sqlite test-postgres test-edge lint bench bench-reads bench-pg soak fuzz

# The compose v2 plugin (`docker compose`), or else the standalone v1 `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

up: ## build and start the container (needs WEBHOOK_SECRET in your shell)
	$(COMPOSE) up -d --build

# --profile postgres: also what `docker compose --profile postgres up` started (the replicas,
# PostgreSQL, their volumes and the network); a plain `down` leaves those running.
down: ## stop every container (the postgres profile's too) and delete their volumes
	$(COMPOSE) --profile postgres down -v --remove-orphans

logs: ## follow the container's JSON logs
	$(COMPOSE) logs -f api

run: ## run the server locally on :8000 with ./hookbox.db
	cargo run --release --locked

test: test-sqlite test-postgres ## run every test: the suite on SQLite, then on PostgreSQL

test-sqlite: ## the suite on SQLite (and the PostgreSQL-only tests, skipped if it is unreachable)
	cargo test --locked --workspace

# The same integration suite again, every server on its own throwaway PostgreSQL database.
# postgres::, pg_tls:: and pg_stall:: already ran, and the binary tests run the executable on
# SQLite files: not repeated,
# except binary::import, which follows the suite's store.
test-postgres: ## the integration suite on PostgreSQL (127.0.0.1:5432 or HOOKBOX_TEST_PG_URL)
	HOOKBOX_TEST_STORE=postgres cargo test --locked --test it -- --skip postgres:: --skip pg_tls:: --skip pg_stall:: \
	  --skip binary::cli --skip binary::database_url --skip binary::export --skip binary::logs \
	  --skip binary::signals --skip binary::startup

test-edge: ## the SQLite suite on the edge build (no PostgreSQL support compiled in)
	cargo test --locked --no-default-features --workspace

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all --check
	cargo clippy --all-targets --workspace --locked -- -D warnings

bench: ## every benchmark, side by side with the previous release; writes bench-results/
	./bench/run.sh

bench-reads: ## only the reads on a 1M-message store (BENCH_ROWS=10000000 for 10M)
	BENCH_ONLY=reads ./bench/run.sh

bench-pg: ## only ingest on SQLite vs 1-3 instances on one PostgreSQL (BENCH_PG_URL, default local)
	BENCH_ONLY=postgres BENCH_PG_URL=$${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432/postgres} ./bench/run.sh

soak: ## longer fault tests (crash, fd exhaustion, idle and hostile connections, 1M-row reads)
	./soak/run.sh

# Not part of `test`: it needs cargo-fuzz (installed if missing) and nightly flags, which
# fuzz/run.sh allows on the stable toolchain with RUSTC_BOOTSTRAP=1. FUZZ_SECONDS=300 for a long run.
fuzz: ## a short bounded run of each fuzz target (FUZZ_SECONDS, default 20, each; see docs/FUZZING.md)
	./fuzz/run.sh
