# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
# The browser tests drive Debian's Chromium; Playwright never downloads one.
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint chromium deploy-tools redis-tools bench bench-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/oauth-tai demo --base-url http://$(HOST):$(PORT)
	$(BIN)/oauth-tai serve --host $(HOST) --port $(PORT)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff format --check oauth_tai tests bench
	$(BIN)/ruff check oauth_tai tests bench
	$(BIN)/mypy

# Each is quiet when its tools are there; as root it installs them from
# Debian, otherwise it says how and fails.
chromium:
	@scripts/need-debian-packages "the browser tests" chromium:$(CHROMIUM)

# The deploy/ tests check nginx's configuration with nginx itself and the
# systemd units with systemd-analyze.
deploy-tools:
	@scripts/need-debian-packages "the deploy/ tests" nginx-light:/usr/sbin/nginx systemd:systemd-analyze

# The cache tests start their own Redis servers, Sentinel and Cluster.
redis-tools:
	@scripts/need-debian-packages "the Redis tests" redis-server:redis-server redis-tools:redis-cli

test: lint chromium deploy-tools redis-tools
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmarks drive Debian's wrk and start their own redis-server.
# Never part of make test.
bench-tools:
	@scripts/need-debian-packages "make bench" wrk:wrk redis-server:redis-server

bench: $(VENV)/.dev-installed bench-tools
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
