# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Each creates .venv in the checkout and installs what it needs (pip caches the
# llama-cpp-python build, which compiles llama.cpp once: about 10 minutes).

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test bench lint docs system-deps

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

# System packages (Chromium for the browser tests...): listed in .ci/system-deps, which
# installs the missing ones with apt-get as root and otherwise says in one line what
# is missing (those tests then skip).
system-deps:
	@.ci/system-deps

test: $(VENV)/.dev system-deps
	$(PY) -m ruff check src tests benchmarks examples docs/*.py
	$(PY) -m mypy
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet
	$(PY) -m pytest

# The documentation site on http://127.0.0.1:8001/, rebuilt as you edit.
docs: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr 127.0.0.1:8001

bench: $(VENV)/.dev
	$(PY) -m benchmarks

lint: $(VENV)/.dev
	$(PY) -m ruff check src tests benchmarks examples docs/*.py
	$(PY) -m ruff format --check src tests benchmarks examples docs/*.py
	$(PY) -m mypy
