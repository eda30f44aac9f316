# Two commands do all set-up on a fresh machine:
#   make run    installs Atelier into .venv and starts it on ./atelier-data
#   make test   installs the test tools (and Debian's chromium) and runs the whole suite
#   make test-fast  the suite less the tests marked slow, on every core (about two minutes on 2)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast lint chromium

run: $(VENV)/.installed
	$(BIN)/atelier serve

test: $(VENV)/.installed-test chromium
	$(BIN)/ruff check app tests bench tools
	$(BIN)/mypy app
	$(BIN)/pytest

test-fast: $(VENV)/.installed-test chromium
	$(BIN)/pytest -q -m "not slow" -n auto

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app tests bench tools
	$(BIN)/ruff format --check app tests bench tools
	$(BIN)/mypy app

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[draft]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
