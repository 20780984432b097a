# Two commands do all set-up on a fresh machine with only Python: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export ZIG_GLOBAL_CACHE_DIR ?= $(CURDIR)/.zigcache
export GOCACHE ?= $(CURDIR)/.gocache
export GOFLAGS ?= -trimpath

.PHONY: install test demo examples bench lint clean chromium

install: $(STAMP) chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

# The browser test drives Debian's Chromium (Playwright never downloads one). Installed when
# missing and we are root with apt, as in CI; elsewhere the test fails and says how to get it.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

examples: $(STAMP)
	$(MAKE) -C examples PATH="$(CURDIR)/$(BIN):$$PATH" PYTHON="$(CURDIR)/$(BIN)/python"

test: examples chromium
	$(BIN)/python -m pytest -q

demo: examples
	$(BIN)/python examples/demo.py

bench: examples
	$(BIN)/python bench/exec.py
	$(BIN)/python bench/archive.py
	$(BIN)/python bench/jobstore.py
	$(BIN)/python bench/membership.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/placement.py

lint: $(STAMP)
	$(BIN)/ruff check swarm cli tests examples bench
	$(BIN)/ruff format --check swarm cli tests examples bench

clean:
	rm -rf $(VENV) .gocache .zigcache
	$(MAKE) -C examples clean
