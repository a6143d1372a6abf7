# torch-cookbook: `make test` (what CI runs) and `make demo` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := dataset-fashion-mnist
TEST_APT_PACKAGES := chromium chromium-driver

.PHONY: setup data test-deps test demo bench reliability lint clean

$(BIN)/.installed: requirements.txt requirements-nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/.installed data

# Offline data that comes from Debian packages (Fashion-MNIST). Skipped with a note where apt is unusable.
data:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null; then \
	    $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: apt-get not found; install$$missing yourself or set COOKBOOK_FASHION_MNIST"; fi; \
	fi

# Headless Chromium for the report's end-to-end test.
test-deps:
	@missing=""; for p in $(TEST_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && command -v apt-get >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

lint: $(BIN)/.installed
	$(BIN)/ruff check .

test: setup test-deps
	$(BIN)/ruff check .
	$(BIN)/pytest -m "not slow"

# The slow tests; the kill/resume matrix (tests/test_reliability_matrix.py) on the quick profiles.
reliability: setup
	COOKBOOK_MATRIX_PROFILE=quick $(BIN)/pytest -m slow

demo: setup
	$(BIN)/cookbook run --all --profile quick

bench: setup
	$(BIN)/cookbook bench --all

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
