# Production Patterns in Rust — the commands. Each target is a thin, visible alias over cargo
# and scripts; read it to see exactly what runs.
#
#   make test                          every test in the workspace (real Postgres/Redis/Kafka)
#   make test-pattern NAME=outbox      one pattern: unit, integration and exercise tests
#   make demo [NAME=outbox]            a pattern's demo (no NAME: tour every pattern)
#   make bench NAME=rate-limiter       criterion benchmarks, side by side with their baseline
#   make exercise NAME=… [STEP=n]      the workshop: the pattern's tests against your version
#   make lint                          fmt check, clippy -D warnings (also the exercise stubs), docs
#   make up / make down                Postgres, Redis, Kafka in Docker Compose
#   make ci                            what CI runs: install, start services, lint, test

SHELL := /bin/bash
CARGO ?= cargo
# Keep builds outside the clone so repeated runs (and CI) are incremental.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/production-patterns/target

PATTERNS := $(sort $(notdir $(patsubst %/Cargo.toml,%,$(wildcard patterns/*/Cargo.toml))))
COMPOSE := docker compose -p production-patterns -f compose/docker-compose.yml
# Debian's python3 has PyYAML (yamllint depends on it); fall back to whatever python3 is first.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

.PHONY: test test-pattern demo bench exercise lint up down ci patterns check-name

# Unit, integration, exercise-reference and doc tests; examples and benches are compiled too
# (clippy --all-targets in `lint` covers the benches) but not run.
test:
	$(CARGO) test --workspace --no-fail-fast

patterns:
	@echo "patterns: $(PATTERNS)"

# Fails with the list of real pattern names instead of a cargo error.
check-name:
	@if [ -z "$(NAME)" ] || ! echo " $(PATTERNS) " | grep -q " $(NAME) "; then \
		echo "unknown pattern '$(NAME)'. Known patterns:"; \
		for p in $(PATTERNS); do echo "  $$p"; done; \
		echo "usage: make $(MAKECMDGOALS) NAME=<pattern>"; \
		exit 2; \
	fi

test-pattern: check-name
	$(CARGO) test -p $(NAME)

demo:
ifeq ($(strip $(NAME)),)
	@set -e; for p in $(PATTERNS); do \
		if [ -f patterns/$$p/examples/demo.rs ]; then \
			echo; echo "=== demo: $$p ==="; $(CARGO) run --quiet -p $$p --example $$p-demo; \
		fi; \
	done
else
	@$(MAKE) --no-print-directory check-name NAME=$(NAME)
	$(CARGO) run -p $(NAME) --example $(NAME)-demo
endif

bench: check-name
	$(CARGO) bench -p $(NAME)

exercise: check-name
ifeq ($(strip $(STEP)),)
	$(CARGO) test -p $(NAME) --features exercise --test exercises
else
	$(CARGO) test -p $(NAME) --features exercise --test exercises -- step$(STEP)::
endif

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps
	yamllint -s -d "{extends: relaxed, rules: {line-length: {max: 130}}}" compose/docker-compose.yml
	$(PYTHON) .ci/check_compose.py compose/docker-compose.yml

up:
	$(COMPOSE) up -d --wait
	@echo "services are up; point the harness at them with:"
	@echo "  export PATTERNS_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres"
	@echo "  export PATTERNS_REDIS_URL=redis://127.0.0.1:6379"
	@echo "  export PATTERNS_KAFKA_BROKERS=127.0.0.1:9092"

down:
	$(COMPOSE) down -v

ci:
	bash .ci/run
