# hookbox — the everyday commands. `make help` lists them.
.PHONY: help up down logs run test lint bench bench-reads soak

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

up: ## build and start the container (needs WEBHOOK_SECRET in your shell)
	docker compose up -d --build

down: ## stop the container and delete its volume
	docker compose down -v

logs: ## follow the container's JSON logs
	docker compose logs -f api

run: ## run the server locally on :8000 with ./hookbox.db
	cargo run --release --locked

test: ## run every test
	cargo test --locked --workspace

lint: ## formatting and clippy, warnings are errors
	cargo fmt --all --check
	cargo clippy --all-targets --workspace --locked -- -D warnings

bench: ## every benchmark, side by side with the previous release; writes bench-results/
	./bench/run.sh

bench-reads: ## only the reads on a 1M-message store (BENCH_ROWS=10000000 for 10M)
	BENCH_ONLY=reads ./bench/run.sh

soak: ## longer fault tests (crash, fd exhaustion, idle and hostile connections, 1M-row reads)
	./soak/run.sh
