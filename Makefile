# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.datawall-installed
DEMO_HOME ?= datawall-home
# Label Studio has pins that clash with ours: it gets a venv of its own (tests/ls_server.py).
LS_VENV ?= .venv-ls
LS_VERSION := 1.23.2
LS_STAMP := $(LS_VENV)/.label-studio-$(LS_VERSION)-installed

.PHONY: venv label-studio browser demo test test-fast lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LS_VENV)/bin/python -m pip install --quiet 'label-studio==$(LS_VERSION)'
	touch $(LS_STAMP)

label-studio: $(LS_STAMP)

# Headless Chromium for the report test (tests/pipelines/test_report.py); Debian's package.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium not found: install Debian's chromium package for the report test"; fi; }

demo: $(STAMP)
	$(BIN)/datawall demo --home $(DEMO_HOME)

test: $(STAMP) $(LS_STAMP) browser
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(DEMO_HOME) .pytest_cache .ruff_cache
