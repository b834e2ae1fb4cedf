# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv in the checkout and installs what it needs (pip caches the
# llama-cpp-python build, which compiles llama.cpp once: about 10 minutes).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench lint browser-deps

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.local: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[local,cli]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PIP) install --quiet -e '.[dev]'
	touch $@ $(VENV)/.local

demo: $(VENV)/.local
	$(VENV)/bin/openbrace demo

# Debian's Chromium for the playground test (Playwright drives it; no browser download),
# and redis-server for the resumable-stream tests (skipped, saying so, where it is missing).
browser-deps:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	@command -v redis-server >/dev/null || [ "$$(id -u)" -ne 0 ] \
		|| (apt-get update -qq && apt-get install -y -qq redis-server >/dev/null)

test: $(VENV)/.dev browser-deps
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m mypy
	$(PY) -m pytest

bench: $(VENV)/.dev
	$(PY) -m benchmarks

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m ruff format --check src tests benchmarks examples
	$(PY) -m mypy
